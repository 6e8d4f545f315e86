"""FSDP2 for reft's trainers: shard the trainable module with `torch.distributed.fsdp.fully_shard`,
and gather what a checkpoint needs, so checkpoints are the same whatever the sharding.

Asked for the way accelerate is: ACCELERATE_USE_FSDP=true and FSDP_VERSION=2 in the environment
(`accelerate launch --config_file configs/accelerate/fsdp.yaml` exports both; under torchrun export
them yourself, docs/scaling.md). FSDP1 is refused: its checkpoints would be written from one rank's
shard.

Why reft calls `fully_shard` itself instead of leaving it to `accelerator.prepare`: accelerate
(1.16) turns FSDP on only on accelerator devices (its state picks DistributedType.FSDP out of
MULTI_GPU, MULTI_NPU, ...); on CPU the state stays MULTI_CPU whatever the plugin says, and `prepare`
would wrap the model in DDP. Sharding here gives one layout on CPU and GPUs, the one the CPU tests
verify; on GPUs accelerate then receives a module that is already an FSDPModule and leaves it as is.

Layout: one FSDP unit per decoder layer (the classes named in FSDP_TRANSFORMER_CLS_TO_WRAP, else
each Hugging Face model's `_no_split_modules`), and the root unit with the rest (embeddings, tied LM
head, final norm, value head). Parameters keep their dtype; mixed precision is reft's autocast, as
under DDP (no MixedPrecisionPolicy).

Generation (PPO rollouts, dev evaluation): a whole copy of the policy is gathered on every rank
for the duration (`ShardedTrainable.gathered_for_generation`) and sampled from like an unsharded
model. Sampling through the sharded module itself would mix plain and DTensor parameters in the
policy's own forward (the root unit's hooks run only through the root), and each rank decodes as
many steps as its own longest response, so per-forward all-gathers would not pair up across ranks;
the copy needs one gather per rollout, made before decoding, the same on every rank.

Checkpoints: the gathers are collectives, so every rank calls them; only the main process receives
the full tensors (on CPU) and writes. The weights are loaded into a plain copy of the trainable
module (a structure-only copy made on the meta device before sharding, so it holds no memory between
saves), from which the policy and its companion (value head, critic) save exactly as unsharded.
The optimizer state is saved as a full state dict keyed by parameter name
(torch.distributed.checkpoint.state_dict) and sharded again on resume.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from reft.config import ConfigError

logger = logging.getLogger(__name__)

USE_FSDP_ENV = "ACCELERATE_USE_FSDP"
"""accelerate's switch for FSDP (set by `accelerate launch` from a config with distributed_type FSDP)."""
FSDP_VERSION_ENV = "FSDP_VERSION"
"""accelerate's FSDP version variable (accelerate assumes 1 when it is unset)."""
LAYER_CLASSES_ENV = "FSDP_TRANSFORMER_CLS_TO_WRAP"
"""Comma-separated class names that each become one FSDP unit (the config's
fsdp_transformer_layer_cls_to_wrap)."""
RAM_EFFICIENT_ENV = "FSDP_CPU_RAM_EFFICIENT_LOADING"
"""When true, transformers loads weights on local rank 0 only (others on the meta device)."""


def fsdp2_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the launch asks for FSDP2; ConfigError when it asks for FSDP1 or for weights loaded
    on rank 0 only."""
    if environ.get(USE_FSDP_ENV, "false").lower() != "true":
        return False
    version = environ.get(FSDP_VERSION_ENV, "1")
    if version != "2":
        raise ConfigError(
            f"{USE_FSDP_ENV}=true with {FSDP_VERSION_ENV}={version}: reft supports FSDP2 only "
            f"(its checkpoints gather the shards); set {FSDP_VERSION_ENV}=2 (fsdp_version: 2)"
        )
    if environ.get(RAM_EFFICIENT_ENV, "false").lower() == "true":
        # Non-main ranks would hold meta tensors; reft copies rank 0's weights to all instead.
        raise ConfigError(f"{RAM_EFFICIENT_ENV}=true is not supported by reft: set it to false")
    return True


def layer_classes(module: nn.Module, environ: Mapping[str, str] = os.environ) -> set[str]:
    """Class names of the modules that become FSDP units of their own (decoder layers)."""
    named = environ.get(LAYER_CLASSES_ENV, "")
    if named:
        return {name.strip() for name in named.split(",") if name.strip()}
    found: set[str] = set()
    for child in module.modules():
        found.update(getattr(child, "_no_split_modules", None) or ())
    return found


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters are on the meta device (no memory; buffers are copied,
    they are small and include the non-persistent ones a state dict does not carry)."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in module.parameters()
    }
    return copy.deepcopy(module, memo)


def shard(module: nn.Module, classes: set[str]) -> int:
    """Make `module` an FSDP2 module in place: each module of a class in `classes` one unit, the
    root the rest. Returns the number of units. Every rank must call it (it broadcasts)."""
    from torch.distributed.fsdp import fully_shard

    _copy_rank0_state(module)
    layers = [child for child in module.modules() if type(child).__name__ in classes]
    if not layers:
        raise ValueError(f"no module of class {sorted(classes)} in {type(module).__name__}")
    for layer in layers:
        fully_shard(layer)
    fully_shard(module)
    return len(layers) + 1


def _copy_rank0_state(module: nn.Module) -> None:
    """Give every rank rank 0's weights and buffers. DDP does this when it wraps a module; FSDP2
    does not, and ranks that built different weights (a value head seeded per process) would each
    keep their slice of a different model."""
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_meta:
                raise ValueError(f"{name} is on the meta device: load real weights on every rank")
            dist.broadcast(tensor.data, src=0)


def _tie_weights(module: nn.Module) -> None:
    """Tie again what `load_state_dict(assign=True)` untied (it assigns each name its own tensor):
    a tied LM head is then saved once, as `save_pretrained` does for the unsharded model."""
    from transformers import PreTrainedModel

    for child in module.modules():
        if isinstance(child, PreTrainedModel):
            child.tie_weights()


def _full_options(*, to_main_only: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # cpu_offload: the full tensors go to CPU, on rank 0 only (the other ranks get {}).
    return StateDictOptions(full_state_dict=True, cpu_offload=to_main_only)


def gather_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded `module` (names as `module.state_dict()`), on CPU on the
    main process only ({} elsewhere). A collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_full_options(to_main_only=True))


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state dict keyed by parameter name, on the main process ({} elsewhere).
    A collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(
        model, _unwrapped(optimizer), options=_full_options(to_main_only=True)
    )


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a full, name-keyed optimizer state (`gather_optimizer_state`) into the optimizer of a
    sharded `model`: each rank keeps its shard. Every rank passes the whole state."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    if not _keyed_by_name(state):
        raise ConfigError(
            "this checkpoint's optimizer state was written without FSDP2 (keyed by position): "
            "resume it the way it was trained, without FSDP2"
        )
    set_optimizer_state_dict(
        model, _unwrapped(optimizer), state, options=_full_options(to_main_only=False)
    )


def _keyed_by_name(state: dict[str, Any]) -> bool:
    groups = state.get("param_groups") or [{}]
    return all(isinstance(key, str) for group in groups for key in group.get("params", []))


def _unwrapped(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's AcceleratedOptimizer (what the state-dict API reads)."""
    return getattr(optimizer, "optimizer", optimizer)


