"""`run_demo`: data, the stage graph of every seed, then results.json, report.md and the figures."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from reft.config import config_to_dict, save_config
from reft.demo.base import BasePlan, base_cache_dir, plan_base
from reft.demo.config import DemoConfig
from reft.demo.data import synth_knobs, write_synth_files
from reft.demo.hacking_study import (
    hacking_row,
    hacking_table,
    write_choice_task,
    write_hacking_report,
)
from reft.demo.report import build_results, results_table, write_report
from reft.demo.runner import StageRunner, done_marker
from reft.demo.stages import plan_stages
from reft.demo.studies import (
    build_study_results,
    plan_study,
    study_table,
    variant_row,
    write_study_report,
)
from reft.files import check_output_dir, write_json_atomic
from reft.run_lock import RunLock
from reft.train.interrupt import program_prefix, without_resume

logger = logging.getLogger(__name__)


def default_out_dir() -> Path:
    return Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"


def run_demo(config: DemoConfig, command: str = "") -> dict[str, Any]:
    """Run (or resume) the whole comparison for every seed and write the report; returns results.json."""
    out_dir = check_output_dir(config.out or default_out_dir(), "--out")
    seeds = config.seed_list()
    if out_dir.exists() and any(out_dir.iterdir()) and not config.resume:
        raise FileExistsError(f"{out_dir} is not empty: pass --resume to continue that demo, or "
                              "choose another --out")  # fmt: skip
    # A second demo on the same --out stops here (its stages would write into this one's).
    with RunLock(out_dir, "--out"), resume_hint(out_dir, out_given=bool(config.out)):
        save_config(config, out_dir / "demo.yaml")
        data_dir = write_task(config, out_dir / "data")
        if config.study == "hacking":
            write_choice_task(config, data_dir)
        command = command or shlex.join(["reft", *sys.argv[1:]])  # global flags (-v) included
        base = build_base(config, out_dir)
        planned = {seed: run_seed(config, seed, out_dir, data_dir, base) for seed in seeds}
        if config.study:
            return finish_study(config, planned, out_dir, command)
        results = build_results(config_to_dict(config), seeds, out_dir, config.k)
        write_json_atomic(out_dir / "results.json", results)
        figures = write_figures(results, out_dir, seeds)
        write_report(results, out_dir, figures, command)
    print("\n" + results_table(results))
    print(f"\nresults: {out_dir / 'results.json'}; report: {out_dir / 'report.md'}")
    return results


@contextmanager
def resume_hint(out_dir: Path, out_given: bool) -> Iterator[None]:
    """On Ctrl-C (the runner has already let the stages checkpoint and stop): print the command
    that continues the demo, then let the KeyboardInterrupt end `reft demo` (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\nreft demo: interrupted; finished stages are kept in {out_dir} and interrupted "
              "training stages continue from their last checkpoint. Continue with:\n  "
              f"{resume_command(out_dir, out_given)}", file=sys.stderr, flush=True)  # fmt: skip
        raise


def resume_command(out_dir: Path, out_given: bool, argv: list[str] | None = None) -> str:
    """This demo's command line (default: sys.argv) with --resume, and with --out when the folder
    was the default's timestamped one. --resume goes right after `demo`, before any option or
    `key=value` of the user's, where it is parsed the same whatever follows."""
    argv = list(sys.argv if argv is None else argv)
    args = without_resume(argv[1:])
    at = args.index("demo") + 1 if "demo" in args else 0
    added = ["--resume", *([] if out_given else ["--out", str(out_dir)])]
    return " ".join([program_prefix(argv), *map(shlex.quote, [*args[:at], *added, *args[at:]])])


def run_seed(config: DemoConfig, seed: int, out_dir: Path, data_dir: Path, base: BasePlan):
    """Plan one seed's stages (the comparison's, or the study's), write commands.sh, run them;
    returns (stages, the study's variants or None)."""
    seed_dir = out_dir / f"seed_{seed}"
    variants = None
    if config.study:
        stages, variants = plan_study(config, seed, seed_dir, data_dir, base.start)
    else:
        stages = plan_stages(config, seed, seed_dir, data_dir, base.start)
    seed_dir.mkdir(parents=True, exist_ok=True)
    (seed_dir / "commands.sh").write_text(
        "#!/usr/bin/env bash\n# The stages of this seed, in dependency order (the base is shared "
        "by every seed and cached).\nset -e\n"
        + "\n".join([*base.command_lines(), *(stage.command_line() for stage in stages)]) + "\n"
    )  # fmt: skip
    print(f"seed {seed}: {len(stages)} stages, {config.workers} at a time -> {seed_dir}")
    # One thread per stage on any machine: the same command gives the same numbers everywhere.
    StageRunner(stages, seed_dir / "logs", config.workers, label=f"[seed {seed}] ",
                threads=1).run()  # fmt: skip
    return stages, variants


