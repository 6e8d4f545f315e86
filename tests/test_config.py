"""The config glue: defaults < YAML file < key=value overrides, and errors that name the key."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

import pytest
import yaml

from reft.answers.grader import GradingSettings
from reft.config import (
    ConfigError,
    add_config_arguments,
    config_from_args,
    describe_config,
    field_docs,
    load_config,
    save_config,
    save_run_config,
)
from reft.data.synthetic import SynthConfig
from reft.evaluate.config import EvalConfig, SampleConfig
from reft.generation.config import SamplingSettings
from reft.train.config import PPOConfig, RewardModelConfig, SelfTrainConfig


class Mode(str, Enum):
    fast = "fast"
    exact = "exact"


@dataclass
class Inner:
    temperature: float = 1.0
    """Sampling temperature."""


@dataclass
class Stage:
    lr: float = 1e-5
    """Learning rate."""
    steps: int = 10
    """Number of steps."""
    mode: Mode = Mode.fast
    """How to run."""
    name: str | None = None
    """Optional run name."""
    tags: list[str] = field(default_factory=list)
    """Free-form tags."""
    gen: Inner = field(default_factory=Inner)
    """Generation settings."""
    resume: bool = False
    """Continue a run."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


def test_defaults_file_and_overrides_in_order(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("lr: 0.001\nsteps: 5\ngen:\n  temperature: 0.5\n")
    config = load_config(
        Stage, recipe, ["steps=7", "mode=exact", "gen.temperature=0.0", "tags=[a,b]"]
    )
    assert config == Stage(lr=0.001, steps=7, mode=Mode.exact, tags=["a", "b"], gen=Inner(0.0))
    assert load_config(Stage) == Stage()


def test_unknown_key_names_it_and_lists_accepted_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr'.*Accepted keys: lr, steps, mode"):
        load_config(Stage, None, ["lrr=1"])


def test_unknown_nested_key_lists_the_nested_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'gen.temp'.*Accepted keys: temperature"):
        load_config(Stage, None, ["gen.temp=1"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'stepz'"):
        load_config(Stage, recipe)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("steps=2.5", r"key 'steps'.*expected int"),
        ("lr=fast", r"key 'lr'.*expected float"),
        ("mode=slow", r"key 'mode'.*expected one of fast, exact"),
    ],
)
def test_wrong_type_names_key_and_accepted_values(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(Stage, None, [override])


def test_post_init_checks_are_reported():
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        load_config(Stage, None, ["steps=-1"])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(Stage, None, ["steps"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Stage, tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Stage, listing)


@pytest.mark.parametrize("out_dir", ["out", "lr0.001", "e.v2"])
def test_saved_run_config_reloads_to_the_same_value(tmp_path, out_dir):
    """A run directory gets config.yaml inside it, whatever its name (a dot is no file suffix)."""
    config = Stage(lr=0.5, mode=Mode.exact, tags=["x"], gen=Inner(0.7))
    path = save_run_config(config, tmp_path / out_dir)
    assert path == tmp_path / out_dir / "config.yaml"
    assert yaml.safe_load(path.read_text())["mode"] == "exact"
    assert load_config(Stage, path) == config


def test_save_config_writes_the_file_it_is_given(tmp_path):
    path = save_config(Stage(lr=0.5), tmp_path / "recipe")
    assert path == tmp_path / "recipe" and path.is_file()
    assert load_config(Stage, path) == Stage(lr=0.5)


def test_field_docs_are_read_from_attribute_docstrings():
    assert field_docs(Stage) == {
        "lr": "Learning rate.",
        "steps": "Number of steps.",
        "mode": "How to run.",
        "name": "Optional run name.",
        "tags": "Free-form tags.",
        "gen": "Generation settings.",
        "resume": "Continue a run.",
    }
    assert "mode = 'fast'" in describe_config(Stage)


@pytest.mark.parametrize(
    "schema",
    [SynthConfig, PPOConfig, SelfTrainConfig, RewardModelConfig, SampleConfig, EvalConfig,
     SamplingSettings, GradingSettings],
)  # fmt: skip
def test_every_stage_field_has_a_docstring(schema):
    missing = {f.name for f in dataclasses.fields(schema)} - set(field_docs(schema))
    assert not missing, f"{schema.__name__} fields without a docstring: {sorted(missing)}"


def _parse(argv: list[str]) -> Stage:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Stage)
    return config_from_args(Stage, parser.parse_args(argv))


def test_flags_and_overrides_are_the_same_thing(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 3\n")
    assert _parse(["--config", str(recipe), "--lr", "0.5", "mode=exact", "--resume"]) == Stage(
        lr=0.5, steps=3, mode=Mode.exact, resume=True
    )
    assert _parse(["--resume", "false", "gen.temperature=0.2"]) == Stage(gen=Inner(0.2))
    with pytest.raises(ConfigError, match=r"key 'steps'.*expected int"):
        _parse(["--steps", "many"])


@dataclass
class AliasedStage(Stage):
    ALIASES: ClassVar[dict[str, str]] = {"temperature": "gen.temperature"}


def test_an_alias_is_its_nested_key_in_files_overrides_and_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("temperature: 0.3\nsteps: 2\n")
    expected = AliasedStage(steps=2, gen=Inner(0.3))
    assert load_config(AliasedStage, recipe) == expected
    assert load_config(AliasedStage, None, ["steps=2", "temperature=0.3"]) == expected
    assert load_config(AliasedStage, None, ["steps=2", "gen.temperature=0.3"]) == expected
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, AliasedStage)
    args = parser.parse_args(["--temperature", "0.3", "--steps", "2"])
    assert config_from_args(AliasedStage, args) == expected
    assert "gen.temperature = 1.0 (alias temperature)" in describe_config(AliasedStage)


def test_a_file_giving_a_setting_under_both_names_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("temperature: 0.3\ngen:\n  temperature: 0.5\n")
    with pytest.raises(
        ConfigError, match=r"r.yaml: 'temperature' and 'gen.temperature' are the same"
    ):
        load_config(AliasedStage, recipe)


def test_unknown_key_lists_the_aliases_too():
    with pytest.raises(ConfigError, match=r"Accepted keys: lr, .*\(and the aliases temperature\)"):
        load_config(AliasedStage, None, ["temprature=1"])


@pytest.mark.parametrize(
    ("schema", "required", "batch_alias"),
    [(PPOConfig, [], "rollout_batch_size"), (SelfTrainConfig, ["sample_model=runs/w"], "sample_batch_size"),
     (EvalConfig, ["model=m"], "batch_size"), (SampleConfig, ["model=m"], "batch_size")],
)  # fmt: skip
def test_every_sampling_command_takes_the_shared_sections_by_either_name(
    schema, required, batch_alias
):
    flat = load_config(schema, None, [*required, "temperature=0.7", "top_k=5", "top_p=0.9",
                                      "max_new_tokens=9", f"{batch_alias}=3", "partial_reward=0",
                                      "timeout_s=2"])  # fmt: skip
    assert flat.sampling == SamplingSettings(temperature=0.7, top_k=5, top_p=0.9, max_new_tokens=9,
                                             batch_size=3)  # fmt: skip
    assert flat.grading == GradingSettings(partial_reward=0.0, timeout_s=2.0)
    nested = load_config(schema, None, [*required, "sampling.temperature=0.7", "sampling.top_k=5",
                                        "sampling.top_p=0.9", "sampling.max_new_tokens=9",
                                        "sampling.batch_size=3", "grading.partial_reward=0",
                                        "grading.timeout_s=2"])  # fmt: skip
    assert nested == flat


@pytest.mark.parametrize(
    ("override", "message"),
    [("temperature=0", "temperature=0.0: must be > 0"), ("top_p=0", "top_p=0.0: must be in \\(0, 1\\]"),
     ("partial_reward=1.5", "partial_reward=1.5: must be in \\[0, 1\\]"),
     ("timeout_s=0", "timeout_s=0.0: must be > 0"), ("rollout_batch_size=0", "batch_size=0: must be >= 1")],
)  # fmt: skip
def test_section_ranges_are_checked_when_the_config_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PPOConfig, None, [override])


@pytest.mark.parametrize(
    "argv",
    [
        ["sft", "lr=0.5", "seed=3", "--epochs", "2", "--out-dir", "o"],
        ["sft", "--epochs", "2", "lr=0.5", "--out-dir", "o", "seed=3"],
        ["sft", "--epochs", "2", "--out-dir", "o", "lr=0.5", "seed=3"],
    ],
)
def test_overrides_are_accepted_before_between_and_after_options(argv):
    from reft.cli import parse_command_line
    from reft.train.config import SFTConfig

    config = config_from_args(SFTConfig, parse_command_line([*argv, "model=m", "train_data=t"]))
    assert (config.lr, config.seed, config.epochs, config.out_dir) == (0.5, 3, 2, "o")


def test_a_switch_does_not_eat_the_override_after_it():
    from reft.cli import parse_command_line
    from reft.demo.config import DemoConfig

    config = config_from_args(DemoConfig, parse_command_line(["demo", "--resume", "seeds=4"]))
    assert config.resume is True and config.seeds == "4"


def test_a_stray_word_is_still_an_error(capsys):
    from reft.cli import parse_command_line

    with pytest.raises(SystemExit) as stop:
        parse_command_line(["sft", "lr=0.5", "--epochs", "2", "oops"])
    assert stop.value.code == 2 and "unrecognized arguments: oops" in capsys.readouterr().err