def submodule_path(root: nn.Module, target: Any) -> str | None:
    """The name of `target` inside `root` ("" for root itself), or None when it is not a submodule."""
    return next((name for name, child in root.named_modules() if child is target), None)


class ShardedTrainable:
    """A trainable module sharded with FSDP2, and how a checkpoint saves it whole.

    `plain` keeps the module's structure on the meta device; a save fills a fresh copy of it with
    the gathered weights and saves the policy and companion found at the same paths inside it.
    """

    def __init__(self, trainable: nn.Module, policy: nn.Module, companion: Any = None) -> None:
        """Check and sharding of `trainable` (every rank calls it); policy and companion must be
        `trainable` or modules inside it."""
        self.policy_path = submodule_path(trainable, policy)
        self.companion_path = (
            submodule_path(trainable, companion) if companion is not None else None
        )
        if self.policy_path is None or (companion is not None and self.companion_path is None):
            raise ConfigError("under FSDP2 the policy and the saved companion must be inside "
                              "the trained module")  # fmt: skip
        self.plain = meta_copy(trainable)
        self.module = trainable
        units = shard(trainable, layer_classes(trainable))
        logger.info("FSDP2: %s sharded over %d ranks in %d units",
                    type(trainable).__name__, dist.get_world_size(), units)  # fmt: skip

    def gathered(self) -> tuple[nn.Module | None, Callable[[Path], None] | None]:
        """(policy, save_extra) to save, built from the gathered weights on the main process;
        (None, None) on the others. Every rank must call it."""
        full = gather_weights(self.module)
        if not full:
            return None, None
        plain = meta_copy(self.plain)
        plain.load_state_dict(full, assign=True)
        _tie_weights(plain)
        policy = plain.get_submodule(self.policy_path)
        if self.companion_path is None:
            return policy, None
        return policy, plain.get_submodule(self.companion_path).save

    def policy_weights(self) -> dict[str, torch.Tensor]:
        """The policy's full weights on every rank (e.g. for a rollout engine). A collective."""
        return self._full_policy_state()

    @contextmanager
    def gathered_for_generation(self) -> Iterator[nn.Module]:
        """A whole, frozen, eval-mode copy of the current policy on every rank's device, for
        sampling (a snapshot: later optimizer steps do not reach it; dropped on exit). A
        collective: every rank must enter it at the same point."""
        whole = meta_copy(self.plain.get_submodule(self.policy_path))
        whole.load_state_dict(self._full_policy_state(), assign=True)
        _tie_weights(whole)
        yield whole.requires_grad_(False).eval()

    @torch.no_grad()
    def _full_policy_state(self) -> dict[str, torch.Tensor]:
        """The policy's state dict with every DTensor gathered whole (one all-gather per tensor,
        in state-dict order, so the same on every rank). Only the policy is gathered, not a
        critic beside it; a tied tensor is gathered once and stays tied in the copy."""
        from torch.distributed.tensor import DTensor

        policy = self.module.get_submodule(self.policy_path)
        whole: dict[int, torch.Tensor] = {}
        state = {}
        for name, tensor in policy.state_dict(keep_vars=True).items():
            if id(tensor) not in whole:
                plain = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
                whole[id(tensor)] = plain.detach()
            state[name] = whole[id(tensor)]
        return state

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's full state keyed by parameter name, on the main process ({} elsewhere).
        Every rank must call it."""
        return gather_optimizer_state(self.module, optimizer)
