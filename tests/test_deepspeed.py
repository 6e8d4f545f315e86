"""DeepSpeed ZeRO-2 and ZeRO-3 on CPU: two gloo ranks launched the documented way (`accelerate
launch --config_file configs/accelerate/deepspeed_zero2.yaml --num_processes 2 -m reft ...`, one
thread each) take the same steps as one process (SFT) or as 2 DDP ranks (ReFT under ZeRO-2), write
plain Hugging Face checkpoints plus every rank's optimizer partition, and resume bit-exactly
(reft.train.zero).

ZeRO-3 runs with stage3_param_persistence_threshold 0 (a DeepSpeed config file of the test's own):
with DeepSpeed's default every tensor of the tiny model would stay whole on every rank, and the
gathering would go untested. A recording launcher keeps, on each rank, the logits of the whole
policy copy that the last dev evaluation sampled from.

The tests that launch DeepSpeed need it installed (`pip install 'reft[deepspeed]'`) and are skipped
otherwise; the refusals run everywhere. The first DeepSpeed start would JIT-compile a CPU inference
op (about 100 s); reft marks it unbuildable (reft.train.zero), so none of these runs compiles.

Tolerances as in tests/test_fsdp.py: losses within LOSS_ATOL and weights within WEIGHT_ATOL of the
reference (the gradient is summed in another order: DeepSpeed reduce-scatters each rank's
micro-batch sum), resume bit-exact.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
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
from reft.manifest import manifest_problems
from reft.metrics import read_metrics
from reft.train.zero import ZERO_DIR, ZERO_TAG, deepspeed_requested

LOSS_ATOL = 1e-4
WEIGHT_ATOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]
ZERO2 = ROOT / "configs" / "accelerate" / "deepspeed_zero2.yaml"
ZERO3 = ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml"
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed (reft[deepspeed])"
)


def test_deepspeed_is_asked_for_with_accelerates_variable():
    assert not deepspeed_requested({})
    assert not deepspeed_requested({"ACCELERATE_USE_DEEPSPEED": "false"})


def test_deepspeed_asked_for_but_not_installed_is_refused_before_training(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # find_spec: not installed
    with pytest.raises(ConfigError, match="deepspeed is not installed"):
        deepspeed_requested({"ACCELERATE_USE_DEEPSPEED": "true"})
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    args = ["sft", "model=preset:micro-llama", "train_data=synth:train:16", "dev_data=null",
            "preset_vocab_size=300", "batch_size=4", "micro_batch_size=4", "max_steps=1"]  # fmt: skip
    assert main([*args, f"out_dir={tmp_path / 'run'}"]) == 2
    assert "deepspeed is not installed" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("checkpoints/step_*"))


def _launch(config: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """`reft ARGS` under `accelerate launch` with a DeepSpeed config (one thread per rank)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", str(processes), "-m", "reft", *args]  # fmt: skip
    env = {**os.environ, **RANK_ENV}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _zero2(*args: str) -> None:
    done = _launch(ZERO2, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@needs_deepspeed
@pytest.mark.slow
def test_zero3_is_refused_for_trainers_with_more_models_than_the_policy(tmp_path):
    args = ["train", "model=preset:micro-llama", "train_data=synth:train:16", "dev_data=null",
            "preset_vocab_size=300", "batch_size=4", "mini_batch_size=4", "micro_batch_size=4",
            "max_steps=1", f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    done = _launch(ZERO3, *args, processes=1)
    assert done.returncode != 0
    assert "ZeRO-3 is supported by reft for SFT (`reft sft`) only, not for the reft trainer" in (
        done.stderr
    )
    assert not (tmp_path / "run" / "init").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digit_game) -> dict:
    """One process and one unbroken 2-rank ZeRO-2 run of the same SFT."""
    root = tmp_path_factory.mktemp("zero2")
    args = sft_args(root, digit_game)
    assert main([*args, f"out_dir={root / 'one'}"]) == 0
    _zero2(*args, f"out_dir={root / 'zero2'}")
    return {"one": root / "one", "zero2": root / "zero2", "args": args}


@needs_deepspeed
@pytest.mark.slow
def test_zero2_sft_on_two_ranks_matches_one_process(runs):
    one, zero2 = runs["one"], runs["zero2"]
    curve_one, curve_zero2 = read_metrics(one, "train"), read_metrics(zero2, "train")
    assert len(curve_one) == len(curve_zero2) == 12
    for a, b in zip(curve_one, curve_zero2, strict=True):
        for key in ("loss", "grad_norm"):  # grad_norm: DeepSpeed's, of the clipped step
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    weights_one = final_weights(one)
    moved = max_gap(weights_one, load_file(one / "init" / "model.safetensors"))
    gap = max_gap(weights_one, final_weights(zero2))
    assert gap < WEIGHT_ATOL < moved, f"1 process vs ZeRO-2 differ by {gap:.2e} (moved {moved:.2e})"
    dev_one, dev_zero2 = read_metrics(one, "dev"), read_metrics(zero2, "dev")
    assert len(dev_one) == len(dev_zero2) == 3
    for x, y in zip(dev_one, dev_zero2, strict=True):
        assert (x["accuracy"], x["response_tokens"]) == (y["accuracy"], y["response_tokens"])


@needs_deepspeed
@pytest.mark.slow
def test_zero2_checkpoint_holds_every_ranks_partition_and_loads_without_reft(runs):
    final = Checkpointer(runs["zero2"]).latest().path
    state = final / ZERO_DIR / ZERO_TAG
    partitions = sorted(path.name for path in state.glob("zero_pp_rank_*_optim_states.pt"))
    assert partitions == [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]
    recorded = json.loads((final / "manifest.json").read_text())["files"]
    assert f"{ZERO_DIR}/{ZERO_TAG}/{partitions[1]}" in recorded and not manifest_problems(final)
    assert not list(final.parent.glob(".tmp-*")), "staging left behind"
    reference = Checkpointer(runs["one"]).latest().path / "model.safetensors"
    command = [sys.executable, "-c", PLAIN_COMPARE, str(final), str(reference)]
    done = subprocess.run(command, env={**os.environ, **RANK_ENV}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) < WEIGHT_ATOL


@needs_deepspeed
@pytest.mark.slow
def test_zero2_run_stopped_and_resumed_ends_on_the_unbroken_runs_weights(runs, tmp_path):
    out = tmp_path / "resumed"
    args = [*runs["args"], f"out_dir={out}"]
    _zero2(*args, "stop_epochs=2")  # stops at step 8
    assert [c.step for c in Checkpointer(out).list()] == [4, 8]
    _zero2(*args, "resume=true")
    assert Checkpointer(out).latest().step == 12
    unbroken, resumed = final_weights(runs["zero2"]), final_weights(out)
    assert unbroken.keys() == resumed.keys()
    assert all(torch.equal(unbroken[key], resumed[key]) for key in unbroken)
    assert train_curve(out) == train_curve(runs["zero2"])


@needs_deepspeed
@pytest.mark.slow
def test_zero2_checkpoint_is_not_resumed_without_deepspeed(runs, tmp_path, capsys):
    """A ZeRO-2 checkpoint's optimizer state is DeepSpeed's: one process refuses to resume it."""
    out = tmp_path / "copy"
    shutil.copytree(runs["zero2"], out)
    (out / "complete.json").unlink()
    assert main([*runs["args"], f"out_dir={out}", "resume=true"]) == 2
    assert "written under DeepSpeed" in capsys.readouterr().err


WARMUP_ARGS = ["model=preset:micro-llama", "dev_data=null", "batch_size=16", "micro_batch_size=16",
               "lr=5e-3", "max_steps=40", "preset_vocab_size=300", "seed=0"]  # fmt: skip
PPO_ARGS = ["dev_data=null", "dev_holdout=4", "eval_every=1", "eval_max_new_tokens=24",
            "batch_size=8", "samples_per_prompt=2", "mini_batch_size=16", "max_new_tokens=24",
            "max_steps=2", "lr=1e-3", "log_every=1", "seed=0", "value_model=separate_critic",
            "micro_batch_size=4", "top_k=1"]  # fmt: skip
"""Two greedy ReFT steps (separate critic, two micro-batches per rank) from the warm-up on 20 digit
games, 4 held out as dev: each rank's sampling seed depends on (seed, step, rank) only, so DDP and
ZeRO-2 sample the same responses from the same weights (tests/test_fsdp.py)."""
PPO_LOGGED = ("reward", "accuracy", "response_length", "kl", "policy_loss", "value_loss",
              "entropy", "grad_norm", "explained_variance")  # fmt: skip


@needs_deepspeed
@pytest.mark.slow
def test_zero2_reft_matches_ddp(tmp_path, digit_game):
    """`reft train` on 2 ZeRO-2 ranks from an SFT warm-up: the same logged values, dev results and
    final weights (policy, critic, value head) as 2 DDP ranks."""
    rng = random.Random(0)
    sft = digit_game(tmp_path / "sft.json", [str(rng.randint(0, 9)) for _ in range(256)])
    assert main(["sft", f"train_data={sft}", *WARMUP_ARGS, f"out_dir={tmp_path / 'sft'}"]) == 0
    warmup = Checkpointer(tmp_path / "sft").latest().path
    rng = random.Random(1)
    data = digit_game(tmp_path / "rl.json", [str(rng.randint(0, 9)) for _ in range(20)])
    args = ["train", f"model={warmup}", f"train_data={data}", *PPO_ARGS]
    ddp, zero2 = tmp_path / "ddp", tmp_path / "zero2"
    torchrun_ddp(*args, f"out_dir={ddp}")
    _zero2(*args, f"out_dir={zero2}")
    assert (Checkpointer(zero2).latest().path / ZERO_DIR / ZERO_TAG).is_dir()
    train_ddp, train_zero2 = read_metrics(ddp, "train"), read_metrics(zero2, "train")
    assert len(train_ddp) == len(train_zero2) == 2
    for a, b in zip(train_ddp, train_zero2, strict=True):
        for key in PPO_LOGGED:
            assert a[key] == pytest.approx(b[key], abs=LOSS_ATOL), (a["step"], key)
    assert any(0 < r["reward"] < 1 for r in train_zero2), "constant rewards: no advantage"
    dev_ddp, dev_zero2 = read_metrics(ddp, "dev"), read_metrics(zero2, "dev")
    assert [(r["accuracy"], r["response_tokens"]) for r in dev_ddp] == [
        (r["accuracy"], r["response_tokens"]) for r in dev_zero2
    ]
    moved = max_gap(final_weights(ddp), load_file(warmup / "model.safetensors"))
    final_ddp, final_zero2 = (Checkpointer(out).latest().path for out in (ddp, zero2))
    gap = max(
        max_gap(load_file(final_ddp / name), load_file(final_zero2 / name))
        for name in ("model.safetensors", "value_head.safetensors", "critic/model.safetensors")
    )
    assert gap < WEIGHT_ATOL < moved, f"DDP vs ZeRO-2 differ by {gap:.2e} (moved {moved:.2e})"


ZERO3_CONFIG = """{"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
 "gradient_accumulation_steps": 1,
 "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}"""
"""ZeRO-3 partitioning every tensor (reft fills in the micro-batch, accumulation and clipping)."""
ZERO3_LAUNCH = """distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_config_file: {config}
  zero3_init_flag: true
num_machines: 1
num_processes: 2
machine_rank: 0
rdzv_backend: static
same_network: true
use_cpu: false
"""
RECORDING_LAUNCHER = """
import os, sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from reft.cli import main
from reft.train import zero

report = Path(os.environ["ZERO3_REPORT"])
gathered = zero.Zero3Policy.gathered_for_generation


def recording(self):
    with gathered(self) as policy:
        logits = policy(torch.arange(12)[None]).logits
        torch.save(logits, report / f"logits-rank{dist.get_rank()}.pt")
        yield policy


zero.Zero3Policy.gathered_for_generation = contextmanager(recording)
sys.exit(main(sys.argv[1:]))
"""
"""Runs `reft ARGS`, saving on each rank the logits (of a fixed input) of every whole policy copy
sampled from; the last one is the final step's."""


def _zero3(root: Path, *args: str) -> None:
    """`reft ARGS` as 2 ZeRO-3 ranks, recording into `root`/report."""
    report = root / "report"
    report.mkdir(parents=True, exist_ok=True)
    (root / "zero3.json").write_text(ZERO3_CONFIG)
    launch = root / "zero3.yaml"
    launch.write_text(ZERO3_LAUNCH.format(config=root / "zero3.json"))
    (report / "launch.py").write_text(RECORDING_LAUNCHER)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch),
               str(report / "launch.py"), *args]  # fmt: skip
    env = {**os.environ, **RANK_ENV, "ZERO3_REPORT": str(report)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@needs_deepspeed
@pytest.mark.slow
def test_zero3_sft_partitions_matches_one_process_and_resumes_exactly(runs, tmp_path):
    """ZeRO-3 SFT from a preset (built by the main process alone, loaded partitioned by all): the
    same losses and weights as one process; a checkpoint with whole weights, loadable without reft,
    while DeepSpeed's own holds empty module tensors (all partitioned); dev evaluation sampled from
    a whole copy equal to the final checkpoint; stopped and resumed, the same run bit for bit."""
    one, unbroken, resumed = runs["one"], tmp_path / "unbroken", tmp_path / "resumed"
    _zero3(tmp_path, *runs["args"], f"out_dir={unbroken}")
    losses = [[r["loss"] for r in read_metrics(out, "train")] for out in (one, unbroken)]
    assert len(losses[1]) == 12 and losses[0] == pytest.approx(losses[1], abs=LOSS_ATOL)
    weights_one = final_weights(one)
    gap = max_gap(weights_one, final_weights(unbroken))
    assert gap < WEIGHT_ATOL, f"1 process vs ZeRO-3 differ by {gap:.2e}"
    final = Checkpointer(unbroken).latest().path
    for rank in (0, 1):
        states = final / ZERO_DIR / ZERO_TAG / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt"
        module = torch.load(states, weights_only=False)["module"]
        assert len(module) > 10 and all(t.numel() == 0 for t in module.values()), "not partitioned"
    reference = Checkpointer(one).latest().path / "model.safetensors"
    command = [sys.executable, "-c", PLAIN_COMPARE, str(final), str(reference)]
    done = subprocess.run(command, env={**os.environ, **RANK_ENV}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) < WEIGHT_ATOL
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(final)
    with torch.no_grad():
        expected = plain(torch.arange(12)[None]).logits
    for rank in (0, 1):
        logits = torch.load(tmp_path / "report" / f"logits-rank{rank}.pt")
        gap = (logits - expected).abs().max().item()
        assert gap < WEIGHT_ATOL, f"rank {rank}'s generation copy differs by {gap:.2e}"
    _zero3(tmp_path, *runs["args"], f"out_dir={resumed}", "stop_epochs=2")
    _zero3(tmp_path, *runs["args"], f"out_dir={resumed}", "resume=true")
    a, b = final_weights(unbroken), final_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert train_curve(unbroken) == train_curve(resumed)
