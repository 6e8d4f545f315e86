"""Helpers of the tests that run reft on several gloo ranks and compare the runs (test_distributed,
test_fsdp, test_deepspeed): a 2-rank DDP launch, the final weights, their largest gap, the logged
curve less its timings, and a load of a checkpoint by transformers alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.metrics import read_metrics

RANK_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
"""Every rank gets one thread (two 2-thread ranks on 2 cores crawl) and never downloads."""
SHARDING_ENV = ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED")
"""accelerate's variables that would turn a DDP launch into FSDP2 or DeepSpeed."""

PLAIN_COMPARE = """
import json, sys
sys.modules["reft"] = None  # `import reft` fails from here on
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
expected = load_file(sys.argv[2])
state = model.state_dict()
assert set(expected) <= set(state) and len(expected) > 10, sorted(set(state) ^ set(expected))
print(json.dumps(max((state[k] - expected[k]).abs().max().item() for k in expected)))
"""
"""Loads a checkpoint with transformers alone and prints its largest weight gap to a safetensors
file (the reference run's final policy; a tied LM head is saved once, as the embedding)."""


def torchrun_ddp(*args: str) -> None:
    """`reft ARGS` as 2 gloo DDP ranks of one thread each; fail with the output if it fails."""
    env = {**os.environ, **RANK_ENV}
    for key in SHARDING_ENV:
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "reft", *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def final_weights(out: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    """The tensors of file `name` in the latest checkpoint of the run in `out`."""
    return load_file(Checkpointer(out).latest().path / name)


def max_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max((a[key] - b[key]).abs().max().item() for key in a)


def train_curve(out: Path) -> list[dict]:
    """The logged train values, less the timings (which differ between runs)."""
    volatile = ("time", "tokens_per_s")
    return [
        {key: value for key, value in record.items() if not key.startswith(volatile)}
        for record in read_metrics(out, "train")
    ]
