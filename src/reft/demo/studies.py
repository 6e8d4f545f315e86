"""`reft demo --study ablations|warmup|hacking`: the paper's analyses on the demo's stages and runner.

- ablations: ReFT variants (`DemoConfig.ablations`: each `reft train` settings layered on the
  recipe's `reft` section), every one a ReFT stage from the same warm-up with the same step budget:
  the shipped ReFT (`full`), no KL term, a value head on the policy's trunk instead of the separate
  critic, no partial reward.
- warmup: ReFT from warm-ups stopped at several epochs of the warm-up's schedule
  (`DemoConfig.warmup_epochs`), beside the SFT baseline (which continues the shipped warm-up), to
  see how long the warm-up must be before RL pays off.
- hacking: ReFT on the task's multiple-choice and numeric forms, each from its own warm-up
  (reft.demo.hacking_study, which builds on this module).

Each variant is evaluated on the test split at its best dev checkpoint (top-1 and voting@K; no
reranker, which would need a reward model per variant). results.json holds the table per seed with
mean and std, and every variant's curves from its own metrics.jsonl: dev accuracy per PPO step and
per generated token, KL to the reference, value loss, explained variance and response length.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reft.answers.hacking import HACKING_METRICS
from reft.demo.config import DemoConfig
from reft.demo.report import aggregate, eval_metrics, machine_record, metric_records
from reft.demo.stages import Stage, stage_data, test_eval_stage, training_stage

TRAIN_CURVES = ("kl", "value_loss", "explained_variance", "response_length", "reward",
                *HACKING_METRICS)  # fmt: skip
"""Per-step training metrics kept for each variant (those its estimator and data log)."""


def plan_study(
    config: DemoConfig, seed: int, seed_dir: Path, data_dir: Path, start: str | None
) -> tuple[list[Stage], list[str]]:
    """The stages of one seed's study and the names of the variants its table compares."""
    if config.study == "hacking":
        from reft.demo.hacking_study import plan_hacking  # it imports this module

        return plan_hacking(config, seed, seed_dir, data_dir, start)
    data = stage_data(config, seed, data_dir)
    warmup = training_stage(config, seed_dir, data, "warmup", ["sft"],
                            {"model": start or config.model}, config.warmup, (), None)  # fmt: skip
    planner = _plan_ablations if config.study == "ablations" else _plan_warmups
    stages, variants = planner(config, seed_dir, data, start)
    stages = [warmup, *stages]
    sampled = {"k": config.k}
    for name in variants:
        ranking = {} if name.startswith("warmup") else sampled
        stages.append(test_eval_stage(config, seed, seed_dir, data_dir, name, ranking, (name,)))
    return stages, variants


def _plan_ablations(config: DemoConfig, seed_dir: Path, data: dict[str, Any], start: str | None):
    from_warmup = {"model": str(seed_dir / "warmup" / "final")}
    stages = []
    for name, changes in config.ablations.items():
        section = {**config.reft, **changes}
        stages.append(training_stage(config, seed_dir, data, f"reft_{name}", ["train"],
                                     from_warmup, section, ("warmup",), "warmup"))  # fmt: skip
    return stages, [stage.name for stage in stages]


def _plan_warmups(config: DemoConfig, seed_dir: Path, data: dict[str, Any], start: str | None):
    """A warm-up per length (the shipped one where the length is the recipe's), ReFT from each, and
    the SFT baseline from the shipped warm-up."""
    shipped = config.warmup.get("stop_epochs")
    stages = [training_stage(config, seed_dir, data, "sft", ["sft"],
                             {"model": str(seed_dir / "warmup" / "final")}, config.sft,
                             ("warmup",), "warmup")]  # fmt: skip
    variants = ["sft"]
    for epochs in config.warmup_epochs:
        warmup = "warmup" if epochs == shipped else f"warmup_e{epochs}"
        if warmup != "warmup":
            stages.append(training_stage(config, seed_dir, data, warmup, ["sft"],
                                         {"model": start or config.model},
                                         {**config.warmup, "stop_epochs": epochs}, (), None))  # fmt: skip
        stages.append(training_stage(config, seed_dir, data, f"reft_e{epochs}", ["train"],
                                     {"model": str(seed_dir / warmup / "final")}, config.reft,
                                     (warmup,), warmup))  # fmt: skip
        variants += [warmup, f"reft_e{epochs}"]
    return stages, list(dict.fromkeys(variants))


