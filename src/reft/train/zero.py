"""DeepSpeed ZeRO for reft's trainers: engage it on CPU as on GPUs, refuse what reft cannot keep
exact, and checkpoint every rank's optimizer partition.

Asked for the way accelerate is: ACCELERATE_USE_DEEPSPEED=true in the environment (`accelerate
launch --config_file configs/accelerate/deepspeed_zero2.yaml` exports it, with the stage and the
other settings; under torchrun export ACCELERATE_USE_DEEPSPEED=true and ACCELERATE_DEEPSPEED_ZERO_STAGE
yourself, docs/scaling.md).

Why reft builds the Accelerator itself for it (accelerate 1.16): `Accelerator(cpu=True)` ignores the
DeepSpeed request and trains DDP, and `Accelerator(cpu=False)` without a GPU finds no backend, so
every rank believes it is the only one; an explicit gloo process group gives DeepSpeed the world it
needs (`accelerator_options`).

Supported: ZeRO stages 0-2 for every trainer (weights replicated, so the policy saves, samples and
evaluates as unsharded; gradients and optimizer state partitioned), and ZeRO-3 for `reft sft`
(weights partitioned too). Refused before any model is built (`check_engaged`): ZeRO-3 for the
trainers that build more models than the policy (reference, value head, critic, sampler, score
head: transformers would build each partitioned), LoRA and fp16. A checkpoint keeps the plain
Hugging Face files and adds `zero/`, DeepSpeed's own checkpoint (`DeepSpeedEngine.save_checkpoint`: each
rank's optimizer partition with its fp32 master weights, written by every rank), which a resume
loads back on every rank.

ZeRO-3, as FSDP2 in reft.train.sharding: every rank loads the model (transformers builds it
partitioned under DeepSpeed's zero.Init; a preset is first written by the main process as a plain
model, `plain_construction`); checkpoints and dev evaluation use a whole copy of the policy built
from the gathered parameters (`Zero3Policy`), so the checkpoint is a normal Hugging Face model and
the main process samples alone without DeepSpeed's per-layer gathers.

DeepSpeed clips gradients itself, at 1.0 unless its config says otherwise; `configure` writes
reft's max_grad_norm there (0 = off).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reft.config import ConfigError

logger = logging.getLogger(__name__)

USE_DEEPSPEED_ENV = "ACCELERATE_USE_DEEPSPEED"
"""accelerate's switch for DeepSpeed (set by `accelerate launch` from a config with distributed_type
DEEPSPEED)."""
ZERO_DIR = "zero"
"""A checkpoint's folder with DeepSpeed's own checkpoint of every rank's optimizer partition."""
ZERO_TAG = "state"
"""The DeepSpeed checkpoint tag (sub-folder of ZERO_DIR) reft writes and reads."""
SHM_COMM_OP = "deepspeed_shm_comm"
"""DeepSpeed's shared-memory all-reduce for CPU inference (`inference_all_reduce`): training never
calls it, but DeepSpeed JIT-compiles it (about 100 s) at the first process-group start."""
REPLICATED_STAGES = (0, 1, 2)
"""Stages that keep whole weights on every rank (every trainer runs under them)."""
ZERO3_TRAINERS = ("sft",)
"""Trainers (TrainingRun.stage) supported under ZeRO-3: those whose only model is the policy."""


def deepspeed_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the launch asks for DeepSpeed; ConfigError when deepspeed is not installed."""
    if environ.get(USE_DEEPSPEED_ENV, "false").lower() != "true":
        return False
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"{USE_DEEPSPEED_ENV}=true but deepspeed is not installed: pip install 'reft[deepspeed]' "
            "(or launch without the DeepSpeed config to train DDP)"
        )
    return True


def accelerator_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Keyword arguments for `accelerate.Accelerator` that engage DeepSpeed when it is asked for:
    without CUDA, cpu=False and an explicit gloo process group (accelerate would otherwise train
    DDP, or leave every rank alone); without CUDA or DeepSpeed, cpu=True as before."""
    cuda = torch.cuda.is_available()
    if not deepspeed_requested(environ):
        return {"cpu": not cuda}
    if cuda:
        return {"cpu": False}
    from accelerate.utils import InitProcessGroupKwargs

    _skip_shm_comm_build()
    return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}


