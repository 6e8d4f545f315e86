"""FSDP2 on CPU: two gloo ranks (torchrun, one thread each) shard the model and take the same steps
as one unsharded process, and their checkpoints are whole.

The 2-rank runs go through the real CLI under `torchrun --standalone --nproc_per_node 2` with
ACCELERATE_USE_FSDP=true FSDP_VERSION=2 (reft.train.sharding), launched by a small script that
also records, on each rank, every parameter's global and local (shard) shape after sharding and its
local shard at the last save: the test rebuilds the full weights from the two shards itself and
compares them with what the checkpoint holds.

ReFT (`reft train`) under FSDP2 is compared with 2 DDP ranks of the same config instead: both
sample each rank's rollouts with the same seed, so from (nearly) the same weights they sample the
same responses, and 1 process could not (its one seed samples other responses). The dev
evaluations of both trainers run under FSDP2 too (a policy copy gathered on every rank, evaluated
by the main process).

Tolerance against the 1-process run: losses within LOSS_ATOL and weights within WEIGHT_ATOL, not
bit-exact: the gradient is summed in another order (each rank's micro-batches, then a
reduce-scatter per micro-batch, against one process adding all micro-batches), and Adam's division
by sqrt(v) magnifies those 1e-7 relative differences in weights whose gradient is tiny. Resuming an
FSDP2 run is bit-exact: the checkpoint holds the exact fp32 weights and the full optimizer state.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ranks import (
    PLAIN_COMPARE,
    RANK_ENV,
    final_weights,
    max_gap,
    sft_args,
    torchrun_ddp,
    train_curve,
)
from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.config import ConfigError
from reft.metrics import read_metrics
from reft.train.sharding import fsdp2_requested, layer_classes

LOSS_ATOL = 1e-4
WEIGHT_ATOL = 1e-5
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}

RECORDING_LAUNCHER = """
import json, os, sys
from pathlib import Path

import torch
import torch.distributed as dist

from reft.cli import main
from reft.train import sharding

report = Path(os.environ["SHARD_REPORT"])
shard, gathered = sharding.ShardedTrainable.__init__, sharding.ShardedTrainable.gathered


def recording_shard(self, trainable, policy, companion=None):
    shard(self, trainable, policy, companion)
    shapes = {n: [list(p.shape), list(p.to_local().shape),
               p.placements[0].is_shard(0)]
              for n, p in trainable.named_parameters()}
    (report / f"shapes-rank{dist.get_rank()}.json").write_text(json.dumps(shapes))


def recording_gathered(self):
    local = {n: p.to_local().detach().clone()
             for n, p in self.module.named_parameters(remove_duplicate=False)}
    torch.save(local, report / f"shards-rank{dist.get_rank()}.pt")
    return gathered(self)


sharding.ShardedTrainable.__init__ = recording_shard
sharding.ShardedTrainable.gathered = recording_gathered
sys.exit(main(sys.argv[1:]))
"""
"""Runs `reft ARGS` with recording wrappers around reft.train.sharding.ShardedTrainable."""

PLAIN_LOAD = """
import json, sys
sys.modules["reft"] = None  # `import reft` fails from here on
try:
    import reft
    raise SystemExit("reft is importable")
except ImportError:
    pass
import torch
from transformers import AutoModelForCausalLM

checkpoint, report = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(checkpoint)
shards = [torch.load(f"{report}/shards-rank{r}.pt") for r in (0, 1)]
gaps = {name: (torch.cat([s[name] for s in shards]) - value).abs().max().item()
        for name, value in model.state_dict().items()}
print(json.dumps(gaps))
"""
"""Loads a checkpoint with transformers alone and prints, per weight, its largest gap to the full
tensor rebuilt from the two ranks' shards (dimension 0, as FSDP2 shards)."""


