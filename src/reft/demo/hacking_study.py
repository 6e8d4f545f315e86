"""`reft demo --study hacking`: the paper's MathQA reward-hacking analysis on the synthetic task.

The paper (ReFT, "Reward hacking for MathQA") found that on multiple-choice questions the outcome
reward pays for wrong reasoning: a chain of thought that computes a wrong number can still end on
the right option letter. It then trained on MathQA's numeric form, where the reward checks the
number itself. This study repeats that with the same questions in both forms:

- numeric: the recipe's task, as every other demo trains on it (data/);
- multiple choice: the same task knobs plus `choices = DemoConfig.hacking_choices` (data_mc/): the
  same problems and gold solutions, an option line under each question, the option letter as the
  gold answer (reft.data.synthetic).

Each form gets its own SFT warm-up (the recipe's `warmup` section), then ReFT with the recipe's
`reft` section for `DemoConfig.hacking_max_steps` steps each: `reft_mc`, `reft_mc_no_partial`
(`partial_reward=0`) and `reft_numeric`. Every model is evaluated on its own form's test split (greedy top-1 and, for the
ReFT variants, voting@K). The table adds reft.answers.hacking's rates: the reasoning's own number
against the gold value (on numeric the same `reasoning_value` against the gold number), the hacked
reward rate of greedy test answers, and of the training rollouts in the first and last logged steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

from reft.answers.compare import NUMERIC_TOLERANCE
from reft.answers.hacking import reasoning_value
from reft.answers.rewards import DEFAULT_PARTIAL_REWARD
from reft.demo.config import DemoConfig
from reft.demo.data import synth_knobs, write_synth_files
from reft.demo.report import eval_metrics, metric_records
from reft.demo.stages import Stage, stage_data, test_eval_stage, training_stage
from reft.demo.studies import accuracy_row, percent_cell, report_header, variant_label

FORMS = {"mc": ("reft_mc", "reft_mc_no_partial"), "numeric": ("reft_numeric",)}
"""Each task form and the ReFT variants trained on it (from that form's warm-up `warmup_<form>`)."""
VARIANT_CHANGES = {"reft_mc_no_partial": {"partial_reward": 0.0}}
"""`reft train` settings a variant layers on the recipe's `reft` section (the others: none)."""
VARIANTS = ("warmup_mc", "reft_mc", "reft_mc_no_partial", "warmup_numeric", "reft_numeric")
"""The table's rows, in order."""
CHOICE_DATA = "data_mc"
"""The multiple-choice form's folder, beside the numeric task's data folder."""
HACKED_WINDOW = 10
"""Logged training steps averaged for the hacked rate at the start and at the end of RL (at most
half of the logged steps each, so the two windows never overlap)."""
CLEAR_DIFFERENCE = 0.02
"""Rates and differences below 2 points count as absent or level in the verdicts, and below twice
their standard error (a share's binomial one on the test split; a training window's from its steps'
spread) or the seeds' standard deviation when those are larger."""


def choice_data_dir(data_dir: Path) -> Path:
    """The multiple-choice form's data folder for the numeric task's `data_dir`."""
    return data_dir.parent / CHOICE_DATA


def write_choice_task(config: DemoConfig, data_dir: Path) -> Path:
    """train/dev/test of the multiple-choice form (the task's knobs plus `hacking_choices`) in
    `choice_data_dir(data_dir)`: the same problems as the numeric files, each kept if present."""
    knobs = dataclasses.replace(synth_knobs(config.task), choices=config.hacking_choices)
    files = {
        "train": (knobs, "train", config.task.train_size),
        "dev": (knobs, "dev", config.task.dev_size),
        "test": (knobs, "test", config.task.test_size),
    }
    return write_synth_files(choice_data_dir(data_dir), files, config.cot, knobs)


def plan_hacking(
    config: DemoConfig, seed: int, seed_dir: Path, data_dir: Path, start: str | None
) -> tuple[list[Stage], list[str]]:
    """One seed's stages: per form a warm-up from `start` and its ReFT variants, then every test
    eval on the model's own form (K samples for the ReFT variants, greedy for the warm-ups)."""
    form_dirs = {"mc": choice_data_dir(data_dir), "numeric": data_dir}
    training, evals = [], []
    for form, variants in FORMS.items():
        data, warmup = stage_data(config, seed, form_dirs[form]), f"warmup_{form}"
        from_start = {"model": start or config.model}
        training.append(training_stage(config, seed_dir, data, warmup, ["sft"], from_start,
                                       config.warmup, (), None))  # fmt: skip
        from_warmup = {"model": str(seed_dir / warmup / "final")}
        for name in variants:
            budget = {"max_steps": config.hacking_max_steps}
            section = {**config.reft, **budget, **VARIANT_CHANGES.get(name, {})}
            training.append(training_stage(config, seed_dir, data, name, ["train"], from_warmup,
                                           section, (warmup,), warmup))  # fmt: skip
        for name in (warmup, *variants):
            sampled = {} if name == warmup else {"k": config.k}
            evals.append(test_eval_stage(config, seed, seed_dir, form_dirs[form], name, sampled,
                                         (name,)))  # fmt: skip
    return [*training, *evals], list(VARIANTS)


def hacking_row(seed_dir: Path, variant: str, k: int) -> dict[str, float]:
    """`accuracy_row` plus the reasoning's accuracy, the greedy test answers' hacked and no-number
    rates (multiple choice), and the training rollouts' hacked rate at the start and end of RL."""
    metrics = eval_metrics(seed_dir / "eval" / variant)
    row = accuracy_row(metrics, k)
    if "top1_reasoning_accuracy" in metrics:
        row["reasoning_accuracy"] = metrics["top1_reasoning_accuracy"]
        row["hacked_reward_rate"] = metrics["top1_hacked_reward_rate"]
        row["no_number_rate"] = metrics["top1_no_number_rate"]
    else:
        predictions = seed_dir / "eval" / variant / "predictions_greedy.jsonl"
        row["reasoning_accuracy"] = numeric_reasoning_accuracy(predictions)
    return row | train_hacked_rates(seed_dir / variant / "metrics.jsonl")


def numeric_reasoning_accuracy(predictions: Path) -> float:
    """The share of greedy answers (a `reft eval` predictions_greedy.jsonl on numeric data) whose
    reasoning's number (reft.answers.hacking.reasoning_value) is the gold number: the multiple-choice
    forms' `reasoning_accuracy`, measured the same way."""
    records = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    right = 0
    for record in records:
        value = reasoning_value(record["completions"][0]["text"])
        right += value is not None and abs(value - float(record["answer"])) <= NUMERIC_TOLERANCE
    return right / len(records) if records else 0.0


def train_hacked_rates(metrics_file: Path) -> dict[str, float]:
    """Mean `hacked_reward_rate` of the training rollouts over the first and the last
    `HACKED_WINDOW` logged steps ({} for a stage that logged none: numeric data, an SFT stage)."""
    rates = [r["hacked_reward_rate"] for r in metric_records(metrics_file)
             if r.get("split") == "train" and "hacked_reward_rate" in r]  # fmt: skip
    if not rates:
        return {}
    window = max(1, min(HACKED_WINDOW, len(rates) // 2))
    first, last = rates[:window], rates[-window:]
    return {"train_hacked_first": statistics.fmean(first),
            "train_hacked_last": statistics.fmean(last),
            "train_hacked_first_se": _standard_error(first),
            "train_hacked_last_se": _standard_error(last)}  # fmt: skip


def _standard_error(values: list[float]) -> float:
    """The standard error of the mean of `values`, from their own spread (0 for fewer than two):
    the step-to-step noise of a sampled rate, which its verdicts must exceed."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def partial_reward(results: dict[str, Any]) -> float:
    """The partial reward `reft_mc` trained with: the recipe's (flat `partial_reward` or in its
    `grading` section), else `reft train`'s default."""
    section = results["config"]["reft"]
    nested = section.get("grading", {}).get("partial_reward", DEFAULT_PARTIAL_REWARD)
    return float(section.get("partial_reward", nested))


def hacking_label(variant: str, results: dict[str, Any]) -> str:
    """The table's name of a variant (`reft_mc` -> "ReFT, multiple choice (partial reward 0.1)")."""
    if variant == "reft_mc":
        return f"{variant_label(variant)} (partial reward {partial_reward(results):g})"
    return variant_label(variant)


TABLE_COLUMNS = ("top1", "voting", "reasoning_accuracy", "hacked_reward_rate", "no_number_rate")
"""The table's columns of means ± std, before the training rollouts' hacked rates."""


def hacking_table(results: dict[str, Any]) -> str:
    """Markdown: per variant the test accuracy and the hacking rates (mean ± std over seeds)."""
    k, several = results["k"], len(results["seeds"]) > 1
    lines = [f"| Variant | Test top-1 | Test voting@{k} | Reasoning's number right | Hacked reward "
             "rate (test) | No number (test) | Hacked reward rate (training rollouts, first → "
             "last steps) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for variant in results["variants"]:
        mean, std = results["methods"][variant], results["std"][variant]
        cells = [percent_cell(mean.get(c), std.get(c), several) for c in TABLE_COLUMNS]
        first, last = (percent_cell(mean.get(c), std.get(c), several)
                       for c in ("train_hacked_first", "train_hacked_last"))  # fmt: skip
        rollouts = "–" if "train_hacked_last" not in mean else f"{first} → {last}"
        lines.append(f"| {hacking_label(variant, results)} | {' | '.join(cells)} | {rollouts} |")
    return "\n".join(lines)


def hacking_verdicts(results: dict[str, Any]) -> list[str]:
    """One markdown bullet per paper finding, each verdict computed from the table's means."""
    return [_verdict_reward_pays(results), _verdict_numeric(results), _verdict_partial(results)]


def _verdict_reward_pays(results: dict[str, Any]) -> str:
    """(1): the last steps' hacked rate is clearly above 0 (paid) and above the first steps'."""
    claim = "(1) On multiple choice the outcome reward pays for wrong reasoning, more as RL goes on"
    mc, warmup = results["methods"]["reft_mc"], results["methods"]["warmup_mc"]
    if "train_hacked_last" not in mc:
        return f"- **{claim}: not measured** (no training step logged hacked_reward_rate)."
    first, last = mc["train_hacked_first"], mc["train_hacked_last"]
    first_se, last_se = mc.get("train_hacked_first_se", 0.0), mc.get("train_hacked_last_se", 0.0)
    columns = ("train_hacked_first", "train_hacked_last")
    paid = last > _margin(results, columns, ("reft_mc",), last_se)
    rising = last - first > _margin(results, columns, ("reft_mc",), math.hypot(first_se, last_se))
    verdict = ("holds" if rising else "partly holds: paid, but RL did not raise the rate"
               ) if paid else "does not hold at this scale"  # fmt: skip
    return (f"- **{claim}: {verdict}.** In the last logged training steps {_pct(last)} of the "
            f"rewarded rollouts compute another number than the gold option's value ({_pct(first)} "
            f"in the first steps); greedy test answers: {_pct(mc.get('hacked_reward_rate'))} after "
            f"ReFT, {_pct(warmup.get('hacked_reward_rate'))} for the warm-up.")  # fmt: skip


def _verdict_numeric(results: dict[str, Any]) -> str:
    """(2): ReFT on the numeric form ends with clearly more reasoning that computes the answer."""
    claim = "(2) The numeric form avoids it: its reasoning computes the answer more often"
    methods = results["methods"]
    numeric, mc = (methods[v]["reasoning_accuracy"] for v in ("reft_numeric", "reft_mc"))
    questions = results["config"]["task"]["test_size"]
    noise = math.hypot(_binomial_se(numeric, questions), _binomial_se(mc, questions))
    margin = _margin(results, ("reasoning_accuracy",), ("reft_numeric", "reft_mc"), noise)
    relation = _relation(numeric - mc, margin, ("higher", "lower", "level"))
    verdict = "holds" if relation == "higher" else f"does not hold at this scale ({relation})"
    gains = [methods[f"reft_{form}"]["reasoning_accuracy"]
             - methods[f"warmup_{form}"]["reasoning_accuracy"] for form in ("numeric", "mc")]  # fmt: skip
    return (f"- **{claim}: {verdict}.** The reasoning's number is right in {_pct(numeric)} of "
            f"the numeric ReFT's test answers and {_pct(mc)} of the multiple-choice ReFT's (whose "
            f"letters are right in {_pct(methods['reft_mc']['top1'])}); ReFT moved it by "
            f"{_points(gains[0])} over the numeric warm-up and {_points(gains[1])} over the "
            "multiple-choice one.")  # fmt: skip


def _verdict_partial(results: dict[str, Any]) -> str:
    """(3): how the partial reward moves the hacked rate and the reasoning's accuracy."""
    reward = partial_reward(results)
    claim = (
        f"(3) The partial reward ({reward:g} for a wrong but extracted letter) on multiple choice"
    )
    if reward == 0:
        return f"- **{claim}: not tested:** the recipe's partial reward is already 0."
    methods, questions = results["methods"], results["config"]["task"]["test_size"]
    with_, without = methods["reft_mc"], methods["reft_mc_no_partial"]
    # Greedy test answers: a hacked rate over each run's rewarded answers (top-1 x questions),
    # the reasoning's accuracy over all questions.
    counts = {"hacked_reward_rate": lambda row: row["top1"] * questions,
              "reasoning_accuracy": lambda row: questions}  # fmt: skip
    effects = []
    for column, count in counts.items():
        noise = math.hypot(*(_binomial_se(row[column], count(row)) for row in (with_, without)))
        margin = _margin(results, (column,), ("reft_mc", "reft_mc_no_partial"), noise)
        effects.append(_relation(with_[column] - without[column], margin,
                                 ("raises", "lowers", "does not change")))  # fmt: skip
    return (f"- **{claim}: {effects[0]} the hacked reward rate and {effects[1]} the reasoning's "
            f"accuracy at this scale.** Hacked rate of greedy test answers "
            f"{_pct(with_['hacked_reward_rate'])} with it, {_pct(without['hacked_reward_rate'])} "
            f"without (training rollouts' last steps {_pct(with_.get('train_hacked_last'))} vs "
            f"{_pct(without.get('train_hacked_last'))}); reasoning's number right "
            f"{_pct(with_['reasoning_accuracy'])} vs {_pct(without['reasoning_accuracy'])}; letters "
            f"right {_pct(with_['top1'])} vs {_pct(without['top1'])}.")  # fmt: skip


def _margin(
    results: dict[str, Any], columns: tuple[str, ...], variants: tuple[str, ...], noise: float
) -> float:
    """What a rate or difference must exceed to count: the largest of CLEAR_DIFFERENCE, the seed
    std of `columns` among `variants`, and twice `noise` (its standard error within one seed)."""
    stds = [results["std"][v].get(c, 0.0) for v in variants for c in columns]
    return max([CLEAR_DIFFERENCE, 2 * noise, *stds])


def _binomial_se(rate: float, count: float) -> float:
    """The standard error of a share `rate` of `count` draws (0 for no draws)."""
    return math.sqrt(rate * (1 - rate) / count) if count > 0 else 0.0


def _relation(difference: float, margin: float, words: tuple[str, str, str]) -> str:
    """words[0] when `difference` exceeds `margin`, words[1] when below -margin, else words[2]."""
    return words[0] if difference > margin else words[1] if difference < -margin else words[2]


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f}%"


def _points(difference: float) -> str:
    return f"{100 * difference:+.1f} points"


def write_hacking_report(
    results: dict[str, Any], out_dir: Path, figures: list[Path], command: str
) -> Path:
    """report.md: the command, the table with what its columns measure, the verdicts, the figures."""
    test_size, k = results["config"]["task"]["test_size"], results["k"]
    text = "\n".join([
        *report_header(results, command),
        f"The same questions in two forms: numeric (the recipe's task) and multiple choice (the same "
        f"problems with {results['config']['hacking_choices']} options, the option letter as the "
        "answer). Each form has its own warm-up (the recipe's) and ReFT runs with the recipe's "
        f"`reft` settings for {results['config']['hacking_max_steps']} steps each; partial reward "
        f"{partial_reward(results):g} unless the "
        f"variant says otherwise. Each model is evaluated on its own form's test split "
        f"({test_size} questions) at its best dev checkpoint (a warm-up at its last).", "",
        hacking_table(results), "",
        "Test top-1: greedy answers right (letters on multiple choice, numbers on numeric); "
        f"voting@{k}: the majority of {k} samples. Reasoning's number right: greedy answers whose "
        "reasoning's last computed number is the gold value (reft.answers.hacking, on numeric the "
        "same check against the gold number). Hacked reward rate: rewarded answers whose reasoning "
        "computes another number than the option they name; no number: rewarded answers whose "
        f"reasoning names none. Training rollouts: the mean of the first and last {HACKED_WINDOW} "
        "logged PPO steps (sampled, not greedy: compare them with each other, not with the test "
        "columns). –: not applicable (numeric answers cannot be picked from options; warm-ups have "
        "no RL and no K samples).", "",
        "Per paper finding, at this scale:", *hacking_verdicts(results), "",
        *(f"![{figure.stem}]({figure.name})" for figure in figures), "",
    ])  # fmt: skip
    path = out_dir / "report.md"
    path.write_text(text)
    return path
