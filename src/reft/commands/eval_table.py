"""`reft eval-table`: the results of several `reft eval` runs as one Markdown table.

reft eval-table SFT=runs/eval/sft ReFT=runs/eval/reft Offline-ST=runs/eval/offline ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reft.data.errors import DataError


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
    from reft.evaluate.report import results_table

    runs = {}
    for item in args.runs:
        name, _, directory = item.rpartition("=")
        try:
            runs[name or Path(directory).name] = read_results(directory)
        except FileNotFoundError as error:
            print(f"reft eval-table: error: {error}", file=sys.stderr)
            return 2
    print(results_table(runs))
    return 0


def read_results(directory: str) -> dict[str, Any]:
    """`load_results(directory)`, with a results.json that is not a `reft eval` result reported as
    a DataError naming the file (not a bare JSONDecodeError or KeyError)."""
    from reft.evaluate.report import RESULTS_FILE, load_results

    path = Path(directory)
    path = path / RESULTS_FILE if path.is_dir() else path
    results = load_results(path)  # DataError for text that is not JSON
    if not isinstance(results, dict) or not isinstance(results.get("metrics"), dict):
        raise DataError("no 'metrics' object: not the results.json of `reft eval`", path)
    return results
