"""The demo's outputs: results.json, report.md, and PNG figures, from the stages' own files.

Everything here reads what the `reft` commands wrote (eval/<method>/results.json, <stage>/metrics.jsonl,
<stage>.done.json), so a report can be rebuilt from a finished output directory.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path
from typing import Any

from reft.demo.stages import METHODS
from reft.metrics import read_metrics

LABELS = {
    "warmup": "SFT warm-up",
    "sft": "SFT",
    "reft": "ReFT",
    "offline_self_training": "Offline self-training",
    "online_self_training": "Online self-training",
}
COLUMNS = ("top1", "voting", "rerank")


def seed_results(seed_dir: Path, k: int) -> dict[str, dict[str, float]]:
    """{method: {top1, voting, rerank}} for one seed (the warm-up has top1 only)."""
    methods: dict[str, dict[str, float]] = {}
    for method in ("warmup", *METHODS):
        metrics = json.loads((seed_dir / "eval" / method / "results.json").read_text())["metrics"]
        row = {"top1": metrics["top1"]}
        if method != "warmup":
            row |= {"voting": metrics[f"voting@{k}"], "rerank": metrics[f"rerank@{k}"]}
        methods[method] = row
    return methods


def seed_budgets(seed_dir: Path) -> dict[str, dict[str, float]]:
    """Each method's training budget: optimizer steps, epochs and wall-clock seconds of its own stage,
    and `total_seconds` including the warm-up it starts from."""
    seconds = {name: _stage_seconds(seed_dir, name) for name in ("warmup", *METHODS)}
    budgets = {}
    for method in ("warmup", *METHODS):
        records = _records(seed_dir / method / "metrics.jsonl")
        steps = max((int(r["step"]) for r in records), default=0)  # the last dev record is the end
        train = [r for r in records if r.get("split") == "train" and r.get("step")]
        epochs = steps * train[-1]["epoch"] / train[-1]["step"] if train else 0.0
        own = seconds[method]
        budgets[method] = {
            "steps": steps,
            "epochs": round(epochs, 2),
            "seconds": round(own, 1),
            "total_seconds": round(own + (0.0 if method == "warmup" else seconds["warmup"]), 1),
        }
    return budgets


def dev_curves(seed_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """(seconds of compute since the warm-up started, dev accuracy) per method.

    A stage's metrics are timed from its training loop's start; the stage's own set-up (loading,
    offline sampling) comes before that. Each curve is shifted so its last point falls at the end of
    the stage's own wall-clock time, plus the warm-up's for methods that start from it: time spent
    waiting for a free worker is not counted, so the x axis is each method's budget.
    """
    warmup_seconds = _stage_seconds(seed_dir, "warmup")
    curves = {}
    for method in ("warmup", *METHODS):
        dev = [
            (record["time"], record["accuracy"])
            for record in _records(seed_dir / method / "metrics.jsonl")
            if record.get("split") == "dev" and "accuracy" in record
        ]
        if not dev:
            curves[method] = []
            continue
        start = 0.0 if method == "warmup" else warmup_seconds
        offset = start + _stage_seconds(seed_dir, method) - dev[-1][0]
        curves[method] = [(offset + time, accuracy) for time, accuracy in dev]
    return curves


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """Mean and (sample) standard deviation over seeds of every method and column."""
    seeds = list(per_seed)
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    for method, row in per_seed[seeds[0]].items():
        means[method], stds[method] = {}, {}
        for column in row:
            values = [per_seed[seed][method][column] for seed in seeds]
            means[method][column] = statistics.fmean(values)
            stds[method][column] = statistics.stdev(values) if len(values) > 1 else 0.0
    return means, stds


def build_results(
    config: dict[str, Any], seeds: list[int], out_dir: Path, k: int
) -> dict[str, Any]:
    """The demo's results.json document."""
    per_seed = {seed: seed_results(out_dir / f"seed_{seed}", k) for seed in seeds}
    budgets = {seed: seed_budgets(out_dir / f"seed_{seed}") for seed in seeds}
    means, stds = aggregate(per_seed)
    budget_seconds = {
        method: statistics.fmean(budgets[seed][method]["total_seconds"] for seed in seeds)
        for method in ("warmup", *METHODS)
    }
    return {
        "task": "synth",
        "seed": seeds[0] if len(seeds) == 1 else seeds,
        "seeds": seeds,
        "k": k,
        "methods": means,
        "std": stds,
        "per_seed": {str(seed): per_seed[seed] for seed in seeds},
        "budget_seconds": budget_seconds,
        "budgets": {str(seed): budgets[seed] for seed in seeds},
        "machine": _machine(),
        "config": config,
    }


def results_table(results: dict[str, Any]) -> str:
    """The paper-style Markdown table: rows are methods, columns top-1 / voting@K / rerank@K."""
    k, several = results["k"], len(results["seeds"]) > 1
    header = f"| Method | Top-1 | Voting@{k} | Rerank@{k} | Budget (s, incl. warm-up) |"
    lines = [header, "|---|---|---|---|---|"]
    for method in ("warmup", *METHODS):
        mean, std = results["methods"][method], results["std"][method]
        cells = [_percent(mean[c], std[c], several) if c in mean else "–" for c in COLUMNS]
        budget = f"{results['budget_seconds'][method]:.0f}"
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} | {budget} |")
    return "\n".join(lines)


def budgets_table(results: dict[str, Any]) -> str:
    """Steps, epochs and seconds of each method's own stage, per seed."""
    lines = ["| Seed | Method | Steps | Epochs | Own seconds | Seconds incl. warm-up |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for seed, budgets in results["budgets"].items():
        for method, budget in budgets.items():
            lines.append(f"| {seed} | {LABELS[method]} | {budget['steps']} | {budget['epochs']} | "
                         f"{budget['seconds']:.0f} | {budget['total_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def write_report(results: dict[str, Any], out_dir: Path, figures: list[Path], command: str) -> Path:
    """report.md: the table, the budgets, the figures and how the run was made."""
    seeds = results["seeds"]
    spread = " (mean ± std over seeds)" if len(seeds) > 1 else ""
    machine = results["machine"]
    text = [
        "# reft demo: ReFT vs SFT and self-training on the synthetic task",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpus']} CPU cores, {machine['platform']}, torch {machine['torch']}  ",
        f"Seeds: {', '.join(map(str, seeds))}. Test questions: {results['config']['task']['test_size']}.",
        "",
        f"## Test accuracy (%){spread}",
        "",
        results_table(results),
        "",
        "Each method is evaluated at its best dev checkpoint (the warm-up at its last); the test split "
        "is used for this table only. Rerank uses an outcome reward model trained on samples of the "
        "SFT baseline on the training questions.",
        "",
        "## Figures",
        "",
        *[f"![{path.stem}]({path.name})\n" for path in figures],
        "## Budgets",
        "",
        budgets_table(results),
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def _percent(mean: float, std: float, several: bool) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if several else f"{100 * mean:.1f}"


def _stage_seconds(seed_dir: Path, name: str) -> float:
    marker = seed_dir / f"{name}.done.json"
    return json.loads(marker.read_text())["record"]["seconds"] if marker.exists() else math.nan


def _records(path: Path) -> list[dict[str, Any]]:
    return read_metrics(path) if path.exists() else []  # a stage that never logged


def _machine() -> dict[str, Any]:
    import os

    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip
