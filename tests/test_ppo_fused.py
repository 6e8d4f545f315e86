"""The fused first forward (reft.train.ppo.fuses_first_forward) takes the same steps as the separate
no-grad rollout forward it replaces.

Each case runs `reft train` twice from the same untrained micro-llama checkpoint: once as configured
(fused: the rollout is one mini-batch of one micro-batch) and once with `fuses_first_forward` patched
to False. Tolerance: logged metrics within 1e-4 and weights within 1e-5 (absolute), as
tests/test_distributed.py, against weight changes of ~3e-2 over the run. On CPU the two paths are
bitwise identical (gap 0.0 in every case below, bf16 autocast included): the same kernels run with
and without grad, and the fused forward visits the rows in epoch 1's shuffled order, as the unfused
update does. The tolerance leaves room for backends whose grad and no-grad kernels differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.metrics import read_metrics
from reft.train.config import PPOConfig
from reft.train.ppo import fuses_first_forward

WEIGHT_ATOL = 1e-5
METRIC_ATOL = 1e-4
PPO_ARGS = ["dev_data=null", "batch_size=8", "samples_per_prompt=2", "mini_batch_size=16",
            "micro_batch_size=16", "max_new_tokens=12", "max_steps=3", "lr=1e-2", "log_every=1",
            "seed=0"]  # fmt: skip
VOLATILE = ("time", "tokens_per_s")


@pytest.mark.parametrize(
    ("rollouts", "mini", "micro", "processes", "fused"),
    [
        (16, 16, 16, 1, True),  # one mini-batch of one micro-batch
        (16, 16, 8, 2, True),  # the same per process: 8 rows each
        (16, 16, 8, 1, False),  # two micro-batches: whitening needs every row first
        (16, 8, 8, 1, False),  # two mini-batches: the second runs after an optimizer step
        (16, 16, 16, 2, False),  # 8 rows per process, but micro 16 > mini 8 per process
    ],
)
def test_fusion_needs_one_minibatch_of_one_microbatch(rollouts, mini, micro, processes, fused):
    config = PPOConfig(batch_size=rollouts, mini_batch_size=mini, micro_batch_size=micro)
    assert fuses_first_forward(config, processes) is fused


@pytest.fixture(scope="module")
def start(tmp_path_factory, digit_game_start) -> dict[str, Path]:
    return digit_game_start(tmp_path_factory.mktemp("fused"), 64)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final checkpoint (policy, head, critic trunk or adapters), by file/key."""
    final = Checkpointer(out).latest().path
    return {
        f"{path.relative_to(final)}/{key}": tensor
        for path in sorted(final.rglob("*.safetensors"))
        for key, tensor in load_file(path).items()
    }


def _assert_same_run(fused: Path, unfused: Path, start_model: Path) -> None:
    curve_fused, curve_unfused = read_metrics(fused, "train"), read_metrics(unfused, "train")
    assert len(curve_fused) == len(curve_unfused) > 0
    for a, b in zip(curve_fused, curve_unfused, strict=True):
        assert "time_fused_forward" in a and "time_fused_forward" not in b
        keys = {key for key in a if not key.startswith(VOLATILE)}
        assert keys == {key for key in b if not key.startswith(VOLATILE)}
        for key in keys:
            assert a[key] == pytest.approx(b[key], abs=METRIC_ATOL, nan_ok=True), (a["step"], key)
    a, b = _weights(fused), _weights(unfused)
    assert a.keys() == b.keys()
    gap = max((a[key] - b[key]).abs().max().item() for key in a)
    assert gap < WEIGHT_ATOL, f"fused vs unfused weights differ by {gap:.2e}"
    base = load_file(start_model / "model.safetensors")
    policy = {key.split("/", 1)[1]: a[key] for key in a if key.startswith("model.safetensors/")}
    moved = max((policy[key] - base[key]).abs().max().item() for key in base)
    assert moved > 100 * WEIGHT_ATOL, f"the policy barely moved ({moved:.2e}): a vacuous test"


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["value_model=separate_critic", "whitening=local", "loss_aggregation=token_mean"],
        ["lora=true", "lora_r=4", "gradient_checkpointing=true"],
        ["mixed_precision=bf16"],
    ],
    ids=["shared_trunk", "separate_critic", "lora", "bf16_autocast"],
)
def test_fused_first_forward_matches_the_separate_forward(start, tmp_path, monkeypatch, extra):
    args = ["train", f"model={start['model']}", f"train_data={start['data']}", *PPO_ARGS, *extra]
    assert main([*args, f"out_dir={tmp_path / 'fused'}"]) == 0
    monkeypatch.setattr("reft.train.ppo.fuses_first_forward", lambda *_: False)
    assert main([*args, f"out_dir={tmp_path / 'unfused'}"]) == 0
    _assert_same_run(tmp_path / "fused", tmp_path / "unfused", start["model"])


@pytest.mark.slow
def test_fused_on_two_processes_matches_unfused_one_process(start, tmp_path):
    """micro_batch_size=8: fused on 2 processes (8 rows each), 2 micro-batches on 1. Global whitening
    and token_mean all-reduce between the fused forward and its backward. top_k=1: the processes'
    sampling RNG streams differ from the single process's (tests/test_distributed.py). lr=1e-3: the
    float-order gap of 1 vs 2 processes, fused or not, is 4.5e-6 here (4.5e-5 at lr=1e-2)."""
    args = ["train", f"model={start['model']}", f"train_data={start['data']}", *PPO_ARGS,
            "micro_batch_size=8", "top_k=1", "whitening=global", "loss_aggregation=token_mean",
            "lr=1e-3"]  # fmt: skip
    assert main([*args, f"out_dir={tmp_path / 'one'}"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "reft", *args, f"out_dir={tmp_path / 'two'}"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_same_run(tmp_path / "two", tmp_path / "one", start["model"])
