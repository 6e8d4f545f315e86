"""The demo's PNG figures (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from reft.demo.report import COLUMNS, CURVE_COLUMNS, LABELS, column_label, dev_curves
from reft.demo.stages import METHODS

TRAINING_PANELS = (
    ("reward", "mean score reward"),
    ("accuracy", "train accuracy"),
    ("kl", "sequence KL to reference"),
    ("response_length", "response length (tokens)"),
    ("value_loss", "value loss"),
)


def plot_training_curves(seed_dir: Path, path: Path) -> Path:
    """ReFT's per-step training curves: reward, train accuracy, KL, response length, value loss."""
    records = [json.loads(line) for line in (seed_dir / "reft" / "metrics.jsonl").read_text().splitlines()
               if line.strip()]  # fmt: skip
    train = [r for r in records if r.get("split") == "train"]
    figure, axes = plt.subplots(1, len(TRAINING_PANELS), figsize=(4 * len(TRAINING_PANELS), 3.2))
    for axis, (key, title) in zip(axes, TRAINING_PANELS, strict=True):
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            axis.plot(*zip(*points, strict=True), color="tab:red")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("PPO step")
        axis.grid(alpha=0.3)
    figure.suptitle(f"ReFT training ({seed_dir.name})")
    return _save(figure, path)


def plot_dev_accuracy(seed_dirs: list[Path], path: Path) -> Path:
    """Dev accuracy against wall-clock seconds (from the start of the warm-up) for every method."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    colors = dict(zip(("warmup", *METHODS), plt.rcParams["axes.prop_cycle"].by_key()["color"],
                      strict=False))  # fmt: skip
    for index, seed_dir in enumerate(seed_dirs):
        for method, points in dev_curves(seed_dir).items():
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", color=colors[method], alpha=0.85,
                          label=LABELS[method] if index == 0 else None)  # fmt: skip
    axis.set_xlabel("wall-clock seconds since the warm-up started")
    axis.set_ylabel("dev accuracy (greedy)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("Dev accuracy over time" + (" (all seeds)" if len(seed_dirs) > 1 else ""))
    return _save(figure, path)


def plot_accuracy_bars(results: dict[str, Any], path: Path) -> Path:
    """Test top-1 / voting@K / rerank@K / pass@K per method, with the seed standard deviation as
    error bars (the warm-up has top-1 only)."""
    methods = ("warmup", *METHODS)
    width = 0.8 / len(COLUMNS)
    figure, axis = plt.subplots(figsize=(9, 4.5))
    for offset, column in enumerate(COLUMNS):
        shift = (offset - (len(COLUMNS) - 1) / 2) * width  # the group of bars centred on each tick
        shown = [(i, m) for i, m in enumerate(methods) if column in results["methods"][m]]
        xs = [i + shift for i, _ in shown]
        means = [100 * results["methods"][m][column] for _, m in shown]
        errors = [100 * results["std"][m][column] for _, m in shown]
        axis.bar(xs, means, width, yerr=errors if len(results["seeds"]) > 1 else None,
                 label=column_label(column, results["k"]), capsize=3)  # fmt: skip
    axis.set_xticks(range(len(methods)), [LABELS[m] for m in methods], fontsize=8, rotation=10)
    axis.set_ylabel("test accuracy (%)")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    axis.set_title("Final test accuracy")
    return _save(figure, path)


def plot_k_curves(results: dict[str, Any], path: Path) -> Path | None:
    """Test accuracy against the number of samples K (log2 axis): voting@K, rerank@K and pass@K, one
    panel per method with curves, greedy top-1 as a dashed line. None (and no file) when no method
    has curves (results from before `reft eval` wrote them)."""
    curves = results.get("k_curves") or {}
    if not curves:
        return None
    ks = sorted({k for method_curves in curves.values() for k in method_curves["k"]})
    figure, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4), sharey=True,
                                squeeze=False)  # fmt: skip
    for axis, (method, method_curves) in zip(axes[0], curves.items(), strict=True):
        for column in CURVE_COLUMNS:
            if column in method_curves:
                axis.plot(method_curves["k"], [100 * v for v in method_curves[column]], marker="o",
                          label=f"{column.capitalize()}@K")  # fmt: skip
        top1 = results["methods"].get(method, {}).get("top1")
        if top1 is not None:
            axis.axhline(100 * top1, color="gray", linestyle="--", label="Top-1 (greedy)")
        axis.set_xscale("log", base=2)
        axis.set_xticks(ks, [str(k) for k in ks])
        axis.minorticks_off()
        axis.set_xlabel("samples per question K")
        axis.set_title(LABELS.get(method, method))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0][0].set_ylabel("test accuracy (%)")
    figure.suptitle(
        "Accuracy against K" + (" (mean over seeds)" if len(results["seeds"]) > 1 else "")
    )
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


STUDY_PANELS = (("dev_accuracy", "dev accuracy", "PPO step"),
                ("dev_by_tokens", "dev accuracy", "generated tokens"),
                ("kl", "KL to the reference (nats)", "PPO step"),
                ("value_loss", "value loss", "PPO step"),
                ("explained_variance", "explained variance", "PPO step"),
                ("response_length", "response length (tokens)", "PPO step"))  # fmt: skip
"""The study figure's panels: (curve key, y label, x label)."""


