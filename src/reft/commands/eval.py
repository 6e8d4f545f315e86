"""`reft eval`: greedy top-1 accuracy, and voting@K / pass@K from K samples.

reft eval --model CKPT --dataset synth:test --cot nl [--k 8] [--out-dir runs/eval/x]
"""

from __future__ import annotations

import argparse

from reft.config import add_config_arguments, config_from_args
from reft.evaluate.config import EvalConfig
from reft.models.source import check_model_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="top-1, voting@K and pass@K on a dataset")
    add_config_arguments(parser, EvalConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(EvalConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.evaluate.run import format_table, run_eval

    results = run_eval(config)
    print(f"{config.model} on {config.dataset} ({results['metrics']['questions']} questions)")
    print(format_table(results["metrics"]))
    print(f"results and per-question predictions in {config.out_dir}")
    return 0
