"""`reft eval`: greedy top-1 accuracy, and voting@K / pass@K from K samples.

reft eval --model CKPT --dataset synth:test --cot nl [--k 8] [--out-dir runs/eval/x]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command
from reft.evaluate.config import EvalConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    add_config_command(
        subparsers, "eval", "top-1, voting@K and pass@K on a dataset", EvalConfig, run
    )


def run(config: EvalConfig) -> int:
    from reft.evaluate.run import format_table, run_eval

    results = run_eval(config)
    print(f"{config.model} on {config.dataset} ({results['metrics']['questions']} questions)")
    print(format_table(results["metrics"]))
    print(f"results and per-question predictions in {config.out_dir}")
    return 0
