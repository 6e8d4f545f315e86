"""`reft sample`: K graded completions per question, written as JSON lines.

reft sample --model CKPT --dataset synth:test --num-samples 8 --out samples.jsonl [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command
from reft.evaluate.config import SampleConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    add_config_command(
        subparsers, "sample", "sample and grade completions for a dataset", SampleConfig, run
    )


def run(config: SampleConfig) -> int:
    from reft.evaluate.run import run_sample

    summary = run_sample(config)
    print(f"wrote {summary['questions']} questions x {summary['samples_per_question']} samples to "
          f"{config.out}: first-sample accuracy {summary['accuracy_first']:.4f}, pass@K "
          f"{summary['pass_at_k']:.4f}, answered {summary['answered']:.4f} "
          f"({summary['seconds']:.1f} s)")  # fmt: skip
    return 0