@pytest.mark.parametrize(
    ("env", "asked"),
    [
        ({}, False),  # no FSDP at all
        ({"ACCELERATE_USE_FSDP": "false", "FSDP_VERSION": "2"}, False),  # FSDP switched off
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, True),  # what fsdp.yaml exports
        ({"ACCELERATE_USE_FSDP": "TRUE", "FSDP_VERSION": "2",
          "FSDP_CPU_RAM_EFFICIENT_LOADING": "false"}, True),  # case-insensitive, as accelerate's
    ],
)  # fmt: skip
def test_fsdp2_is_asked_for_with_accelerates_variables(env, asked):
    assert fsdp2_requested(env) is asked


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP_VERSION=1: reft supports FSDP2 only"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "set FSDP_VERSION=2"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2",
          "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}, "RAM_EFFICIENT_LOADING=true is not supported"),
    ],
)  # fmt: skip
def test_fsdp1_and_rank0_only_loading_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        fsdp2_requested(env)


class _Block(torch.nn.Module):
    pass


class _FakeModel(torch.nn.Module):
    _no_split_modules = ("_Block",)

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([_Block(), _Block()])


def test_layer_classes_come_from_the_launch_else_from_the_models():
    wrapper = torch.nn.ModuleDict({"policy": _FakeModel(), "critic": _FakeModel()})
    assert layer_classes(wrapper, {}) == {"_Block"}
    named = {"FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer, Qwen2DecoderLayer"}
    assert layer_classes(wrapper, named) == {"LlamaDecoderLayer", "Qwen2DecoderLayer"}


@pytest.mark.parametrize(
    ("override", "message"),
    [("lora=true", "lora=true is not supported under FSDP2"),
     ("mixed_precision=fp16", "mixed_precision=fp16 is not supported under FSDP2")],
)  # fmt: skip
def test_what_a_sharded_model_cannot_do_is_refused_before_training(
    tmp_path, monkeypatch, capsys, override, message
):
    for key, value in FSDP_ENV.items():
        monkeypatch.setenv(key, value)
    args = ["sft", "model=preset:micro-llama", "train_data=synth:train:16", "dev_data=null",
            "preset_vocab_size=300", "batch_size=4", "micro_batch_size=4", "max_steps=1"]  # fmt: skip
    assert main([*args, override, f"out_dir={tmp_path / 'run'}"]) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("checkpoints/step_*"))


def _torchrun_fsdp(report: Path, *args: str) -> None:
    """`reft ARGS` as 2 gloo FSDP2 ranks of one thread each, recording into `report`."""
    report.mkdir(parents=True, exist_ok=True)
    launcher = report / "launch.py"
    launcher.write_text(RECORDING_LAUNCHER)
    env = {**os.environ, **FSDP_ENV, **RANK_ENV,
           "SHARD_REPORT": str(report)}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(launcher), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digit_game) -> dict[str, Path]:
    """One unsharded process and one unbroken 2-rank FSDP2 run of the same SFT."""
    root = tmp_path_factory.mktemp("fsdp")
    args = sft_args(root, digit_game)
    assert main([*args, f"out_dir={root / 'one'}"]) == 0
    _torchrun_fsdp(root / "report", *args, f"out_dir={root / 'fsdp'}")
    return {"one": root / "one", "fsdp": root / "fsdp", "report": root / "report", "args": args}


CRITIC_SCRIPT = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from reft.models.load import load_causal_lm
from reft.models.value import SeparateCritic
from reft.train.sharding import ShardedTrainable

dist.init_process_group("gloo")
rank, model, out = dist.get_rank(), sys.argv[1], Path(sys.argv[2])
critic = SeparateCritic.from_policy(load_causal_lm(model, device="cpu"), seed=rank)
if rank == 0:  # what the unsharded module saves
    critic.policy.save_pretrained(out / "expected")
    critic.save(out / "expected")
expected = {k: v.clone() for k, v in critic.policy.state_dict().items()}
if rank == 1:  # ranks that start apart: sharding must copy rank 0's weights, as DDP does
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.add_(1.0)
sharded = ShardedTrainable(critic, critic.policy, critic)
policy, save_extra = sharded.gathered()
if rank == 0:
    policy.save_pretrained(out / "gathered")
    save_extra(out / "gathered")
