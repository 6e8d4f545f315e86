"""One table of `reft eval` results: a row per run (SFT, ReFT, the self-training baselines, ...), a
column per metric (top1, voting@K, rerank@K, pass@K, ...), read from each run's results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reft.data.errors import read_json_file

RESULTS_FILE = "results.json"
LEADING_COLUMNS = ("top1",)
"""Metrics shown first; the others follow in the order the runs report them."""
SKIPPED = ("questions", "answered", "response_tokens")
"""Metrics that are not accuracies (the per-run details stay in each results.json)."""
SKIPPED_PREFIX = "top1_error_"
"""Error shares (`top1_error_timeout`, ...): not accuracies either."""


def load_results(path: str | Path) -> dict[str, Any]:
    """The results.json of an eval directory (or the file itself); a DataError naming it when its
    text is not JSON."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `reft eval ... --out-dir DIR` first")
    return read_json_file(path)


def results_table(runs: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, rows = runs (name -> results.json content), accuracies in percent; a metric
    a run did not compute shows as "-"."""
    columns = list(LEADING_COLUMNS)
    for results in runs.values():
        columns += [m for m in results["metrics"] if m not in columns and not _skipped(m)]
    lines = [
        "| run | questions | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for name, results in runs.items():
        metrics = results["metrics"]
        cells = [f"{100 * metrics[c]:.1f}" if c in metrics else "-" for c in columns]
        lines.append(f"| {name} | {metrics.get('questions', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _skipped(metric: str) -> bool:
    return metric in SKIPPED or metric.startswith(SKIPPED_PREFIX)
