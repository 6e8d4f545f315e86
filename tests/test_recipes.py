"""Every shipped recipe loads into its stage's config (no unknown keys, no wrong types)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reft.config import load_config
from reft.data.synthetic import SynthConfig
from reft.train.config import PPOConfig, RewardModelConfig, SelfTrainConfig, SFTConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCHEMAS = {"sft": SFTConfig, "warmup": SFTConfig, "reft": PPOConfig}


@pytest.mark.parametrize("recipe", sorted((CONFIGS / "paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_recipes_load(recipe, monkeypatch):
    monkeypatch.setenv("REFT_DATA_DIR", "/data/mwp")
    config = load_config(SCHEMAS[recipe.stem.rsplit("_", 1)[1]], recipe)
    assert config.train_data.startswith("/data/mwp/")
    assert config.cot.value in recipe.stem
    assert config.dev_data is None and config.dev_holdout > 0, "never select on the test set"
    if isinstance(config, PPOConfig):
        assert config.kl_coef == (0.05 if config.cot.value == "nl" else 0.01)
        assert (config.lr, config.vf_coef, config.ppo_epochs) == (3e-7, 5.0, 2)


@pytest.mark.parametrize(
    "ablation", sorted((CONFIGS / "ablations").glob("*.yaml")), ids=lambda p: p.stem
)
def test_ablations_layer_on_a_reft_recipe(ablation):
    base = load_config(PPOConfig, CONFIGS / "paper" / "gsm8k_python_reft.yaml")
    layered = load_config(PPOConfig, [CONFIGS / "paper" / "gsm8k_python_reft.yaml", ablation])
    changed = {k for k in vars(base) if getattr(base, k) != getattr(layered, k)}
    assert len(changed) == 1, changed


SYNTH_SCHEMAS = {
    "default": SynthConfig,
    "easy": SynthConfig,
    "offline_self_training": SelfTrainConfig,
    "online_self_training": SelfTrainConfig,
    "reward_model": RewardModelConfig,
}


@pytest.mark.parametrize("recipe", sorted((CONFIGS / "synth").glob("*.yaml")), ids=lambda p: p.stem)
def test_synth_recipes_load(recipe):
    assert recipe.stem in SYNTH_SCHEMAS, f"add {recipe.name} to SYNTH_SCHEMAS"
    load_config(SYNTH_SCHEMAS[recipe.stem], recipe)


@pytest.mark.parametrize("recipe", sorted((CONFIGS / "paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_recipes_name_only_what_differs_from_the_defaults(recipe):
    """A value equal to the default would be a second source for it: leave it to the dataclass."""
    import dataclasses
    from enum import Enum

    import yaml

    schema = PPOConfig if recipe.stem.endswith("_reft") else SFTConfig
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    for section in (
        f for f in dataclasses.fields(schema) if f.default_factory is not dataclasses.MISSING
    ):
        defaults |= {
            f"{section.name}.{f.name}": f.default
            for f in dataclasses.fields(section.default_factory)
        }
    settings = {}
    for key, value in yaml.safe_load(recipe.read_text()).items():
        inner = value.items() if isinstance(value, dict) else ()
        settings |= {f"{key}.{name}": item for name, item in inner} if inner else {key: value}
    repeated = []
    for key, value in settings.items():
        default = defaults.get(key, dataclasses.MISSING)
        default = default.value if isinstance(default, Enum) else default
        if value == default and not isinstance(value, str | type(None)):
            repeated.append(key)
    assert repeated == []