weights = sharded.policy_weights()
assert weights.keys() == expected.keys(), sorted(set(weights) ^ set(expected))
assert all(torch.equal(weights[k], expected[k]) for k in expected), "policy_weights differ"
dist.destroy_process_group()
"""
"""Shards a separate-critic actor-critic on 2 ranks and saves it gathered (rank 0) beside what the
unsharded rank 0 module saves; every rank checks `policy_weights` against its unsharded policy."""


@pytest.mark.slow
def test_fsdp2_actor_critic_saves_whole_policy_critic_and_head(tmp_path, digit_game_start):
    """The pieces of a PPO checkpoint under FSDP2: policy, critic trunk and value head are saved
    whole from the gathered weights, equal to rank 0's unsharded module (rank 1's weights were moved
    before sharding: sharding copies rank 0's)."""
    start = digit_game_start(tmp_path, 8)
    script = tmp_path / "critic.py"
    script.write_text(CRITIC_SCRIPT)
    env = {**os.environ, **RANK_ENV}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(script), str(start["model"]), str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("model.safetensors", "value_head.safetensors", "critic/model.safetensors"):
        expected = load_file(tmp_path / "expected" / name)
        gathered = load_file(tmp_path / "gathered" / name)
        assert expected.keys() == gathered.keys(), name
        assert all(torch.equal(expected[k], gathered[k]) for k in expected), name


