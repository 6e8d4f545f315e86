"""The demo's outputs: results.json, report.md, and PNG figures, from the stages' own files.

Everything here reads what the `reft` commands wrote (eval/<method>/results.json with its K-sample
`curves`, the greedy eval_train/<method>/ and eval_shifted/<method>/results.json,
<stage>/metrics.jsonl, <stage>.done.json), so a report can be rebuilt from a finished output directory.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path
from typing import Any

from reft.answers.grading_stats import ERROR_KINDS, ERROR_PREFIX
from reft.data.example import CotKind
from reft.demo.stages import METHODS, reward_model_stage
from reft.metrics import read_metrics

LABELS = {
    "warmup": "SFT warm-up",
    "sft": "SFT",
    "reft": "ReFT",
    "offline_self_training": "Offline self-training",
    "online_self_training": "Online self-training",
}
COLUMNS = ("top1", "voting", "rerank", "pass")
"""The main table's test columns: greedy top-1, then over K samples majority voting, the reward
model's pick, and pass@K (any sample right: the ceiling that voting and rerank choose under)."""
CURVE_COLUMNS = ("voting", "rerank", "pass")
"""The accuracy-against-K curves of each method's test eval (`reft.evaluate.run.accuracy_curves`),
in table and figure order."""
GENERALISATION_SPLITS = {"train": "eval_train", "test": "eval", "shifted": "eval_shifted"}
"""Each generalisation column's greedy top-1 and the folder of the evals it is read from."""
GENERALISATION_COLUMNS = (*GENERALISATION_SPLITS, "gap")
"""The generalisation table's columns; `gap` is train - test (memorisation of trained questions)."""
STEP_PARTS = ("time_rollout", "time_scoring", "time_forward", "time_update", "time_sync")
"""The disjoint parts of a training step as the trainers log them: `time_grade` lies inside
`time_scoring` (ReFT) or `time_rollout` (online self-training), `time_fused_forward` inside
`time_update`."""
TOP1_ERROR = f"top1_{ERROR_PREFIX}"
"""The prefix of a test eval's error shares (`top1_error_timeout`, reft.evaluate.run)."""
FULL_COMMAND = "reft demo --seeds 0,1,2"
"""The run whose numbers the README's table reports; a --quick report points to it."""
QUICK_NOTE = (
    "**This is a smoke run (`reft demo --quick`): it checks that every stage runs, and its "
    "accuracies are not meaningful** (tiny budgets on a few hundred questions; differences "
    f"between methods are noise). The comparison is `{FULL_COMMAND}` (about 30 minutes per seed "
    "on 2 CPU cores); its measured table is in reft's README.md, section \"The demo's result\" (details in "
    "docs/demo.md)."
)
"""The first lines of a --quick run's report.md: what it is not, and where the real numbers are."""


def column_label(column: str, k: int) -> str:
    """A main-table column's heading ("Voting@8")."""
    return {"top1": "Top-1", "voting": f"Voting@{k}", "rerank": f"Rerank@{k}",
            "pass": f"Pass@{k}"}[column]  # fmt: skip


def seed_results(seed_dir: Path, k: int) -> dict[str, dict[str, float]]:
    """{method: {top1, voting, rerank, pass}} for one seed (the warm-up has top1 only)."""
    methods: dict[str, dict[str, float]] = {}
    curves = seed_k_curves(seed_dir)
    for method in ("warmup", *METHODS):
        metrics = eval_metrics(seed_dir / "eval" / method)
        row = {"top1": metrics["top1"]}
        if method != "warmup":
            row |= {column: at_k(metrics, curves.get(method), column, k) for column in COLUMNS[1:]}
        methods[method] = row
    return methods


def at_k(metrics: dict[str, Any], curves: dict | None, column: str, k: int) -> float:
    """`column`@k of one eval: its headline metric when it drew k samples, else the curve's point
    at k (an eval that drew more samples for the accuracy-against-K figure)."""
    if f"{column}@{k}" in metrics:
        return metrics[f"{column}@{k}"]
    if curves and k in curves["k"] and column in curves:
        return curves[column][curves["k"].index(k)]
    raise KeyError(f"no {column}@{k} in the eval's metrics or curves")