def variant_row(seed_dir: Path, variant: str, k: int) -> dict[str, float]:
    """Test top-1 (and voting@K for sampled evals) of one variant."""
    return accuracy_row(eval_metrics(seed_dir / "eval" / variant), k)


def accuracy_row(metrics: dict[str, float], k: int) -> dict[str, float]:
    """Top-1, and voting@K when the evaluation sampled, from a `reft eval` results' metrics."""
    row = {"top1": metrics["top1"]}
    if f"voting@{k}" in metrics:
        row["voting"] = metrics[f"voting@{k}"]
    return row


def epoch_at(step: int, logged: list[tuple[int, float]]) -> float:
    """The epoch at `step`, interpolated from the (step, epoch) pairs an SFT run logs every few
    steps (dev evaluations fall between them); 0 before the first, the last rate after the last."""
    if not logged:
        return 0.0
    previous = (0, 0.0)
    for point in logged:
        if point[0] >= step:
            break
        previous = point
    else:
        last_step, last_epoch = logged[-1]
        return last_epoch * step / last_step if last_step else last_epoch
    (low_step, low_epoch), (high_step, high_epoch) = previous, point
    return low_epoch + (high_epoch - low_epoch) * (step - low_step) / (high_step - low_step)


def variant_curves(stage: Stage) -> dict[str, Any]:
    """A variant's curves from its metrics.jsonl: dev accuracy per step and per generated token
    (PPO stages), per epoch (SFT stages), and the per-step training metrics."""
    records = metric_records(stage.out_dir / "metrics.jsonl")
    train = [r for r in records if r.get("split") == "train"]
    dev_records = [r for r in records if r.get("split") == "dev"]
    dev = [(r["step"], r["accuracy"]) for r in dev_records]
    curves: dict[str, Any] = {"dev_accuracy": dev}
    for key in HACKING_METRICS:  # multiple-choice data only
        points = [(r["step"], r[key]) for r in dev_records if key in r]
        if points:
            curves[f"dev_{key}"] = points
    if stage.argv[0] == "sft":
        logged = [(r["step"], r["epoch"]) for r in train if "epoch" in r]
        curves["dev_by_epoch"] = [(epoch_at(step, logged), acc) for step, acc in dev]
        return curves
    rollouts = int(stage.settings.get("batch_size", 1)) * int(
        stage.settings.get("samples_per_prompt", 1)
    )
    generated, tokens_at = 0.0, {0: 0.0}
    for record in train:  # response_length is a per-sequence mean over the step's rollouts
        generated += record.get("response_length", 0.0) * rollouts
        tokens_at[record["step"]] = generated
    curves["dev_by_tokens"] = [(tokens_at.get(step, generated), acc) for step, acc in dev]
    curves["questions_per_step"] = int(stage.settings.get("batch_size", 1))
    for key in TRAIN_CURVES:
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            curves[key] = points
    return curves


def build_study_results(config: dict[str, Any], study: str, variants: list[str],
                        stages: dict[int, list[Stage]], out_dir: Path, k: int,
                        row: Callable[[Path, str, int], dict[str, float]] = variant_row
                        ) -> dict[str, Any]:  # fmt: skip
    """The study's results.json document: the table per seed (`row` of each variant), mean and
    std, and the curves."""
    per_seed = {seed: {v: row(out_dir / f"seed_{seed}", v, k) for v in variants}
                for seed in stages}  # fmt: skip
    means, stds = aggregate(per_seed)
    curves = {seed: {stage.name: variant_curves(stage) for stage in seed_stages if stage.trains}
              for seed, seed_stages in stages.items()}  # fmt: skip
    return {"study": study, "variants": variants, "seeds": list(stages), "k": k, "methods": means,
            "std": stds, "per_seed": per_seed, "curves": curves, "machine": machine_record(),
            "config": config}  # fmt: skip


