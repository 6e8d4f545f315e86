"""Seconds to run one demo-sized stage: forked from the preloaded server (reft.demo.launch) against a
fresh `python -m reft` process, alternating, in the same run.

    python bench/bench_stage_launch.py [--rounds 5]

The stage is `reft eval` (greedy, 20 dev questions) of a micro-llama model trained for 2 steps here,
the size of a `reft demo --quick` stage, at one thread. The fork server's start (its imports) is
timed once and reported on its own line: a demo pays it once for all its stages.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reft.demo.launch import start_forked, start_subprocess


def _prepare(root: Path) -> list[str]:
    """A tiny model and its dev data; returns the eval stage's argv (without out_dir)."""
    reft = [sys.executable, "-m", "reft"]
    for split, n in (("train", 64), ("dev", 20)):
        out = root / f"{split}.json"
        subprocess.run([*reft, "data", "synth", "--split", split, "--n", str(n), "--out", str(out)],
                       check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        [*reft, "sft", "model=preset:micro-llama", f"train_data={root / 'train.json'}",
         f"preset_tokenizer_data={root / 'train.json'}", "max_steps=2", "batch_size=32",
         "micro_batch_size=32", "eval_every=0", f"out_dir={root / 'model'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return ["eval", f"dataset={root / 'dev.json'}", f"model={root / 'model' / 'final'}",
            "max_new_tokens=32", "k=0"]  # fmt: skip


def _seconds(start, argv: list[str], log: Path) -> float:
    started = time.perf_counter()
    process = start(argv, log, 1)
    if process.wait() != 0:
        raise SystemExit(f"stage failed; see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argv = _prepare(root)
        log = root / "stage.log"
        first = _seconds(start_forked, [*argv, f"out_dir={root / 'first'}"], log)
        times: dict[str, list[float]] = {"fresh process": [], "forked": []}
        for index in range(rounds):
            for name, start in (("fresh process", start_subprocess), ("forked", start_forked)):
                out = f"out_dir={root / f'{name[0]}{index}'}"
                times[name].append(_seconds(start, [*argv, out], log))
    base = statistics.median(times["fresh process"])
    print(f"first forked stage (starts the server): {first:.2f} s\n")
    print("| launch | median s | ratio to a fresh process |\n| --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | x{base / median:.2f} |")


if __name__ == "__main__":
    main()