@pytest.mark.slow
def test_fsdp2_sft_on_two_ranks_matches_one_process(runs):
    one, fsdp = runs["one"], runs["fsdp"]
    curve_one, curve_fsdp = read_metrics(one, "train"), read_metrics(fsdp, "train")
    assert len(curve_one) == len(curve_fsdp) == 12
    for a, b in zip(curve_one, curve_fsdp, strict=True):
        for key in ("loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    weights_one = final_weights(one)
    moved = max_gap(weights_one, load_file(one / "init" / "model.safetensors"))
    gap = max_gap(weights_one, final_weights(fsdp))
    assert gap < WEIGHT_ATOL < moved, f"1 process vs FSDP2 differ by {gap:.2e} (moved {moved:.2e})"
    _assert_same_dev(one, fsdp, evaluations=3)


def _assert_same_dev(a: Path, b: Path, evaluations: int) -> None:
    """The same dev results: greedy decoding of (nearly) the same weights, by the main process
    alone, from a copy gathered on every rank under FSDP2."""
    dev_a, dev_b = read_metrics(a, "dev"), read_metrics(b, "dev")
    assert len(dev_a) == len(dev_b) == evaluations
    for x, y in zip(dev_a, dev_b, strict=True):
        assert (x["accuracy"], x["response_tokens"]) == (y["accuracy"], y["response_tokens"])


@pytest.mark.slow
def test_fsdp2_parameters_are_sharded_across_the_two_ranks(runs):
    shapes = [json.loads((runs["report"] / f"shapes-rank{r}.json").read_text()) for r in (0, 1)]
    assert shapes[0].keys() == shapes[1].keys() and len(shapes[0]) > 10
    for name, (full, local_0, on_dim_0) in shapes[0].items():
        local_1 = shapes[1][name][1]
        assert on_dim_0, f"{name} is not sharded on dimension 0"
        assert local_0[0] + local_1[0] == full[0] and local_0[1:] == local_1[1:] == full[1:], name
        assert local_0[0] == -(-full[0] // 2), f"{name}: rank 0 holds {local_0} of {full}"


@pytest.mark.slow
def test_fsdp2_checkpoint_loads_without_reft_and_equals_the_ranks_shards(runs):
    final = Checkpointer(runs["fsdp"]).latest().path
    command = [sys.executable, "-c", PLAIN_LOAD, str(final), str(runs["report"])]
    env = {**os.environ, **RANK_ENV}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    gaps = json.loads(done.stdout.strip().splitlines()[-1])
    assert "lm_head.weight" in gaps and len(gaps) > 10
    assert max(gaps.values()) == 0.0, {k: v for k, v in gaps.items() if v}


@pytest.mark.slow
def test_fsdp2_run_stopped_and_resumed_ends_on_the_unbroken_runs_weights(runs, tmp_path):
    out = tmp_path / "resumed"
    args = [*runs["args"], f"out_dir={out}"]
    _torchrun_fsdp(tmp_path / "report", *args, "stop_epochs=2")  # stops at step 8
    assert [c.step for c in Checkpointer(out).list()] == [4, 8]
    _torchrun_fsdp(tmp_path / "report", *args, "resume=true")
    assert Checkpointer(out).latest().step == 12
    unbroken, resumed = final_weights(runs["fsdp"]), final_weights(out)
    assert unbroken.keys() == resumed.keys()
    assert all(torch.equal(unbroken[key], resumed[key]) for key in unbroken)
    assert [r["loss"] for r in read_metrics(out, "train")] == [
        r["loss"] for r in read_metrics(runs["fsdp"], "train")
    ]


WARMUP_ARGS = ["model=preset:micro-llama", "dev_data=null", "batch_size=16", "micro_batch_size=16",
               "lr=5e-3", "max_steps=40", "preset_vocab_size=300", "seed=0"]  # fmt: skip
"""The SFT warm-up of the ReFT runs (one process, as tests/test_distributed.py's): long enough for
the policy to answer, rightly for some games."""
PPO_ARGS = ["dev_data=null", "dev_holdout=4", "eval_every=1", "eval_max_new_tokens=24",
            "batch_size=8", "samples_per_prompt=2", "mini_batch_size=16", "max_new_tokens=24",
            "max_steps=2", "lr=1e-3", "log_every=1", "seed=0"]  # fmt: skip
"""Two ReFT steps from the warm-up on 20 digit games, 4 held out as dev and evaluated after each
step. Each rank's sampling seed depends on (seed, step, rank) only, so DDP and FSDP2 sample the
same responses from the same weights."""
PPO_LOGGED = ("reward", "accuracy", "response_length", "kl", "policy_loss", "value_loss",
              "entropy", "grad_norm", "explained_variance")  # fmt: skip


def _all_weights(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final checkpoint (policy, value head, critic trunk), by file/key."""
    final = Checkpointer(out).latest().path
    return {
        f"{path.relative_to(final)}/{key}": tensor
        for path in sorted(final.rglob("*.safetensors"))
        for key, tensor in load_file(path).items()
    }


@pytest.fixture(scope="module")
def warmup(tmp_path_factory, digit_game) -> Path:
    """The final checkpoint of a one-process SFT warm-up on 256 digit games."""
    root = tmp_path_factory.mktemp("warmup")
    rng = random.Random(0)
    data = digit_game(root / "sft.json", [str(rng.randint(0, 9)) for _ in range(256)])
    assert main(["sft", f"train_data={data}", *WARMUP_ARGS, f"out_dir={root / 'sft'}"]) == 0
    return Checkpointer(root / "sft").latest().path


def _assert_ppo_curves_match(ddp: Path, fsdp: Path) -> None:
    train_ddp, train_fsdp = read_metrics(ddp, "train"), read_metrics(fsdp, "train")
    assert len(train_ddp) == len(train_fsdp) == 2
    for a, b in zip(train_ddp, train_fsdp, strict=True):
        for key in PPO_LOGGED:
            assert math.isfinite(b[key]), (b["step"], key, b[key])
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    _assert_same_dev(ddp, fsdp, evaluations=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value_model", "micro_batch_size", "top_k"),
    [# two micro-batches per rank: the rollout's own policy+value forward; greedy rollouts, whose
     # rewards vary (the warm-up's pick is right for some games; sampled, it is rarely well formed)
     ("separate_critic", 4, 1),
     # one: epoch 1's update forward stands in for it (fused); sampled rollouts
     ("shared_trunk", 8, 0)],
)  # fmt: skip
def test_fsdp2_reft_with_dev_evaluation_matches_ddp(
    warmup, tmp_path, digit_game, value_model, micro_batch_size, top_k
):
    """`reft train` on 2 FSDP2 ranks from an SFT warm-up: rollouts from a gathered copy of the
    policy, the update through the sharded module, dev evaluation on the main process; the same
    losses, dev results and final weights as 2 DDP ranks, and a checkpoint that transformers
    loads without reft."""
    rng = random.Random(1)  # random gold digits: the warm-up's pick is right for some prompts only
    data = digit_game(tmp_path / "rl.json", [str(rng.randint(0, 9)) for _ in range(20)])
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS,
            f"value_model={value_model}", f"micro_batch_size={micro_batch_size}",
            f"top_k={top_k}"]  # fmt: skip
    torchrun_ddp(*args, f"out_dir={tmp_path / 'ddp'}")
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={tmp_path / 'fsdp'}")
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    _assert_ppo_curves_match(ddp, fsdp)
    rewards = [record["reward"] for record in read_metrics(fsdp, "train")]
    assert top_k != 1 or any(0 < reward < 1 for reward in rewards), f"rewards {rewards} constant"
    weights_ddp, weights_fsdp = _all_weights(ddp), _all_weights(fsdp)
    moved = max_gap(final_weights(ddp), load_file(warmup / "model.safetensors"))
    gap = max_gap(weights_ddp, weights_fsdp)
    assert gap < WEIGHT_ATOL < moved, f"DDP vs FSDP2 differ by {gap:.2e} (moved {moved:.2e})"
    final = Checkpointer(fsdp).latest().path
    reference = Checkpointer(ddp).latest().path / "model.safetensors"
    command = [sys.executable, "-c", PLAIN_COMPARE, str(final), str(reference)]
    env = {**os.environ, **RANK_ENV}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) < WEIGHT_ATOL


@pytest.mark.slow
def test_fsdp2_reft_stopped_and_resumed_ends_on_the_unbroken_runs_weights(
    warmup, tmp_path, digit_game
):
    """A 2-rank FSDP2 ReFT run (separate critic) stopped after step 1 and resumed: the critic and
    head are restored before sharding, the optimizer state re-sharded; it ends bit-identically on
    the unbroken run's weights and logged values."""
    rng = random.Random(1)
    data = digit_game(tmp_path / "rl.json", [str(rng.randint(0, 9)) for _ in range(20)])
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS, "top_k=1",
            "value_model=separate_critic", "micro_batch_size=4"]  # fmt: skip
    unbroken, resumed = tmp_path / "unbroken", tmp_path / "resumed"
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={unbroken}")
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={resumed}", "stop_epochs=0.5")
    assert [c.step for c in Checkpointer(resumed).list()] == [1]
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={resumed}", "resume=true")
    a, b = _all_weights(unbroken), _all_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert train_curve(unbroken) == train_curve(resumed) and len(train_curve(resumed)) == 2


ONLINE_ARGS = ["mode=online", "dev_data=null", "dev_holdout=4", "eval_every=1",
               "eval_max_new_tokens=24", "batch_size=8", "samples_per_prompt=1",
               "max_new_tokens=24", "max_steps=2", "lr=1e-3", "log_every=1", "seed=0",
               "micro_batch_size=1", "top_k=1"]  # fmt: skip
"""Two online self-training steps from the warm-up, greedy (the warm-up's pick is right for some
games; sampled, it is rarely well formed): each rank trains on its own correct answers, one
micro-batch each, so the ranks run different numbers of them (the FSDP2 ranks pad)."""
ONLINE_LOGGED = ("loss", "own_nll", "gold_nll", "reward", "accuracy", "own_samples", "grad_norm")


@pytest.mark.slow
def test_fsdp2_online_self_training_matches_ddp(warmup, tmp_path, digit_game):
    """Online self-training on 2 FSDP2 ranks: sampling from a gathered copy, each rank's correct
    samples padded to the most any rank has with zero-weight micro-batches; the same logged values
    and final weights as 2 DDP ranks."""
    rng = random.Random(1)
    data = digit_game(tmp_path / "rl.json", [str(rng.randint(0, 9)) for _ in range(20)])
    args = ["self-train", f"model={warmup}", f"train_data={data}", *ONLINE_ARGS]
    torchrun_ddp(*args, f"out_dir={tmp_path / 'ddp'}")
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={tmp_path / 'fsdp'}")
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    train_ddp, train_fsdp = read_metrics(ddp, "train"), read_metrics(fsdp, "train")
    assert len(train_ddp) == len(train_fsdp) == 2
    for a, b in zip(train_ddp, train_fsdp, strict=True):
        for key in ONLINE_LOGGED:
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    own = [record["own_samples"] for record in train_fsdp]
    # an odd total over 2 ranks: their own-sample micro-batch counts differed in that step
    assert any(count % 2 for count in own), own
    _assert_same_dev(ddp, fsdp, evaluations=2)
    moved = max_gap(final_weights(ddp), load_file(warmup / "model.safetensors"))
    gap = max_gap(_all_weights(ddp), _all_weights(fsdp))
    assert gap < WEIGHT_ATOL < moved, f"DDP vs FSDP2 differ by {gap:.2e} (moved {moved:.2e})"


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage",
    [["rm", "train", "num_samples=4", "lr=1e-3", "warmup_ratio=0"],
     ["self-train", "mode=offline", "num_samples=4", "lr=1e-3"]],
    ids=["reward-model", "offline-self-training"],
)  # fmt: skip
def test_fsdp2_sampled_data_trainers_match_one_process(warmup, tmp_path, digit_game, stage):
    """The trainers that sample their data first (on the main process, from an unsharded model)
    and then train like SFT: under FSDP2 the same logged losses and final weights as 1 process of
    the same global batch."""
    data = digit_game(tmp_path / "train.json", ["7"] * 32)
    args = [*stage, f"model={warmup}", f"train_data={data}", "dev_data=null", "dev_holdout=8",
            "max_new_tokens=16", "eval_max_new_tokens=16", "batch_size=16", "micro_batch_size=4",
            "epochs=1", "log_every=1", "seed=0"]  # fmt: skip
    one, fsdp = tmp_path / "one", tmp_path / "fsdp"
    assert main([*args, f"out_dir={one}"]) == 0
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={fsdp}")
    losses = [[r["loss"] for r in read_metrics(out, "train")] for out in (one, fsdp)]
    assert losses[0] and losses[0] == pytest.approx(losses[1], abs=LOSS_ATOL)
    assert json.loads((tmp_path / "report" / "shapes-rank1.json").read_text()), "not sharded"
    start, final = load_file(warmup / "model.safetensors"), final_weights(one)
    moved = max_gap({k: final[k] for k in start}, start)  # the reward model adds a score head
    gap = max_gap(final, final_weights(fsdp))
    assert gap < WEIGHT_ATOL < moved, f"1 process vs FSDP2 differ by {gap:.2e} (moved {moved:.2e})"


FAKE_VLLM_LAUNCHER = """
import atexit, os, sys
from pathlib import Path
from types import SimpleNamespace

import torch

from reft.cli import main
from reft.generation.backends import VLLMBackend

report = Path(os.environ["SHARD_REPORT"])
synced = []


class EngineModel:
    def load_weights(self, weights):
        synced.append({name: tensor.detach().clone() for name, tensor in weights})


class FakeLLM:
    # Each request gets its n samples: token 5 then the first stop token (a short wrong answer).
    def __init__(self):
        self.model = EngineModel()
        worker = SimpleNamespace(worker=SimpleNamespace(model_runner=SimpleNamespace(model=self.model)))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker))

    def generate(self, requests, params, use_tqdm=True):
        sample = SimpleNamespace(token_ids=(5, params["stop_token_ids"][0]))
        return [SimpleNamespace(outputs=[sample] * params["n"]) for _ in requests]

    def reset_prefix_cache(self):
        pass


def launch(cls, model_path, **settings):
    return cls(FakeLLM(), dict, settings["device"])


def dump():
    torch.save({"syncs": len(synced), "last": synced[-1]}, report / f"vllm-rank{os.environ['RANK']}.pt")


VLLMBackend.launch = classmethod(launch)
atexit.register(dump)
sys.exit(main(sys.argv[1:]))
"""
"""Runs `reft ARGS` with VLLMBackend.launch replaced by a fake in-process engine that records every
weight sync; each rank dumps its number of syncs and the last weights it received."""


@pytest.mark.slow
def test_fsdp2_vllm_backend_receives_the_whole_policy_after_every_update(
    warmup, tmp_path, digit_game
):
    """rollout_backend=vllm under FSDP2, against a fake engine: every rank's engine receives the
    policy's full, unsharded weights under their Hugging Face names (gathered from the shards) at
    the start and after each update; the last ones equal the final checkpoint."""
    data = digit_game(tmp_path / "rl.json", ["7"] * 16)
    report = tmp_path / "report"
    report.mkdir()
    (report / "launch.py").write_text(FAKE_VLLM_LAUNCHER)
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS, "dev_holdout=0",
            "eval_every=0", "rollout_backend=vllm", f"out_dir={tmp_path / 'fsdp'}"]  # fmt: skip
    env = {**os.environ, **FSDP_ENV, **RANK_ENV,
           "SHARD_REPORT": str(report)}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(report / "launch.py"), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    final = final_weights(tmp_path / "fsdp")
    moved = max_gap(final, load_file(warmup / "model.safetensors"))
    assert moved > WEIGHT_ATOL, f"the policy barely moved ({moved:.2e})"
    for rank in (0, 1):
        received = torch.load(report / f"vllm-rank{rank}.pt")
        assert received["syncs"] == 1 + 2, "one sync at the start and one after each of 2 steps"
        last = received["last"]
        assert set(final) <= set(last), sorted(set(final) - set(last))
        assert all(torch.equal(last[name], final[name]) for name in final), f"rank {rank}"


