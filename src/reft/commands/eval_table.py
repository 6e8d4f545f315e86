"""`reft eval-table`: the results of several `reft eval` runs as one Markdown table.

reft eval-table SFT=runs/eval/sft ReFT=runs/eval/reft Offline-ST=runs/eval/offline ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-table",
        help="one table of several `reft eval` results (top1, voting@K, rerank@K, ...)",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="NAME=DIR", help="a row name and its eval directory (or DIR)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reft.evaluate.report import load_results, results_table

    runs = {}
    for item in args.runs:
        name, _, directory = item.rpartition("=")
        try:
            runs[name or Path(directory).name] = load_results(directory)
        except FileNotFoundError as error:
            print(f"reft eval-table: error: {error}", file=sys.stderr)
            return 2
    print(results_table(runs))
    return 0