def finish_study(config: DemoConfig, planned: dict, out_dir: Path, command: str) -> dict[str, Any]:
    """A study's results.json, figures and report.md."""
    from reft.demo.plots import plot_hacking_study, plot_study, plot_warmup_study

    hacking = config.study == "hacking"
    stages = {seed: seed_stages for seed, (seed_stages, _) in planned.items()}
    variants = next(iter(planned.values()))[1]
    results = build_study_results(config_to_dict(config), config.study, variants, stages, out_dir,
                                  config.k, hacking_row if hacking else variant_row)  # fmt: skip
    write_json_atomic(out_dir / "results.json", results)
    figures = [plot_study(results, out_dir / f"{config.study}_training.png")]
    if config.study == "warmup":
        figures.append(plot_warmup_study(results, out_dir / "warmup_dev_accuracy.png"))
    if hacking:
        figures.append(plot_hacking_study(results, out_dir / "hacked_reward_rate.png"))
    report_writer = write_hacking_report if hacking else write_study_report
    report_writer(results, out_dir, figures, command)
    print("\n" + (hacking_table if hacking else study_table)(results))
    print(f"\nresults: {out_dir / 'results.json'}; report: {out_dir / 'report.md'}")
    return results


def build_base(config: DemoConfig, out_dir: Path) -> BasePlan:
    """The shared pretrained start: built with every core unless its cache already holds it.

    Demos started together share one build: the others wait on the cache folder's lock, then find
    the base cached (without it, the second one's base stage stopped on the first one's lock)."""
    cache_dir = base_cache_dir(config)
    with RunLock(cache_dir, "the base cache", wait=True) if cache_dir else nullcontext():
        base = plan_base(config)
        if base.stage is None:
            return base
        cached = done_marker(base.stage).exists()
        print(f"base: {'cached' if cached else 'building'} in {base.stage.out_dir.parent}")
        # The base runs alone, so it takes the threads of every worker (a part of its cache key).
        runner = StageRunner([base.stage], base.stage.out_dir.parent / "logs", 1, "[base] ",
                             threads=config.workers)  # fmt: skip
        records = runner.run()
    write_json_atomic(out_dir / "base.json", {"dir": str(base.stage.out_dir.parent),
                                              "start": base.start, "cached": cached,
                                              "seconds": records["base"].seconds})  # fmt: skip
    return base


def write_task(config: DemoConfig, data_dir: Path) -> Path:
    """The synthetic train/dev/test files and shifted.json (the same for every seed; each kept when
    it already exists).

    shifted.json holds test-split problems with `shifted_steps` more operations than the longest
    training problem (every other knob unchanged): the generalisation table's out-of-distribution
    column. Different step counts give different signatures, so none repeats a test problem.
    """
    synth = synth_knobs(config.task)
    longer = config.task.max_steps + config.task.shifted_steps
    shifted = dataclasses.replace(synth, min_steps=longer, max_steps=longer, step_weights=[])
    files = {
        "train": (synth, "train", config.task.train_size),
        "dev": (synth, "dev", config.task.dev_size),
        "test": (synth, "test", config.task.test_size),
        "shifted": (shifted, "test", config.task.shifted_size),
    }
    return write_synth_files(data_dir, files, config.cot, synth)


def write_figures(results: dict[str, Any], out_dir: Path, seeds: list[int]) -> list[Path]:
    from reft.demo.plots import (
        plot_accuracy_bars,
        plot_dev_accuracy,
        plot_k_curves,
        plot_training_curves,
    )

    seed_dirs = [out_dir / f"seed_{seed}" for seed in seeds]
    return [
        plot_dev_accuracy(seed_dirs, out_dir / "dev_accuracy.png"),
        plot_accuracy_bars(results, out_dir / "accuracy.png"),
        plot_training_curves(seed_dirs[0], out_dir / "reft_training.png"),
        *filter(None, [plot_k_curves(results, out_dir / "accuracy_vs_k.png")]),
    ]