def eval_entries(seed_dir: Path, key: str) -> dict[str, Any]:
    """{method: the `key` entry of its test eval's results.json} for every method whose eval has
    one (older results, and evals without samples or a reranker, are left out)."""
    entries = {}
    for method in ("warmup", *METHODS):
        path = seed_dir / "eval" / method / "results.json"
        entry = json.loads(path.read_text()).get(key) if path.exists() else None
        if entry:
            entries[method] = entry
    return entries


def seed_k_curves(seed_dir: Path) -> dict[str, dict[str, list[float]]]:
    """{method: {"k": [...], "voting": [...], "rerank": [...], "pass": [...]}} for one seed: the
    curves of each test eval that has them (sampled evals of a `reft eval` that writes curves; the
    greedy warm-up eval and older results have none and are left out)."""
    return eval_entries(seed_dir, "curves")


def mean_k_curves(per_seed: dict[int, dict[str, dict[str, list[float]]]]) -> dict[str, dict]:
    """The mean over seeds of each method's curves at each k. A method, a k or a curve missing from
    some seed is left out rather than averaged over fewer seeds."""
    seeds = list(per_seed)
    means: dict[str, dict[str, list[float]]] = {}
    for method in per_seed[seeds[0]]:
        runs = [per_seed[seed].get(method) for seed in seeds]
        if not all(runs):
            continue
        ks = [k for k in runs[0]["k"] if all(k in run["k"] for run in runs)]
        columns = [c for c in CURVE_COLUMNS if all(c in run for run in runs)]
        means[method] = {"k": ks} | {
            column: [statistics.fmean(run[column][run["k"].index(k)] for run in runs) for k in ks]
            for column in columns
        }
    return means


def seed_generalisation(seed_dir: Path) -> dict[str, dict[str, float]]:
    """{method: {train, test, shifted, gap}} for one seed: greedy top-1 on the method's own first
    training questions, on the test split and on the shifted split, and train - test.

    A split whose eval is missing (a demo run before these evals existed) is left out of the row,
    so such a directory still gets a report, with "–" in that column.
    """
    table: dict[str, dict[str, float]] = {}
    for method in ("warmup", *METHODS):
        row = {split: eval_metrics(seed_dir / folder / method)["top1"]
               for split, folder in GENERALISATION_SPLITS.items()
               if (seed_dir / folder / method / "results.json").exists()}  # fmt: skip
        if "train" in row and "test" in row:
            row["gap"] = row["train"] - row["test"]
        table[method] = row
    return table


def seed_reward_model(seed_dir: Path) -> dict[str, dict[str, float]]:
    """{method: its reward model's last dev record}: pooled AUC, within-question AUC (pairs of one
    right and one wrong sample of the same question), rerank and oracle (pass@K) accuracy on the
    dev samples, which tell whether reranking can beat voting at this scale."""
    table = {}
    for method in METHODS:
        records = metric_records(seed_dir / reward_model_stage(method) / "metrics.jsonl")
        dev = [r for r in records if r.get("split") == "dev"]
        keys = ("auc", "auc_within", "rerank", "oracle", "positive_rate")
        # A metric is None when the dev samples hold one class only (tiny runs): left out.
        row = {key: dev[-1][key] for key in keys if dev and dev[-1].get(key) is not None}
        if row:
            table[method] = row
    return table


def seed_reranker_test(seed_dir: Path) -> dict[str, dict[str, float]]:
    """{method: how its reward model orders its own test samples}: pooled AUC, within-question AUC
    and the number of (right, wrong) pairs, from each test eval's `reranker` entry."""
    return eval_entries(seed_dir, "reranker")


