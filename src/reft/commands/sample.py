"""`reft sample`: K graded completions per question, written as JSON lines.

reft sample --model CKPT --dataset synth:test --num-samples 8 --out samples.jsonl [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.config import add_config_arguments, config_from_args
from reft.evaluate.config import SampleConfig
from reft.models.source import check_model_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="sample and grade completions for a dataset")
    add_config_arguments(parser, SampleConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(SampleConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.evaluate.run import run_sample

    summary = run_sample(config)
    print(f"wrote {summary['questions']} questions x {summary['samples_per_question']} samples to "
          f"{config.out}: first-sample accuracy {summary['accuracy_first']:.4f}, pass@K "
          f"{summary['pass_at_k']:.4f}, answered {summary['answered']:.4f} "
          f"({summary['seconds']:.1f} s)")  # fmt: skip
    return 0