LABELS = {"full": "ReFT (shipped)", "no_kl": "no KL term", "shared_trunk": "shared-trunk value head",
          "no_partial_reward": "no partial reward", "sft": "SFT baseline",
          "warmup_mc": "warm-up, multiple choice", "mc": "ReFT, multiple choice",
          "mc_no_partial": "ReFT, multiple choice, no partial reward",
          "warmup_numeric": "warm-up, numeric", "numeric": "ReFT, numeric"}  # fmt: skip


def variant_label(variant: str) -> str:
    """`reft_no_kl` -> "no KL term"; `reft_e4` -> "ReFT from the 4-epoch warm-up"."""
    name = variant.removeprefix("reft_")
    if variant == "warmup":
        return "warm-up (shipped)"
    if variant.startswith("warmup_e") and variant[8:].isdigit():
        return f"warm-up, {variant[8:]} epochs"
    if variant.startswith("reft_e") and name[1:].isdigit():
        return f"ReFT from the {name[1:]}-epoch warm-up"
    return LABELS.get(name, name)


def study_table(results: dict[str, Any]) -> str:
    """Markdown: test top-1 and voting@K per variant (mean ± std over seeds), best and last dev."""
    k, several = results["k"], len(results["seeds"]) > 1
    first = results["curves"][results["seeds"][0]]
    lines = [f"| Variant | Test top-1 | Test voting@{k} | Best dev | Last dev | Last KL |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for variant in results["variants"]:
        mean, std = results["methods"][variant], results["std"][variant]
        cells = [percent_cell(mean.get(c), std.get(c), several) for c in ("top1", "voting")]
        dev = [acc for _, acc in first.get(variant, {}).get("dev_accuracy", [])]
        kl = first.get(variant, {}).get("kl", [])
        best, last = (f"{100 * max(dev):.1f}", f"{100 * dev[-1]:.1f}") if dev else ("–", "–")
        last_kl = f"{kl[-1][1]:.2f}" if kl else "–"
        lines.append(
            f"| {variant_label(variant)} | {' | '.join(cells)} | {best} | {last} | {last_kl} |"
        )
    return "\n".join(lines)


def percent_cell(mean: float | None, std: float | None, several: bool) -> str:
    """A table cell in percent: "50.0 ± 1.0" over several seeds, "50.0" for one, "–" if missing."""
    if mean is None:
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if several else f"{100 * mean:.1f}"


def write_study_report(
    results: dict[str, Any], out_dir: Path, figures: list[Path], command: str
) -> Path:
    """report.md: the command, the table, the figures."""
    text = "\n".join([
        *report_header(results, command),
        "Test accuracy at each variant's best dev checkpoint (dev columns: first seed; KL: the "
        "last step's summed KL to the reference, nats per response).", "",
        study_table(results), "",
        *(f"![{figure.stem}]({figure.name})" for figure in figures), "",
    ])  # fmt: skip
    path = out_dir / "report.md"
    path.write_text(text)
    return path


def report_header(results: dict[str, Any], command: str) -> list[str]:
    """A study report's first lines: its title, the command, the seeds and the machine."""
    seeds = ", ".join(str(seed) for seed in results["seeds"])
    machine = results["machine"]
    return [f"# reft demo --study {results['study']}", "",
            f"Command: `{command}`  ", f"Seeds: {seeds}; machine: {machine['cpus']} CPUs, "
            f"{machine['platform']}, torch {machine['torch']}", ""]  # fmt: skip
