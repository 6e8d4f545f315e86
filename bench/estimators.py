"""ReFT's PPO (critic + GAE) against GRPO and RLOO on the demo's task, from the same warm-up, at equal
generated tokens.

    python bench/estimators.py --demo runs/demo --seeds 0,1,2 --out runs/estimators

`--demo` is a finished `reft demo` directory: its data, its warm-ups (one per seed) and its ReFT
stage's settings are reused, so the only difference between the runs is the estimator. Every
method generates 256 responses per step for the same number of steps (PPO: 256 prompts x 1
sample; GRPO and RLOO: 64 prompts x 4 samples, their baseline being the other samples of the same
prompt), so they see the same number of rollouts; the figure puts dev accuracy against generated
tokens (summed from the logged response lengths) and against wall time. Stages run through the
demo's runner (`--workers` at a time, one torch thread each: the numbers do not depend on the
machine) and resume if interrupted. Writes results.json, report.md and estimators.png under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from reft.config import load_config
from reft.demo.config import DemoConfig
from reft.demo.runner import StageRunner
from reft.demo.stages import Stage, as_overrides, plan_stages
from reft.files import write_json_atomic, write_text_atomic
from reft.metrics import read_metrics

CRITIC_SETTINGS = ("value_model", "lam", "critic_warmup_steps")
"""The demo's ReFT settings that only a critic uses."""
GROUP = {"batch_size": 64, "samples_per_prompt": 4}
"""Critic-free runs: 64 prompts x 4 samples = the PPO step's 256 responses."""
ESTIMATORS = {
    "gae": {},
    "grpo": {**GROUP, "estimator": "grpo", "kl_placement": "loss", "kl_estimator": "k3"},
    "rloo": {**GROUP, "estimator": "rloo"},
}
"""Overrides of the demo's ReFT stage per method; GRPO as DeepSeekMath (k3 KL in the loss), RLOO
with the KL in the reward as PPO."""
LABELS = {"gae": "PPO + critic (ReFT)", "grpo": "GRPO", "rloo": "RLOO"}


def method_stages(demo: Path, config: DemoConfig, seed: int, out: Path, method: str) -> list[Stage]:
    """The training and test-evaluation stages of one (seed, method)."""
    seed_dir = demo / f"seed_{seed}"
    reft = next(s for s in plan_stages(config, seed, seed_dir, demo / "data") if s.name == "reft")
    settings = dict(reft.settings)
    if method != "gae":
        settings = {k: v for k, v in settings.items() if k not in CRITIC_SETTINGS}
    run_dir = out / f"seed_{seed}" / method
    settings |= {**ESTIMATORS[method], "log_every": 1, "out_dir": str(run_dir)}
    train = Stage(f"{method}_s{seed}", ["train", *as_overrides(settings)], run_dir, ())
    evaluation = {"dataset": str(demo / "data" / "test.json"), "cot": config.cot.value,
                  "seed": seed, **config.eval, "k": config.k, "model": str(run_dir / "best"),
                  "out_dir": str(run_dir / "eval")}  # fmt: skip
    test = Stage(f"eval_{method}_s{seed}", ["eval", *as_overrides(evaluation)], run_dir / "eval",
                 (train.name,), trains=False)  # fmt: skip
    return [train, test]


def curves(run_dir: Path) -> dict[str, list[float]]:
    """Dev accuracy against cumulative generated tokens and elapsed seconds."""
    total, per_step = 0.0, {}
    for record in read_metrics(run_dir, "train"):
        total += record["response_length"] * 256  # every method generates 256 responses a step
        per_step[record["step"]] = (total, record["time"])
    dev = read_metrics(run_dir, "dev")
    tokens = [per_step[r["step"]][0] for r in dev]
    return {"step": [r["step"] for r in dev], "tokens": tokens,
            "seconds": [r["time"] for r in dev], "accuracy": [r["accuracy"] for r in dev]}  # fmt: skip


def summarise(out: Path, seeds: list[int], k: int) -> dict[str, Any]:
    """Test metrics per method (mean, std over seeds) and each run's curves."""
    methods: dict[str, Any] = {}
    for method in ESTIMATORS:
        runs = [out / f"seed_{seed}" / method for seed in seeds]
        tests = [json.loads((run / "eval" / "results.json").read_text())["metrics"] for run in runs]
        row = {}
        for key in ("top1", f"voting@{k}", f"pass@{k}"):
            values = [100 * test[key] for test in tests]
            row[key] = {"mean": statistics.mean(values), "values": values,
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip
        row["seconds"] = [read_metrics(run, "train")[-1]["time"] for run in runs]
        row["curves"] = [curves(run) for run in runs]
        methods[method] = row
    return {"seeds": seeds, "k": k, "methods": methods}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    colors = dict(zip(ESTIMATORS, ("tab:red", "tab:blue", "tab:green"), strict=True))
    for method, row in results["methods"].items():
        for index, curve in enumerate(row["curves"]):
            label = LABELS[method] if index == 0 else None
            accuracy = [100 * a for a in curve["accuracy"]]
            axes[0].plot([t / 1e6 for t in curve["tokens"]], accuracy, color=colors[method],
                         alpha=0.8, label=label)  # fmt: skip
            axes[1].plot([s / 60 for s in curve["seconds"]], accuracy, color=colors[method],
                         alpha=0.8)  # fmt: skip
    axes[0].set_xlabel("generated tokens (millions)")
    axes[1].set_xlabel("wall time (minutes, 1 thread)")
    axes[0].set_ylabel("dev accuracy (%)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Same warm-up, 256 responses per step; seeds {results['seeds']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(results: dict[str, Any]) -> str:
    k = results["k"]
    lines = [f"| method | test top-1 | voting@{k} | pass@{k} | minutes per run |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for method, row in results["methods"].items():
        cells = [f"{row[key]['mean']:.1f} ± {row[key]['std']:.1f}"
                 for key in ("top1", f"voting@{k}", f"pass@{k}")]  # fmt: skip
        minutes = statistics.mean(row["seconds"]) / 60
        lines.append(f"| {LABELS[method]} | {' | '.join(cells)} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="a finished `reft demo` directory")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    config = load_config(DemoConfig, args.demo / "demo.yaml")
    stages = [stage for seed in seeds for method in ESTIMATORS
              for stage in method_stages(args.demo, config, seed, args.out, method)]  # fmt: skip
    StageRunner(stages, args.out / "logs", args.workers, threads=1).run()
    results = summarise(args.out, seeds, config.k)
    write_json_atomic(args.out / "results.json", results)
    write_text_atomic(args.out / "report.md", report(results))
    plot(results, args.out / "estimators.png")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