def _skip_shm_comm_build() -> None:
    """Mark DeepSpeed's CPU inference all-reduce op as unbuildable, so that starting the process
    group does not compile it (DeepSpeed then uses torch.distributed, as it does for every
    collective of training)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False


def zero_stage(plugin: Any) -> int:
    """The ZeRO stage of an accelerate DeepSpeedPlugin."""
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def check_engaged(accelerator: Any, config: Any, trainer: str) -> int | None:
    """The ZeRO stage `accelerator` trains with (None without DeepSpeed); ConfigError when the
    launch asked for DeepSpeed and it is not active, or for what reft does not support under it
    (before any model is built). `trainer`: TrainingRun.stage."""
    if not deepspeed_requested():
        return None
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        raise ConfigError(
            f"{USE_DEEPSPEED_ENV}=true but accelerate did not start DeepSpeed (distributed type "
            f"{accelerator.distributed_type}); launch without --cpu"
        )
    stage = zero_stage(plugin)
    if stage not in REPLICATED_STAGES and trainer not in ZERO3_TRAINERS:
        raise ConfigError(
            f"DeepSpeed ZeRO-{stage} is supported by reft for SFT (`reft sft`) only, not for the "
            f"{trainer} trainer: transformers would build its other models (reference, value head, "
            "critic, sampler) partitioned too. Use ZeRO-2 (configs/accelerate/deepspeed_zero2.yaml) "
            "or FSDP2 (configs/accelerate/fsdp.yaml), which shards the weights"
        )
    if config.lora:
        raise ConfigError("lora=true is not supported under DeepSpeed: launch without it (DDP)")
    if config.mixed_precision.value == "fp16":
        raise ConfigError("mixed_precision=fp16 is not supported under DeepSpeed: use bf16")
    logger.info("DeepSpeed ZeRO-%d over %d processes", stage, accelerator.num_processes)
    return stage


def configure(plugin: Any, micro_batch_size: int, max_grad_norm: float) -> None:
    """Tell DeepSpeed the per-device micro-batch (reft has no dataloader to infer it from), leave
    accumulation to reft (`TrainingRun.micro_batch`) and clip at reft's max_grad_norm (0 = off;
    DeepSpeed's own default would be 1.0)."""
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch_size
    plugin.deepspeed_config["gradient_accumulation_steps"] = 1
    plugin.deepspeed_config["gradient_clipping"] = max_grad_norm


def staging_dir(root: Path, step: int) -> Path:
    """Where every rank writes step `step`'s DeepSpeed state before the main process moves it into
    the checkpoint being written (a `.tmp-` name: a kill leaves it to the next save's pruning)."""
    return root / f".tmp-zero-step_{step:06d}"


def save_state(engine: Any, staging: Path, is_main: bool) -> None:
    """Write `engine`'s DeepSpeed checkpoint (every rank its optimizer partition) into `staging`.
    A collective: every rank must call it."""
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers
    engine.save_checkpoint(str(staging), tag=ZERO_TAG, save_latest=False)


def move_into(staging: Path, checkpoint_dir: Path) -> None:
    """Move the staged DeepSpeed checkpoint into `checkpoint_dir`/zero (same filesystem: a rename)."""
    staging.rename(Path(checkpoint_dir) / ZERO_DIR)


def load_state(engine: Any, checkpoint_dir: Path) -> None:
    """Restore every rank's optimizer partition, fp32 master weights and step count from a
    checkpoint's zero/ folder. A collective."""
    directory = Path(checkpoint_dir) / ZERO_DIR
    if not (directory / ZERO_TAG).is_dir():
        raise ConfigError(
            f"{checkpoint_dir} was written without DeepSpeed (no {ZERO_DIR}/): resume it the way "
            "it was trained"
        )
    path, _ = engine.load_checkpoint(
        str(directory), tag=ZERO_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
    )
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load its checkpoint from {directory}")


@contextmanager
def plain_construction() -> Iterator[None]:
    """Models built inside are plain, whole modules even under ZeRO-3, where transformers would
    build each partitioned, a collective that every rank must join (its DeepSpeed config is
    hidden from it meanwhile). For what the main process builds alone: a preset's first weights."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


class Zero3Policy:
    """A Hugging Face policy partitioned by ZeRO-3, and whole copies of it for checkpoints and
    generation (the design of reft.train.sharding.ShardedTrainable: a structure-only copy filled
    with the gathered weights, dropped after use)."""

    def __init__(self, policy: nn.Module, is_main: bool) -> None:
        self.policy = policy
        self.is_main = is_main

    @torch.no_grad()
    def _gathered_state(self, everywhere: bool) -> dict[str, torch.Tensor]:
        """The policy's full state dict, cloned on every rank (`everywhere`) or on the main process
        only ({} elsewhere). A collective: all parameters are gathered at once."""
        import deepspeed

        parameters = list(self.policy.parameters())
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=None):
            if not (everywhere or self.is_main):
                return {}
            return {k: v.detach().clone() for k, v in self.policy.state_dict().items()}

    def _whole_copy(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """A plain, eval-mode policy holding `state` (built on the meta device, then given the
        tensors; non-persistent buffers such as rotary frequencies come from the live policy)."""
        from transformers import AutoModelForCausalLM

        with plain_construction(), torch.device("meta"):
            whole = AutoModelForCausalLM.from_config(self.policy.config)
        whole.load_state_dict(state, assign=True)
        live = dict(self.policy.named_buffers())
        for name, buffer in whole.named_buffers():
            if buffer.is_meta:
                module, _, leaf = name.rpartition(".")
                setattr(whole.get_submodule(module), leaf, live[name].detach().clone())
        whole.tie_weights()  # assign=True untied them: a tied LM head is saved once
        whole.generation_config = copy.deepcopy(self.policy.generation_config)
        return whole.eval()

    def gathered(self) -> tuple[nn.Module | None, None]:
        """(policy, save_extra) for a checkpoint: a whole copy on the main process, (None, None)
        elsewhere. Every rank must call it."""
        state = self._gathered_state(everywhere=False)
        return (self._whole_copy(state) if state else None), None

    def policy_weights(self) -> dict[str, torch.Tensor]:
        """The policy's full weights on every rank. A collective."""
        return self._gathered_state(everywhere=True)

    @contextmanager
    def gathered_for_generation(self) -> Iterator[nn.Module]:
        """A whole, frozen copy of the current policy on every rank, for sampling. A collective:
        every rank must enter it at the same point."""
        yield self._whole_copy(self.policy_weights()).requires_grad_(False)
