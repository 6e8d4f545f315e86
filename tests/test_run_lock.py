"""A run owns its out_dir: a second run on the same folder stops at once with exit 2, naming the
holder, and writes nothing; a lock left by a killed run does not block the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reft.cli import main
from reft.metrics import read_metrics
from reft.run_lock import LOCK_FILE, OutputDirBusy, RunLock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
TINY = ["model=preset:micro-llama", "train_data=synth:train:64", "preset_vocab_size=300",
        "batch_size=8", "micro_batch_size=8", "max_length=256", "dev_data=null", "log_every=1",
        "save_every=1000"]  # fmt: skip
HOLD = "import sys, time; from reft.run_lock import RunLock; lock = RunLock(sys.argv[1]); print('held', flush=True); time.sleep(120)"


def _holder(out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_folder_is_refused_naming_the_holder_and_freed_by_kill_9(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(OutputDirBusy, match=rf"in use by another run \(PID {holder.pid} on "):
            RunLock(tmp_path / "run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # the file stays; the kernel dropped the lock
    with RunLock(tmp_path / "run"):
        pass


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("first_seed, second_seed", [(0, 1), (1, 0)])
def test_a_second_run_on_a_busy_folder_exits_2_and_changes_nothing(tmp_path, capsys, first_seed,
                                                                   second_seed):  # fmt: skip
    out = tmp_path / "same"
    first = subprocess.Popen(
        [sys.executable, "-m", "reft", "sft", *TINY, "max_steps=400", f"seed={first_seed}",
         f"out_dir={out}"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while not ((out / "metrics.jsonl").is_file() and read_metrics(out, "train")):
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # hold the first run still while the second tries
        before = _snapshot(out)
        status = main(["sft", *TINY, "max_steps=400", f"seed={second_seed}", f"out_dir={out}"])
        assert _snapshot(out) == before
        first.send_signal(signal.SIGCONT)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    err = capsys.readouterr().err
    assert status == 2 and f"is in use by another run (PID {first.pid}" in err, err
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == first_seed


def test_a_waiting_lock_blocks_until_the_holder_ends_then_takes_the_folder(tmp_path, capsys):
    """`wait=True` (the demo's base cache): say who holds it, then take it once the holder exits."""
    ended = tmp_path / "holder_ended"  # written by the holder just before it exits
    script = HOLD.replace("time.sleep(120)", f"time.sleep(1.5); open({str(ended)!r}, 'w').close()")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "bases")], env=ENV,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with RunLock(tmp_path / "bases", "the base cache", wait=True):
        assert ended.exists(), "the lock was taken while the holder held it"
    holder.wait()
    err = capsys.readouterr().err
    assert f"the base cache {tmp_path / 'bases'} is in use by another run (PID {holder.pid}" in err
    assert "waiting for it to end" in err


def test_a_second_demo_on_a_busy_out_stops_with_exit_2(tmp_path, capsys):
    holder = _holder(tmp_path / "demo")
    try:
        status = main(["demo", "--quick", "--resume", "--out", str(tmp_path / "demo")])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (
        status == 2
        and f"--out {tmp_path / 'demo'} is in use by another run" in capsys.readouterr().err
    )
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [LOCK_FILE]
