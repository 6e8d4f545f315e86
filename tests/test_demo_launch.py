"""reft.demo.launch: a stage forked from the preloaded server behaves as `python -m reft` does."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from reft.demo.launch import can_fork_stages, start_forked, start_subprocess

pytestmark = pytest.mark.skipif(not can_fork_stages(), reason="no forkserver on this platform")


def _synth(out, n: str = "4") -> list[str]:
    return ["data", "synth", "--split", "dev", "--n", n, "--seed", "3", "--out", str(out)]


def test_forked_stage_writes_what_a_fresh_process_writes(tmp_path):
    fresh = start_subprocess(_synth(tmp_path / "fresh.json"), tmp_path / "fresh.log", 1)
    forked = start_forked(_synth(tmp_path / "forked.json"), tmp_path / "forked.log", 1)
    assert fresh.wait() == 0 and forked.wait() == 0 and forked.returncode == 0
    assert (tmp_path / "forked.json").read_bytes() == (tmp_path / "fresh.json").read_bytes()
    # Its stdout went to its log, after what was there.
    assert "wrote 4" in (tmp_path / "forked.log").read_text()


def test_forked_stage_exit_status_and_stderr_reach_the_runner(tmp_path):
    log = tmp_path / "bad.log"
    log.write_text("$ reft data synth --n not-a-number\n")
    process = start_forked(_synth(tmp_path / "x.json", n="not-a-number"), log, 1)
    assert process.wait() == 2 and process.poll() == 2
    text = log.read_text()
    assert text.startswith("$ reft data synth") and "invalid int value" in text


def test_terminated_forked_stage_reports_the_signal(tmp_path):
    process = start_forked(_synth(tmp_path / "big.json", n="10000000"), tmp_path / "l.log", 1)
    process.terminate()
    assert process.wait() == -15


def _wait_for_own_group(pid: int) -> None:
    """Until the stage has left the runner's process group (its first act; the SIGINT handler
    follows at once), then a moment for the command itself to start."""
    deadline = time.monotonic() + 30
    while os.getpgid(pid) != pid:
        assert time.monotonic() < deadline, "the stage never started its own process group"
        time.sleep(0.01)
    time.sleep(1.0)


@pytest.mark.parametrize("start", [start_forked, start_subprocess])
def test_stage_runs_in_its_own_process_group(tmp_path, start):
    """The terminal's Ctrl-C reaches the runner only; the runner forwards it (reft.demo.runner)."""
    process = start(_synth(tmp_path / "big.json", n="10000000"), tmp_path / "l.log", 1)
    try:
        _wait_for_own_group(process.pid)
        assert os.getpgid(process.pid) != os.getpgid(0)
    finally:
        process.kill()
        process.wait()


def test_forked_stage_takes_sigint_as_a_keyboard_interrupt(tmp_path):
    """As `reft` in a terminal: the command's KeyboardInterrupt, exit 130 (the fork server itself
    ignores SIGINT; a stage that inherited that would never stop for the runner's Ctrl-C)."""
    log = tmp_path / "l.log"
    process = start_forked(_synth(tmp_path / "big.json", n="10000000"), log, 1)
    _wait_for_own_group(process.pid)
    process.send_signal(signal.SIGINT)
    assert process.wait() == 130
    assert "reft data: interrupted" in log.read_text()


def test_forked_stage_is_stopped_even_when_the_fork_server_is_gone(tmp_path):
    """A closed terminal's SIGHUP ends the fork server too (it is in the demo's process group),
    after which it reports every stage as ended (exit 255): the runner must still stop them."""
    import multiprocessing.forkserver

    process = start_forked(_synth(tmp_path / "big.json", n="10000000"), tmp_path / "l.log", 1)
    _wait_for_own_group(process.pid)
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if server is None:
        process.kill()
        pytest.skip("this Python's forkserver keeps its pid elsewhere")
    os.kill(server, signal.SIGKILL)  # the next start_forked starts a new server
    os.waitpid(server, 0)
    process.terminate()
    deadline = time.monotonic() + 30
    while _alive(process.pid):
        assert time.monotonic() < deadline, "the stage outlived its SIGTERM"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (ended, not yet reaped by its new parent) does not."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