@pytest.mark.slow
def test_fsdp2_critic_free_estimator_matches_ddp(warmup, tmp_path, digit_game):
    """GRPO with the KL in the loss (no value model) on 2 FSDP2 ranks: whole groups on each rank,
    the same logged values and final policy as 2 DDP ranks."""
    rng = random.Random(1)
    data = digit_game(tmp_path / "rl.json", [str(rng.randint(0, 9)) for _ in range(20)])
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS, "estimator=grpo",
            "kl_placement=loss", "kl_estimator=k3", "samples_per_prompt=4", "mini_batch_size=32",
            "micro_batch_size=8", "top_k=2"]  # fmt: skip
    torchrun_ddp(*args, f"out_dir={tmp_path / 'ddp'}")
    _torchrun_fsdp(tmp_path / "report", *args, f"out_dir={tmp_path / 'fsdp'}")
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    curves = [read_metrics(out, "train") for out in (ddp, fsdp)]
    assert len(curves[0]) == len(curves[1]) == 2
    for a, b in zip(*curves, strict=True):
        assert "value_loss" not in b
        for key in ("reward", "response_length", "kl", "kl_loss", "policy_loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    rewards = [record["reward"] for record in curves[1]]
    assert any(0 < reward < 1 for reward in rewards), f"rewards {rewards} constant: no advantage"
    moved = max_gap(final_weights(ddp), load_file(warmup / "model.safetensors"))
    gap = max_gap(final_weights(ddp), final_weights(fsdp))
    assert gap < WEIGHT_ATOL < moved, f"DDP vs FSDP2 differ by {gap:.2e} (moved {moved:.2e})"
    assert not list(Checkpointer(fsdp).latest().path.glob("value_head*"))