def seed_budgets(seed_dir: Path) -> dict[str, dict[str, float]]:
    """Each method's training budget: optimizer steps, epochs and wall-clock seconds of its own stage,
    and `total_seconds` including the warm-up it starts from."""
    seconds = {name: _stage_seconds(seed_dir, name) for name in ("warmup", *METHODS)}
    budgets = {}
    for method in ("warmup", *METHODS):
        records = metric_records(seed_dir / method / "metrics.jsonl")
        steps = max((int(r["step"]) for r in records), default=0)  # the last dev record is the end
        train = [r for r in records if r.get("split") == "train" and r.get("step")]
        epochs = steps * train[-1]["epoch"] / train[-1]["step"] if train else 0.0
        own = seconds[method]
        budgets[method] = {
            "steps": steps,
            "epochs": round(epochs, 2),
            "seconds": round(own, 1),
            "total_seconds": round(own + (0.0 if method == "warmup" else seconds["warmup"]), 1),
        } | grading_budget(train)
    return budgets


def grading_budget(train: list[dict[str, Any]]) -> dict[str, float]:
    """What grading programs cost a stage that samples and grades P-CoT programs at every step
    (ReFT, online self-training), from its logged train records; {} for any other stage.

    Medians over the logged steps, so the program workers' start-up at step 1 does not count:
    `grade_seconds` (time_grade: waiting for the sandboxed programs), `programs_per_s`, and
    `grade_share`, time_grade over the step's parts (STEP_PARTS)."""
    graded = [r for r in train if "programs_per_s" in r]
    if not graded:
        return {}
    shares = [r["time_grade"] / sum(r.get(part, 0.0) for part in STEP_PARTS) for r in graded]
    return {
        "grade_seconds": round(statistics.median(r["time_grade"] for r in graded), 4),
        "programs_per_s": round(statistics.median(r["programs_per_s"] for r in graded), 1),
        "grade_share": round(statistics.median(shares), 4),
    }


def seed_error_shares(seed_dir: Path) -> dict[str, dict[str, float]]:
    """{method: {kind: share}}: how often each method's greedy test completions ended in each error
    kind (its test eval's `top1_error_<kind>`; {} for an eval from before they were reported)."""
    return {
        method: {key.removeprefix(TOP1_ERROR): value
                 for key, value in eval_metrics(seed_dir / "eval" / method).items()
                 if key.startswith(TOP1_ERROR)}
        for method in ("warmup", *METHODS)
    }  # fmt: skip


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
            for record in metric_records(seed_dir / method / "metrics.jsonl")
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
    """Mean and (sample) standard deviation over seeds of every method and column (a column missing
    from some seed is left out rather than averaged over fewer seeds)."""
    seeds = list(per_seed)
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    for method, row in per_seed[seeds[0]].items():
        means[method], stds[method] = {}, {}
        for column in row:
            if any(column not in per_seed[seed][method] for seed in seeds):
                continue
            values = [per_seed[seed][method][column] for seed in seeds]
            means[method][column] = statistics.fmean(values)
            stds[method][column] = statistics.stdev(values) if len(values) > 1 else 0.0
    return means, stds


def build_results(
    config: dict[str, Any], seeds: list[int], out_dir: Path, k: int
) -> dict[str, Any]:
    """The demo's results.json document."""
    per_seed = {seed: seed_results(out_dir / f"seed_{seed}", k) for seed in seeds}
    k_curves = {seed: seed_k_curves(out_dir / f"seed_{seed}") for seed in seeds}
    generalisation = {seed: seed_generalisation(out_dir / f"seed_{seed}") for seed in seeds}
    budgets = {seed: seed_budgets(out_dir / f"seed_{seed}") for seed in seeds}
    means, stds = aggregate(per_seed)
    generalisation_means, generalisation_stds = aggregate(generalisation)
    errors = aggregate({seed: seed_error_shares(out_dir / f"seed_{seed}") for seed in seeds})[0]
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
        "k_curves": mean_k_curves(k_curves),
        "generalisation": generalisation_means,
        "generalisation_std": generalisation_stds,
        "generalisation_per_seed": {str(seed): generalisation[seed] for seed in seeds},
        "reward_model_dev": {
            str(seed): seed_reward_model(out_dir / f"seed_{seed}") for seed in seeds
        },
        "reranker_test": {
            str(seed): seed_reranker_test(out_dir / f"seed_{seed}") for seed in seeds
        },
        "error_shares": errors,
        "budget_seconds": budget_seconds,
        "budgets": {str(seed): budgets[seed] for seed in seeds},
        "base": _base_record(out_dir),
        "machine": machine_record(),
        "config": config,
    }


