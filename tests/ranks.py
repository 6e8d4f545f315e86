"""Helpers of the tests that run reft on several gloo ranks and compare the runs (test_distributed,
test_fsdp, test_deepspeed): the reference SFT they shard, a 2-rank DDP launch, the final weights,
their largest gap, the logged curve less its timings, and a load of a checkpoint by transformers
alone."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.metrics import read_metrics

RANK_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
"""Every rank gets one thread (two 2-thread ranks on 2 cores crawl) and never downloads."""
SHARDING_ENV = ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED")
"""accelerate's variables that would turn a DDP launch into FSDP2 or DeepSpeed."""

SFT_ARGS = ["model=preset:micro-llama", "batch_size=16", "micro_batch_size=4", "lr=5e-3",
            "epochs=3", "save_every=4", "preset_vocab_size=300", "log_every=1",
            "eval_max_new_tokens=16", "seed=0"]  # fmt: skip
"""64 examples: 4 steps per epoch (2 micro-batches per rank and step on 2 ranks), 12 in all, a
checkpoint every 4 and a dev evaluation every epoch (`sft_args` adds the data)."""


def sft_args(root: Path, digit_game: Callable[[Path, list[str]], Path]) -> list[str]:
    """`reft sft` arguments of the reference SFT the sharding tests compare: 64 training and 8 dev
    digit-game examples written in `root` (the `digit_game` fixture), then SFT_ARGS."""
    rng = random.Random(0)
    data = digit_game(root / "sft.json", [str(rng.randint(0, 9)) for _ in range(64)])
    dev = digit_game(root / "dev.json", [str(rng.randint(0, 9)) for _ in range(8)])
    return ["sft", f"train_data={data}", f"dev_data={dev}", *SFT_ARGS]


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