def plot_study(results: dict[str, Any], path: Path) -> Path:
    """A study's PPO variants (first seed): dev accuracy per step and per generated token, KL,
    value loss, explained variance and response length."""
    from reft.demo.studies import variant_label

    curves = results["curves"][results["seeds"][0]]
    variants = [v for v in results["variants"] if "kl" in curves.get(v, {})]
    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    for axis, (key, ylabel, xlabel) in zip(axes.flat, STUDY_PANELS, strict=True):
        for variant in variants:
            points = curves[variant].get(key, [])
            if points:
                axis.plot(*zip(*points, strict=True), label=variant_label(variant), alpha=0.85)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(f"reft demo --study {results['study']} (seed {results['seeds'][0]})")
    return _save(figure, path)


def plot_warmup_study(results: dict[str, Any], path: Path) -> Path:
    """Dev accuracy against epochs over the training questions since the base: each warm-up then
    the ReFT run started from it, beside the SFT baseline continuing the shipped warm-up."""
    from reft.demo.studies import variant_label

    curves = results["curves"][results["seeds"][0]]
    shipped = results["config"]["warmup"].get("stop_epochs", 0)
    train_size = results["config"]["task"]["train_size"]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for epochs in results["config"]["warmup_epochs"]:
        reft = curves.get(f"reft_e{epochs}", {})
        per_step = reft.get("questions_per_step", 0) / train_size
        points = [(epochs + step * per_step, acc) for step, acc in reft.get("dev_accuracy", [])]
        if points:
            axis.plot(
                *zip(*points, strict=True), marker=".", label=variant_label(f"reft_e{epochs}")
            )
    sft = [(shipped + epoch, acc) for epoch, acc in curves.get("sft", {}).get("dev_by_epoch", [])]
    if sft:
        axis.plot(*zip(*sft, strict=True), color="black", marker=".", label="SFT baseline")
    axis.set_xlabel("epochs over the training questions since the base (warm-up + method)")
    axis.set_ylabel("dev accuracy (greedy)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("When does ReFT surpass SFT? (first seed)")
    return _save(figure, path)


def plot_hacking_study(results: dict[str, Any], path: Path) -> Path:
    """--study hacking (first seed): the hacked reward rate of the multiple-choice variants' training
    rollouts per PPO step and of their greedy dev answers, and dev accuracy of the letters against
    the reasoning's own number (with the numeric variant's accuracy beside them)."""
    from reft.demo.studies import variant_label

    curves = results["curves"][results["seeds"][0]]
    mc = [v for v in ("reft_mc", "reft_mc_no_partial") if v in curves]
    colors = dict(zip([*mc, "reft_numeric"], ("tab:red", "tab:orange", "tab:blue"), strict=True))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("hacked_reward_rate", "hacked reward rate (training rollouts)"),
              ("dev_hacked_reward_rate", "hacked reward rate (dev, greedy)"))  # fmt: skip
    for axis, (key, title) in zip(axes, panels, strict=False):
        for variant in mc:
            points = curves[variant].get(key, [])
            if points:
                axis.plot(*zip(*points, strict=True), color=colors[variant],
                          label=variant_label(variant))  # fmt: skip
        axis.set_title(title, fontsize=10)
    for variant in [*mc, "reft_numeric"]:
        dev = curves.get(variant, {})
        if dev.get("dev_accuracy"):
            what = "letters" if variant in mc else "numbers"
            axes[2].plot(*zip(*dev["dev_accuracy"], strict=True), color=colors[variant],
                         label=f"{variant_label(variant)}: {what} right")  # fmt: skip
        if dev.get("dev_reasoning_accuracy"):
            axes[2].plot(*zip(*dev["dev_reasoning_accuracy"], strict=True), linestyle="--",
                         color=colors[variant], label=f"{variant_label(variant)}: reasoning right")  # fmt: skip
    axes[2].set_title("dev accuracy (greedy)", fontsize=10)
    for axis in axes:
        axis.set_xlabel("PPO step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"reft demo --study hacking (seed {results['seeds'][0]})")
    return _save(figure, path)