def _base_record(out_dir: Path) -> dict[str, Any] | None:
    """What `run_demo` recorded of the shared base (None: the model was already pretrained)."""
    path = out_dir / "base.json"
    return json.loads(path.read_text()) if path.exists() else None


def results_table(results: dict[str, Any]) -> str:
    """The paper-style Markdown table: rows are methods, columns top-1 / voting@K / rerank@K /
    pass@K and the budget."""
    k, several = results["k"], len(results["seeds"]) > 1
    headings = [column_label(column, k) for column in COLUMNS]
    lines = [f"| Method | {' | '.join(headings)} | Budget (s, incl. warm-up) |",
             "|---" * (len(COLUMNS) + 2) + "|"]  # fmt: skip
    for method in ("warmup", *METHODS):
        cells = _cells(results["methods"][method], results["std"][method], COLUMNS, several)
        budget = f"{results['budget_seconds'][method]:.0f}"
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} | {budget} |")
    return "\n".join(lines)


COT_LABELS = {CotKind.nl.value: "N-CoT", CotKind.python.value: "P-CoT"}
"""Column-group names of the paper's table, by the chain-of-thought kind of a demo's results."""


def paper_table(results_list: list[dict[str, Any]]) -> str:
    """The paper's layout: one row per method, one column group (top-1, voting@K, rerank@K, pass@K)
    per demo results (N-CoT, P-CoT), each cell the mean ± std over that demo's seeds."""
    groups = [COT_LABELS[results["config"]["cot"]] for results in results_list]
    if len(set(groups)) != len(groups):
        raise ValueError(f"one results file per chain-of-thought kind, got {', '.join(groups)}")
    headings = [f"{group} {column_label(column, results['k'])}"
                for group, results in zip(groups, results_list, strict=True) for column in COLUMNS]  # fmt: skip
    lines = [f"| Method | {' | '.join(headings)} |", "|---" * (len(headings) + 1) + "|"]
    for method in ("warmup", *METHODS):
        cells = []
        for results in results_list:
            several = len(results["seeds"]) > 1
            mean, std = results["methods"][method], results["std"][method]
            cells += _cells(mean, std, COLUMNS, several)
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} |")
    return "\n".join(lines)


def generalisation_table(results: dict[str, Any]) -> str:
    """Greedy accuracy per method on its own training questions, the test split and the shifted
    split, and the train - test gap (in percentage points)."""
    several = len(results["seeds"]) > 1
    lines = ["| Method | Own training questions | Test | Shifted split | Train − test (points) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for method in ("warmup", *METHODS):
        mean, std = results["generalisation"][method], results["generalisation_std"][method]
        cells = _cells(mean, std, GENERALISATION_COLUMNS, several)
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} |")
    return "\n".join(lines)


