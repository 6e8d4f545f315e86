"""ReFT's PPO trainer end to end on tiny models: it learns a toy task, and kill-and-resume is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.config import ConfigError, load_config
from reft.metrics import read_metrics
from reft.train.config import Estimator, PPOConfig

pytestmark = pytest.mark.slow

GOLD_DIGIT = "7"


@pytest.fixture(scope="module")
def bandit(tmp_path_factory, digit_game) -> dict[str, Path]:
    """A toy task: SFT teaches "pick a random digit"; the RL data rewards only the digit 7.

    The warm-up answers 7 about one time in ten, so the mean reward starts near 0.1 x 1 + 0.9 x 0.1
    and can only rise if the policy gradient moves probability onto 7.
    """
    root = tmp_path_factory.mktemp("bandit")
    rng = random.Random(0)
    sft_data = digit_game(root / "sft.json", [str(rng.randint(0, 9)) for _ in range(512)])
    rl_data = digit_game(root / "rl.json", [GOLD_DIGIT] * 512)
    warmup = root / "warmup"
    assert main(["sft", "model=preset:micro-llama", f"train_data={sft_data}", "dev_data=null",
                 f"out_dir={warmup}", "batch_size=32", "micro_batch_size=32", "lr=3e-3",
                 "max_steps=200", "preset_vocab_size=300", "seed=0"]) == 0  # fmt: skip
    return {"rl": rl_data, "warmup": warmup / "checkpoints" / "step_000200", "root": root}


PPO_ARGS = ["dev_data=null", "batch_size=32", "micro_batch_size=32", "mini_batch_size=32",
            "max_new_tokens=24", "lr=1e-3", "kl_coef=0.05", "log_every=1"]  # fmt: skip


def test_mean_reward_rises_with_bounded_kl(bandit, tmp_path):
    out = tmp_path / "reft"
    assert main(["train", f"model={bandit['warmup']}", f"train_data={bandit['rl']}", f"out_dir={out}",
                 "max_steps=30", *PPO_ARGS]) == 0  # fmt: skip
    train = read_metrics(out, "train")
    first = sum(r["reward"] for r in train[:5]) / 5
    last = sum(r["reward"] for r in train[-5:]) / 5
    assert first < 0.25, f"the warm-up should rarely pick {GOLD_DIGIT}: mean reward {first:.3f}"
    assert last > first + 0.2, f"mean reward did not rise: {first:.3f} -> {last:.3f}"
    assert max(r["kl"] for r in train) < 5.0, (
        "the KL penalty should keep the policy near the reference"
    )
    expected = {"reward", "accuracy", "kl", "response_length", "policy_loss", "value_loss",
                "explained_variance", "clip_fraction", "approx_kl", "approx_kl_k3", "value_clip_fraction",
                "entropy", "grad_norm", "lr",
                "tokens_per_s", "time_rollout", "time_scoring", "time_grade", "time_forward",
                "time_update", "error_no_answer"}  # fmt: skip
    assert expected <= set(train[0])
    assert train[0]["kl"] == 0.0, "at the first rollout the policy IS the reference"


CRITIC_FREE = {
    "grpo": ["estimator=grpo"],
    "grpo_kl_loss": ["estimator=grpo", "kl_placement=loss", "kl_estimator=k3"],
    "dr_grpo": ["estimator=dr_grpo", "loss_aggregation=token_sum_constant"],
    "rloo": ["estimator=rloo"],
    "reinforce_pp": ["estimator=reinforce_pp"],
}


@pytest.mark.parametrize("name", sorted(CRITIC_FREE))
def test_critic_free_estimators_raise_the_reward_without_a_value_model(bandit, tmp_path, name):
    """8 prompts x 4 samples: the group baselines need several samples per prompt."""
    out = tmp_path / name
    args = [*PPO_ARGS, "batch_size=8", "samples_per_prompt=4", "micro_batch_size=16"]
    assert main(["train", f"model={bandit['warmup']}", f"train_data={bandit['rl']}", f"out_dir={out}",
                 "max_steps=30", *args, *CRITIC_FREE[name]]) == 0  # fmt: skip
    train = read_metrics(out, "train")
    first = sum(r["reward"] for r in train[:5]) / 5
    last = sum(r["reward"] for r in train[-5:]) / 5
    assert last > first + 0.2, f"{name}: mean reward did not rise: {first:.3f} -> {last:.3f}"
    assert "value_loss" not in train[0] and "explained_variance" not in train[0]
    assert ("kl_loss" in train[0]) == ("kl_placement=loss" in CRITIC_FREE[name])
    checkpoint = Checkpointer(out).latest().path
    assert not list(checkpoint.glob("value_head*")) and not (checkpoint / "critic").exists()


def test_group_estimators_need_several_samples_per_prompt():
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        PPOConfig(estimator=Estimator.rloo, samples_per_prompt=1)
    with pytest.raises(ValueError, match="no critic"):
        PPOConfig(estimator=Estimator.grpo, samples_per_prompt=4, critic_warmup_steps=2)


def test_separate_critic_and_no_kl_ablations_run(bandit, tmp_path):
    out = tmp_path / "critic"
    assert main(["train", f"model={bandit['warmup']}", f"train_data={bandit['rl']}", f"out_dir={out}",
                 "max_steps=2", "value_model=separate_critic", "kl_coef=0", "partial_reward=0",
                 *PPO_ARGS]) == 0  # fmt: skip
    checkpoint = Checkpointer(out).latest().path
    assert (checkpoint / "value_head.safetensors").is_file() and (checkpoint / "critic").is_dir()


def test_critic_warmup_steps_leave_the_policy_untouched(bandit, tmp_path):
    """During critic_warmup_steps only the critic learns: the policy's weights equal the warm-up's."""

    out = tmp_path / "critic_warmup"
    assert main(["train", f"model={bandit['warmup']}", f"train_data={bandit['rl']}", f"out_dir={out}",
                 "max_steps=2", "value_model=separate_critic", "critic_warmup_steps=2",
                 *PPO_ARGS]) == 0  # fmt: skip
    checkpoint = Checkpointer(out).latest().path
    start, end = (
        load_file(bandit["warmup"] / "model.safetensors"),
        load_file(checkpoint / "model.safetensors"),
    )
    assert all(torch.equal(start[name], end[name]) for name in start)
    train = read_metrics(out, "train")
    assert train[-1]["value_loss"] < train[0]["value_loss"]  # while the critic does learn


def _launch(bandit: dict[str, Path], out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "reft", "train", f"model={bandit['warmup']}",
               f"train_data={bandit['rl']}", f"out_dir={out}", *PPO_ARGS, *extra]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _curve(out: Path) -> list[dict]:
    volatile = ("time", "tokens_per_s")
    return [
        {k: v for k, v in r.items() if not k.startswith(volatile)}
        for r in read_metrics(out, "train")
    ]


def test_killed_run_resumes_with_identical_metrics_and_weights(bandit, tmp_path):
    steps = ["max_steps=40", "save_every=4", "keep_last=20"]
    unbroken = _launch(bandit, tmp_path / "a", *steps)
    assert unbroken.wait(timeout=600) == 0, unbroken.stdout.read()

    victim = _launch(bandit, tmp_path / "b", *steps)
    checkpointer = Checkpointer(tmp_path / "b")
    deadline = time.time() + 600
    while time.time() < deadline and victim.poll() is None:
        latest = checkpointer.latest()
        if latest is not None and latest.step >= 12:
            break
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 12 <= checkpointer.latest().step < 40

    resumed = _launch(bandit, tmp_path / "b", *steps, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    assert _curve(tmp_path / "a") == _curve(tmp_path / "b")
    for name in ("model.safetensors", "value_head.safetensors"):
        a = load_file(tmp_path / "a" / "checkpoints" / "step_000040" / name)
        b = load_file(tmp_path / "b" / "checkpoints" / "step_000040" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["mini_batch_size=24"], "mini_batch_size"),
        (["micro_batch_size=5"], "micro_batch_size"),
        (["kl_coef=-1"], "kl_coef"),
        (["whitening=batch"], "expected one of global, local, none"),
        (["value_model=twin"], "shared_trunk, separate_critic"),
    ],
)
def test_invalid_ppo_configs_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PPOConfig, None, overrides)


def test_advantage_steps_are_the_configured_functions_looked_up_once():
    from reft.algos.kl import kl_k1, kl_k3
    from reft.algos.normalize import masked_whiten
    from reft.train.rollout import ADVANTAGE_ESTIMATORS, AdvantageSteps

    config = load_config(PPOConfig, None, ["estimator=reinforce_pp", "whitening=local",
                                           "kl_estimator=k3"])  # fmt: skip
    steps = AdvantageSteps.of(config)
    assert (steps.kl, steps.whiten) == (kl_k3, masked_whiten)
    assert steps.estimate is ADVANTAGE_ESTIMATORS[Estimator.reinforce_pp]
    assert AdvantageSteps.of(PPOConfig()).kl is kl_k1
