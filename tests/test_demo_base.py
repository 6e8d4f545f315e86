"""The demo's base stage: cache key, corpus, the stage's command, and a pretrained model skipping it."""

from __future__ import annotations

import json

from reft.config import load_config
from reft.data.synthetic import generate_problems
from reft.demo.base import base_key, plan_base
from reft.demo.config import DemoConfig


def demo_config(tmp_path, *overrides: str, quick: bool = True) -> DemoConfig:
    files = DemoConfig(quick=quick).recipe_files()
    return load_config(DemoConfig, files, [f"base_cache={tmp_path / 'bases'}", *overrides])


def test_key_follows_what_decides_the_base_and_nothing_else(tmp_path):
    config = demo_config(tmp_path)
    key = base_key(config)
    assert key == base_key(demo_config(tmp_path))  # stable across processes and calls
    # Settings of the target task, the seeds and the later stages do not touch the base.
    same = ("seeds=0,1,2", "task.seed=9", "task.train_size=77", "reft.lr=0.5", "sft.epochs=3")
    assert base_key(demo_config(tmp_path, *same)) == key
    for changed in ("base.lr=0.5", "base_task.seed=3", "base_task.train_size=9", "cot=python",
                    "model=preset:mini-llama", "common.max_length=99"):  # fmt: skip
        assert base_key(demo_config(tmp_path, changed)) != key, changed


def test_the_shipped_base_keeps_its_key_when_a_corpus_knob_is_added(tmp_path):
    """A changed key rebuilds every user's cached base (7 minutes on 2 cores): a new synth knob at
    its neutral value (`choices=0`) must leave the shipped recipe's key as it was."""
    config = demo_config(tmp_path, quick=False)
    assert base_key(config) == "20efafed144a236b"
    assert base_key(demo_config(tmp_path, "study=hacking", quick=False)) == base_key(config)
    assert base_key(demo_config(tmp_path, "base_task.choices=4", quick=False)) != base_key(config)


def test_recipe_base_never_sees_the_target_families(tmp_path):
    config = demo_config(tmp_path, quick=False)
    assert not set(config.base_task.families) & set(config.task.families)


def test_plan_writes_the_corpus_once_and_builds_from_the_preset(tmp_path):
    config = demo_config(tmp_path)
    plan = plan_base(config)
    assert plan.stage is not None and plan.data_dir is not None
    assert plan.stage.out_dir == tmp_path / "bases" / base_key(config) / "model"
    assert plan.start == str(plan.stage.out_dir / "final")
    assert plan.stage.argv[0] == "sft" and f"model={config.model}" in plan.stage.argv
    train = json.loads((plan.data_dir / "train.json").read_text())
    assert len(train) == config.base_task.train_size
    families = {p.family for p in generate_problems(config.base_task, "train", len(train))}
    assert families <= set(config.base_task.families)
    stamp = (plan.data_dir / "train.json").stat().st_mtime_ns
    plan_base(config)  # planned again (a rerun): the corpus is kept as it is
    assert (plan.data_dir / "train.json").stat().st_mtime_ns == stamp
    lines = plan.command_lines()
    assert lines[0].startswith("reft data synth --config") and lines[-1].startswith("reft sft ")


def test_every_base_setting_parses_as_reft_sft(tmp_path):
    from reft.cli import build_parser
    from reft.config import config_from_args
    from reft.train.config import SFTConfig

    stage = plan_base(demo_config(tmp_path, quick=False)).stage
    resolved = config_from_args(SFTConfig, build_parser().parse_args(stage.argv))
    assert resolved.out_dir == str(stage.out_dir) and resolved.max_seconds == 0


def test_a_pretrained_model_needs_no_base(tmp_path):
    plan = plan_base(demo_config(tmp_path, "model=runs/my_model"))
    assert plan.stage is None and plan.start == "runs/my_model" and plan.command_lines() == []
    assert not (tmp_path / "bases").exists()