def k_curves_table(results: dict[str, Any]) -> str:
    """Test accuracy against the number of samples: rows are methods with curves, columns voting,
    rerank and pass at each K ("" when no method has curves, as in results from before them)."""
    curves = results.get("k_curves") or {}
    if not curves:
        return ""
    ks = sorted({k for method_curves in curves.values() for k in method_curves["k"]})
    columns = [(column, k) for column in CURVE_COLUMNS for k in ks]
    headings = [column_label(column, k) for column, k in columns]
    lines = [f"| Method | {' | '.join(headings)} |", "|---" * (len(columns) + 1) + "|"]
    for method, method_curves in curves.items():
        points = {(column, k): value for column in CURVE_COLUMNS if column in method_curves
                  for k, value in zip(method_curves["k"], method_curves[column], strict=True)}  # fmt: skip
        cells = [f"{100 * points[key]:.1f}" if key in points else "–" for key in columns]
        lines.append(f"| {LABELS.get(method, method)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _table_section(results: dict[str, Any], title: str, table: str, note: str) -> list[str]:
    """report.md lines of one titled table and its note (nothing when the table is empty)."""
    if not table:
        return []
    spread = " (mean over seeds)" if len(results["seeds"]) > 1 else ""
    return [f"## {title}{spread}", "", table, "", note, ""]


def _k_curves_section(results: dict[str, Any]) -> list[str]:
    """report.md's accuracy-against-K section (nothing without curves)."""
    return _table_section(results, "Accuracy against K: test accuracy (%)", k_curves_table(results),
                          "Each point uses the first K of the same samples per question (i.i.d. "
                          "draws, so a prefix is an unbiased estimate of an eval with that K).")  # fmt: skip


def _reward_model_line(per_seed: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = []
    for seed, methods in per_seed.items():
        for method, row in methods.items():
            if {"auc", "rerank", "oracle"} <= set(row):
                within = (
                    f", within-question AUC {row['auc_within']:.2f}" if "auc_within" in row else ""
                )
                rows.append(f"seed {seed} {LABELS[method]}: AUC {row['auc']:.2f}{within}, rerank "
                            f"{100 * row['rerank']:.1f}% vs oracle {100 * row['oracle']:.1f}%")  # fmt: skip
    return ("Reward models on their dev samples (the warm-up's samples of the dev questions): "
            + ("; ".join(rows) or "–") + ".")  # fmt: skip


def _base_line(base: dict[str, Any] | None) -> str:
    if base is None:
        return "Start: the pretrained model itself (no base stage)."
    how = "taken from the cache" if base["cached"] else f"built in {base['seconds']:.0f} s"
    return f"Start: the shared base `{base['start']}`, {how} (one base for every seed and method)."


def budgets_table(results: dict[str, Any]) -> str:
    """Steps, epochs and seconds of each method's own stage, per seed; with stages that graded
    programs (P-CoT), also their grading seconds per step, programs per second and grading's share
    of a step (`grading_budget`)."""
    budgets = results["budgets"]
    grading = any("programs_per_s" in b for seed in budgets.values() for b in seed.values())
    extra = " Grading s/step | Programs/s | Grading % of step |" if grading else ""
    lines = ["| Seed | Method | Steps | Epochs | Own seconds | Seconds incl. warm-up |" + extra,
             "|---|---|---|---|---|---|" + "---|" * (3 if grading else 0)]  # fmt: skip
    for seed, seed_budgets in budgets.items():
        for method, budget in seed_budgets.items():
            row = (f"| {seed} | {LABELS[method]} | {budget['steps']} | {budget['epochs']} | "
                   f"{budget['seconds']:.0f} | {budget['total_seconds']:.0f} |")  # fmt: skip
            lines.append(row + (_grading_cells(budget) if grading else ""))
    return "\n".join(lines)


def _grading_cells(budget: dict[str, float]) -> str:
    if "programs_per_s" not in budget:
        return " – | – | – |"
    return (f" {budget['grade_seconds']:.3f} | {budget['programs_per_s']:.0f} | "
            f"{100 * budget['grade_share']:.1f} |")  # fmt: skip


def error_shares_table(results: dict[str, Any]) -> str:
    """Share (%) of each method's greedy test programs that ended in each execution error kind
    (P-CoT demos; "" otherwise, or when no eval reported them)."""
    if results["config"].get("cot") != CotKind.python.value:
        return ""
    rows = {m: shares for m, shares in results.get("error_shares", {}).items() if shares}
    if not rows:
        return ""
    kinds = ERROR_KINDS[CotKind.python]
    lines = [f"| Method | {' | '.join(kinds)} |", "|---" * (len(kinds) + 1) + "|"]
    for method, shares in rows.items():
        cells = [f"{100 * shares[k]:.1f}" if k in shares else "–" for k in kinds]
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _error_shares_section(results: dict[str, Any]) -> list[str]:
    """report.md's program-errors section (nothing for N-CoT demos)."""
    return _table_section(results, "Program errors: share of greedy test programs (%)",
                          error_shares_table(results),
                          "Every error earns reward 0; `forbidden` is a program that tried something "
                          "the sandbox forbids (docs/grading.md). Same checkpoints as the test table.")  # fmt: skip


def write_report(results: dict[str, Any], out_dir: Path, figures: list[Path], command: str) -> Path:
    """report.md: the table, the budgets, the figures and how the run was made."""
    seeds = results["seeds"]
    spread = " (mean ± std over seeds)" if len(seeds) > 1 else ""
    machine = results["machine"]
    quick = bool(results["config"].get("quick"))
    text = [
        "# reft demo: ReFT vs SFT and self-training on the synthetic task",
        "",
        *([QUICK_NOTE, ""] if quick else []),
        f"Command: `{command}`  ",
        f"Machine: {machine['cpus']} CPU cores, {machine['platform']}, torch {machine['torch']}  ",
        f"Seeds: {', '.join(map(str, seeds))}. Test questions: {results['config']['task']['test_size']}.",
        _base_line(results.get("base")),
        "",
        f"## Test accuracy (%){spread}",
        "",
        results_table(results),
        "",
        "Each method is evaluated at its best dev checkpoint (the warm-up at its last); the test split "
        "is used for this table only. Rerank: each method's own outcome reward model (initialised "
        "from its model, trained on the warm-up's samples of the training questions) picks one of "
        f"the K samples. Pass@{results['k']}: any of the K samples is right (the ceiling that "
        "voting and rerank choose under).",
        "",
        _reward_model_line(results.get("reward_model_dev", {})),
        "",
        *_k_curves_section(results),
        *_error_shares_section(results),
        f"## Generalisation: greedy accuracy (%){spread}",
        "",
        generalisation_table(results),
        "",
        generalisation_note(results["config"]["task"]),
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


def generalisation_note(task: dict[str, Any]) -> str:
    """What the generalisation table's columns hold, from the demo's task settings."""
    longer = task["max_steps"] + task["shifted_steps"]
    trained = min(task["train_eval_size"], task["train_size"])  # a longer `limit` takes all
    return (
        f"Own training questions: the first {trained} training questions, which "
        f"every method trained on. Test: the test split (the Top-1 column above). Shifted split: "
        f"{task['shifted_size']} unseen questions with {longer} operations each, "
        f"{task['shifted_steps']} more than any training question. Same checkpoints as above. "
        "A large train − test gap points to memorised training questions rather than a learnt skill."
    )


def _cells(mean: dict[str, float], std: dict[str, float], columns: tuple[str, ...],
           several: bool) -> list[str]:  # fmt: skip
    """Percent cells of a table row; "–" where a method has no such column."""
    return [_percent(mean[c], std[c], several) if c in mean else "–" for c in columns]


def _percent(mean: float, std: float, several: bool) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if several else f"{100 * mean:.1f}"


def eval_metrics(eval_dir: Path) -> dict[str, Any]:
    return json.loads((eval_dir / "results.json").read_text())["metrics"]


def _stage_seconds(seed_dir: Path, name: str) -> float:
    marker = seed_dir / f"{name}.done.json"
    return json.loads(marker.read_text())["record"]["seconds"] if marker.exists() else math.nan


def metric_records(path: Path) -> list[dict[str, Any]]:
    return read_metrics(path) if path.exists() else []  # a stage that never logged


def machine_record() -> dict[str, Any]:
    import os

    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip
