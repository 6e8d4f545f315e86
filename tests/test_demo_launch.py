"""reft.demo.launch: a stage forked from the preloaded server behaves as `python -m reft` does."""

from __future__ import annotations

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
