"""`reft demo-table`: the paper's main table (N-CoT and P-CoT column groups) from demo results.

reft demo-table docs/demo_results.json docs/demo_results_python.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reft.data.errors import DataError, read_json_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-table",
        help="the paper's table from `reft demo` results: a column group per chain-of-thought kind",
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS", help="a demo's results.json (or its out directory)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reft.demo.report import paper_table

    try:
        table = paper_table([read_demo_results(path) for path in args.results])
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"reft demo-table: error: {error}", file=sys.stderr)
        return 2
    print(table)
    return 0


def read_demo_results(location: str) -> dict[str, Any]:
    """A demo's results.json (given itself or its out directory); a file that is not one is a
    DataError naming it."""
    path = Path(location)
    path = path / "results.json" if path.is_dir() else path
    results = read_json_file(path)
    missing = [key for key in ("methods", "std", "seeds", "k", "config") if key not in results]
    if missing:
        raise DataError(f"no {', '.join(missing)}: not the results.json of `reft demo`", path)
    return results
