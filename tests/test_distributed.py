"""Two processes (torchrun, gloo, one thread each) take the same steps as one process with the same
global batch: SFT, then a few ReFT steps.

The 2-process runs go through the real CLI under `torchrun --standalone --nproc_per_node 2`; the
1-process runs call the same CLI in this process. Tolerance: weights within 1e-5 (absolute, float32)
and logged losses within 1e-4; the gap measured on this machine is ~1e-7 to 1e-6 (only the order of
float additions differs), against weight changes of ~1e-3 over the run.

ReFT rollouts use top_k=1, so both runs sample the same responses (the sampling RNG streams are per
process and cannot match otherwise) while the PPO update itself is unchanged: log-probs, ratios and
the KL are computed at temperature 1 without the top-k filter. One mini-batch per PPO epoch keeps the
mini-batch partition identical (see reft.train.ppo); token_mean aggregation and global whitening are
the settings that need cross-process sums.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ranks import RANK_ENV, final_weights, max_gap, torchrun_ddp, train_curve
from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.metrics import read_metrics

pytestmark = pytest.mark.slow

WEIGHT_ATOL = 1e-5
LOSS_ATOL = 1e-4
SFT_ARGS = ["model=preset:micro-llama", "dev_data=null", "batch_size=16", "micro_batch_size=4",
            "lr=5e-3", "max_steps=40", "preset_vocab_size=300", "log_every=1", "seed=0"]  # fmt: skip
PPO_ARGS = ["dev_data=null", "batch_size=8", "samples_per_prompt=2", "mini_batch_size=16",
            "micro_batch_size=4", "max_new_tokens=24", "max_steps=3", "lr=1e-3", "top_k=1",
            "loss_aggregation=token_mean", "whitening=global", "log_every=1", "seed=0"]  # fmt: skip


def _assert_same_curves(one: Path, two: Path, keys: tuple[str, ...]) -> None:
    curve_one, curve_two = read_metrics(one, "train"), read_metrics(two, "train")
    assert len(curve_one) == len(curve_two) > 0
    for a, b in zip(curve_one, curve_two, strict=True):
        for key in keys:
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory, digit_game) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    rng = random.Random(0)
    data = digit_game(root / "sft.json", [str(rng.randint(0, 9)) for _ in range(256)])
    args = ["sft", f"train_data={data}", *SFT_ARGS]
    assert main([*args, f"out_dir={root / 'one'}"]) == 0
    torchrun_ddp(*args, f"out_dir={root / 'two'}")
    return {"one": root / "one", "two": root / "two", "root": root}


def test_sft_on_two_processes_matches_one_process(sft_runs):
    one, two = sft_runs["one"], sft_runs["two"]
    _assert_same_curves(one, two, ("loss", "grad_norm"))
    weights_one = final_weights(one, "model.safetensors")
    moved = max_gap(weights_one, load_file(one / "init" / "model.safetensors"))
    gap = max_gap(weights_one, final_weights(two, "model.safetensors"))
    assert gap < WEIGHT_ATOL < moved, f"1 vs 2 processes differ by {gap:.2e} (moved {moved:.2e})"
    assert not (two / "metrics.jsonl").read_text().count('"step": 1,') > 1, "rank 1 wrote metrics"


@pytest.fixture(scope="module")
def ppo_runs(sft_runs, digit_game) -> dict[str, Path]:
    """ReFT from the 1-process SFT run: 1 process and 2 processes, with the same global batch."""
    root = sft_runs["root"]
    rng = random.Random(1)  # random gold digits: the greedy pick is right for some prompts only
    data = digit_game(root / "rl.json", [str(rng.randint(0, 9)) for _ in range(256)])
    warmup = Checkpointer(sft_runs["one"]).latest().path
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS]
    assert main([*args, f"out_dir={root / 'ppo_one'}"]) == 0
    torchrun_ddp(*args, f"out_dir={root / 'ppo_two'}")
    return {"one": root / "ppo_one", "two": root / "ppo_two", "args": args, "warmup": warmup}


def test_reft_on_two_processes_matches_one_process(ppo_runs):
    one, two, warmup = ppo_runs["one"], ppo_runs["two"], ppo_runs["warmup"]
    _assert_same_curves(one, two, ("reward", "response_length", "kl", "policy_loss", "value_loss",
                                   "grad_norm", "explained_variance"))  # fmt: skip
    rewards = [record["reward"] for record in read_metrics(one, "train")]
    assert any(0 < reward < 1 for reward in rewards), f"rewards {rewards} do not vary"
    for name in ("model.safetensors", "value_head.safetensors"):
        gap = max_gap(final_weights(one, name), final_weights(two, name))
        assert gap < WEIGHT_ATOL, f"{name}: 1 vs 2 processes differ by {gap:.2e}"
    moved = max_gap(
        final_weights(one, "model.safetensors"), load_file(warmup / "model.safetensors")
    )
    assert moved > WEIGHT_ATOL, f"the policy barely moved ({moved:.2e}): the test would be vacuous"


def test_critic_free_estimator_on_two_processes(sft_runs, digit_game):
    """GRPO with the KL in the loss and Dr. GRPO's aggregation under torchrun: groups are whole on
    each process (prompts are sharded whole), nothing expects a value model, the policy learns."""
    root = sft_runs["root"]
    rng = random.Random(2)
    data = digit_game(root / "rl_groups.json", [str(rng.randint(0, 9)) for _ in range(256)])
    warmup = Checkpointer(sft_runs["one"]).latest().path
    out = root / "grpo_two"
    args = [a for a in PPO_ARGS if not a.startswith(("top_k", "loss_aggregation", "samples_per"))]
    torchrun_ddp("train", f"model={warmup}", f"train_data={data}", *args, f"out_dir={out}",
              "samples_per_prompt=4", "estimator=grpo", "kl_placement=loss", "kl_estimator=k3",
              "loss_aggregation=token_sum_constant")  # fmt: skip
    records = read_metrics(out, "train")
    assert len(records) == 3 and all("kl_loss" in r and "value_loss" not in r for r in records)
    checkpoint = Checkpointer(out).latest().path
    assert not list(checkpoint.glob("value_head*"))
    moved = max_gap(
        final_weights(out, "model.safetensors"), load_file(warmup / "model.safetensors")
    )
    assert moved > WEIGHT_ATOL, f"the policy barely moved ({moved:.2e})"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun_two_nodes(*args: str) -> None:
    """`reft ARGS` as 2 "nodes" of 1 gloo rank each, launched as on two machines (one torchrun per
    node, --nnodes 2 --node_rank N, a static rendezvous at the node-0 address: here localhost)."""
    env = {**os.environ, **RANK_ENV}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
              "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port())]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [*launch, "--node_rank", str(rank), "-m", "reft", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for rank, (node, output) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank}:\n{output[-3000:]}"


def test_two_nodes_take_the_same_steps_as_one_machine(sft_runs, ppo_runs):
    """2 nodes x 1 process (torchrun --nnodes 2 on localhost) through SFT and ReFT: the same ranks
    and collectives as 1 machine x 2 processes, so the same logged values and weights, bit for bit;
    only global rank 0 writes (the out_dir is shared, as a multi-node run's must be)."""
    root = sft_runs["root"]
    sft_args = ["sft", f"train_data={root / 'sft.json'}", *SFT_ARGS]
    _torchrun_two_nodes(*sft_args, f"out_dir={root / 'sft_nodes'}")
    _torchrun_two_nodes(*ppo_runs["args"], f"out_dir={root / 'ppo_nodes'}")
    for machine, nodes, names in [
        (sft_runs["two"], root / "sft_nodes", ["model.safetensors"]),
        (ppo_runs["two"], root / "ppo_nodes", ["model.safetensors", "value_head.safetensors"]),
    ]:
        assert train_curve(machine) == train_curve(nodes)
        for name in names:
            assert max_gap(final_weights(machine, name), final_weights(nodes, name)) == 0.0, name
        assert (nodes / "metrics.jsonl").read_text().count('"step": 1,') == 1, "rank 1 wrote"
