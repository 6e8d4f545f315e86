"""The demo's stage graph for one seed. Every stage is one ordinary `reft` command, so the demo is a
script a user could type, and `commands.sh` in the output directory is exactly that script.

    (base, shared and cached: reft.demo.base)
      |
    warmup --+--> sft ---------------------> reward_model_<method> --> eval_<method> (test split)
             +--> reft                          (one per method)
             +--> offline_self_training
             +--> online_self_training ------------------------------> evaltrain_<method>,
                                                                        evalshift_<method>

ReFT and both self-training baselines start from the warm-up's last checkpoint; the SFT baseline
continues the warm-up's SFT schedule to its end. Each method is evaluated at its best dev checkpoint
(the warm-up at its last): on the test split (top-1, voting@K, rerank@K, pass@K), and greedily on
its own training questions and on the shifted split (generalisation).

Reranking follows the authors' protocol (their Rerank scripts): every method has its own reward
model, initialised from that method's evaluated model, trained on one shared set of samples of the
WARM-UP on the training questions (the warm-up has not memorised them, so its right and wrong
samples differ in their reasoning, not in how familiar the question is). The first method's reward
model stage samples them; the others reuse its records (`records_from`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reft.demo.config import DemoConfig

METHODS = ("sft", "reft", "offline_self_training", "online_self_training")
"""The methods compared in the table, in row order (the warm-up is reported beside them)."""


@dataclass
class Stage:
    """One `reft` command of the demo."""

    name: str
    argv: list[str]
    """Arguments after `reft` (the subcommand first)."""
    out_dir: Path
    needs: tuple[str, ...] = ()
    """Stages that must finish first."""
    trains: bool = True
    """A training stage (resumable from its checkpoints) rather than an evaluation."""
    starts_from: str | None = None
    """The stage whose checkpoint this one starts from (its time counts in this method's budget)."""
    settings: dict[str, Any] = field(default_factory=dict)

    def command_line(self) -> str:
        """The shell line that runs this stage."""
        return " ".join(["reft", *(_quote(arg) for arg in self.argv)])


def stage_data(config: DemoConfig, seed: int, data_dir: Path) -> dict[str, Any]:
    """The settings every training stage of a seed shares: its data, CoT kind and seed."""
    return {"train_data": str(data_dir / "train.json"), "dev_data": str(data_dir / "dev.json"),
            "cot": config.cot.value, "seed": seed}  # fmt: skip


def training_stage(config: DemoConfig, seed_dir: Path, data: dict[str, Any], name: str,
                   command: list[str], defaults: dict[str, Any], section: dict[str, Any],
                   needs: tuple[str, ...], starts_from: str | None) -> Stage:  # fmt: skip
    """A training stage: `data`, the common settings, the stage's `defaults` then its recipe
    `section` (later ones win), writing to seed_dir/name."""
    out_dir = seed_dir / name
    settings = {**data, **config.common, **defaults, **section, "out_dir": str(out_dir)}
    return Stage(name, [*command, *as_overrides(settings)], out_dir, needs,
                 starts_from=starts_from, settings=settings)  # fmt: skip


def test_eval_stage(config: DemoConfig, seed: int, seed_dir: Path, data_dir: Path, method: str,
                    ranking: dict[str, Any], needs: tuple[str, ...]) -> Stage:  # fmt: skip
    """`eval_<method>` on the test split at the method's evaluation checkpoint; `ranking` adds K
    samples (and a reranker)."""
    settings = {"dataset": str(data_dir / "test.json"), "cot": config.cot.value, "seed": seed,
                **config.eval, **ranking, "model": str(eval_checkpoint(seed_dir, method)),
                "out_dir": str(seed_dir / "eval" / method)}  # fmt: skip
    return Stage(f"eval_{method}", ["eval", *as_overrides(settings)], seed_dir / "eval" / method,
                 needs, trains=False, settings=settings)  # fmt: skip


def plan_stages(
    config: DemoConfig, seed: int, seed_dir: Path, data_dir: Path, start: str | None = None
) -> list[Stage]:
    """Every stage of one seed's comparison, in an order that respects `needs`; the warm-up starts
    from `start` (the shared base's checkpoint; default: `config.model`)."""
    data = stage_data(config, seed, data_dir)
    warmup_ckpt = str(seed_dir / "warmup" / "final")

    def training(name: str, command: list[str], defaults: dict[str, Any], section: dict[str, Any],
                 needs: tuple[str, ...], starts_from: str | None) -> Stage:  # fmt: skip
        return training_stage(config, seed_dir, data, name, command, defaults, section, needs,
                              starts_from)  # fmt: skip

    from_warmup = {"model": warmup_ckpt}
    stages = [
        training("warmup", ["sft"], {"model": start or config.model}, config.warmup, (), None),
        training("sft", ["sft"], from_warmup, config.sft, ("warmup",), "warmup"),
        training("reft", ["train"], from_warmup, config.reft, ("warmup",), "warmup"),
        training("offline_self_training", ["self-train"],
                 {**from_warmup, "mode": "offline", "sample_model": warmup_ckpt},
                 config.offline_self_training, ("warmup",), "warmup"),
        training("online_self_training", ["self-train"], {**from_warmup, "mode": "online"},
                 config.online_self_training, ("warmup",), "warmup"),
    ]  # fmt: skip
    stages += [
        training(reward_model_stage(method), ["rm", "train"], settings, config.reward_model, needs,
                 None)
        for method, (settings, needs) in _reward_model_plans(seed_dir, warmup_ckpt).items()
    ]  # fmt: skip
    for method in ("warmup", *METHODS):
        ranking = {} if method == "warmup" else {
            "k": samples_per_question(config, method),
            "rerank": str(seed_dir / reward_model_stage(method) / "best"),
        }  # fmt: skip
        needs = (method,) if method == "warmup" else (method, reward_model_stage(method))
        stages.append(test_eval_stage(config, seed, seed_dir, data_dir, method, ranking, needs))
    # Greedy evals for the generalisation table, listed last: the test evals run first when both wait.
    for method in ("warmup", *METHODS):
        stages += _generalisation_evals(config, seed, seed_dir, data_dir, method)
    return stages


def samples_per_question(config: DemoConfig, method: str) -> int:
    """K of `method`'s test eval: curve_k for the methods of the accuracy-against-K figure."""
    return (config.curve_k or config.k) if method in config.curve_methods else config.k


def reward_model_stage(method: str) -> str:
    """The name (and folder) of the stage that trains `method`'s reward model."""
    return f"reward_model_{method}"


def _reward_model_plans(
    seed_dir: Path, warmup_ckpt: str
) -> dict[str, tuple[dict[str, Any], tuple]]:
    """Each method's reward-model settings and needs: initialised from the method's evaluated model;
    the first samples the warm-up on the training questions, the others reuse its records."""
    sampler = reward_model_stage(METHODS[0])
    plans = {}
    for method in METHODS:
        settings: dict[str, Any] = {"model": str(eval_checkpoint(seed_dir, method))}
        if method == METHODS[0]:
            plans[method] = ({**settings, "sample_model": warmup_ckpt}, (method,))
        else:
            plans[method] = (
                {**settings, "records_from": str(seed_dir / sampler)},
                (method, sampler),
            )
    return plans


def as_overrides(settings: dict[str, Any]) -> list[str]:
    """`key=value` arguments; lists and dicts in OmegaConf's dotlist syntax."""
    return [f"{key}={_format_value(value)}" for key, value in settings.items()]


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _quote(arg: str) -> str:
    safe = all(ch.isalnum() or ch in "=_-./:,@+" for ch in arg)
    return arg if safe else "'" + arg.replace("'", "'\\''") + "'"


def eval_checkpoint(seed_dir: Path, method: str) -> Path:
    """The checkpoint a method is evaluated at: its best dev checkpoint (a warm-up's last)."""
    return seed_dir / method / ("final" if method.startswith("warmup") else "best")


def _generalisation_evals(
    config: DemoConfig, seed: int, seed_dir: Path, data_dir: Path, method: str
) -> list[Stage]:
    """`evaltrain_<method>` and `evalshift_<method>`: greedy top-1 of `method`, at the checkpoint its
    test eval uses, on the first `train_eval_size` training questions and on the shifted split.

    Greedy only (k=0, no reranker): the generalisation table compares top-1, and these evals stay
    cheap beside the test eval's K samples.
    """
    greedy = {key: value for key, value in config.eval.items() if key not in ("k", "rerank")}
    common = {"cot": config.cot.value, "seed": seed, **greedy, "k": 0,
              "model": str(eval_checkpoint(seed_dir, method))}  # fmt: skip
    splits = {
        "evaltrain": ("eval_train", {"dataset": str(data_dir / "train.json"),
                                     "limit": config.task.train_eval_size}),
        "evalshift": ("eval_shifted", {"dataset": str(data_dir / "shifted.json")}),
    }  # fmt: skip
    stages = []
    for prefix, (folder, data) in splits.items():
        out_dir = seed_dir / folder / method
        settings = {**common, **data, "out_dir": str(out_dir)}  # data last: its limit wins
        stages.append(Stage(f"{prefix}_{method}", ["eval", *as_overrides(settings)], out_dir,
                            (method,), trains=False, settings=settings))  # fmt: skip
    return stages
