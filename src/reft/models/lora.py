"""Memory savers for large policies: LoRA adapters (peft extra) and gradient checkpointing.

LoRA (`lora=true`):
- `attach_lora` injects adapters into the policy IN PLACE and freezes every base weight; the policy
  object stays the Hugging Face model that generation, evaluation and the PPO forward call, and its
  forward now includes the adapters.
- The SFT reference of ReFT is the same model with its adapters switched off (`AdapterDisabledReference`
  in reft.models.value, through peft's `disable_adapter()`): no second copy of the weights. This is
  exact only while the base weights never change, which LoRA guarantees (they are frozen).
- Checkpoints stay plain Hugging Face models: `MergedExport.save_pretrained` writes W + (alpha / r) B A
  computed out of place (the live base weights are never merged and unmerged, which would round them
  and move the reference). The adapter itself goes to `lora/` beside it (`LoraAdapterFiles`), which
  is what a resumed run loads on top of the base model it started from.

Gradient checkpointing (`gradient_checkpointing=true`): transformers' non-reentrant checkpointing of
each decoder layer. Hugging Face only checkpoints layers in training mode; PPO keeps every network in
eval mode (dropout off, as the reference), so `reft.models.value` switches just the checkpointed
layers' own flag on around a training forward (their dropout-carrying children stay in eval mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from reft.train.config import TrainConfig

ADAPTER_DIR = "lora"
"""Where a checkpoint keeps the adapter weights (peft format) for resuming."""
ADAPTER_NAME = "default"
"""peft's name of the one adapter reft trains."""


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "lora=true needs peft: pip install 'reft[peft]' (or pip install peft)"
        ) from error
    return peft


def attach_lora(model: nn.Module, config: TrainConfig) -> Any:
    """Inject LoRA adapters into the causal LM `model` in place; returns the wrapping `PeftModel`.

    Every parameter of `model` but the adapters' is frozen. `model` keeps working as before
    (its forward includes the adapters); the returned PeftModel gives `disable_adapter()` and saving.
    Raises ValueError for a model without an LM head (a classifier's head would stay frozen).
    """
    peft = _import_peft()
    if model.get_output_embeddings() is None:
        raise ValueError(
            f"lora=true supports causal LMs only; {type(model).__name__} has no LM head"
        )
    lora_config = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, lora_config, adapter_name=ADAPTER_NAME)


def merged_state_dict(peft_model: Any) -> dict[str, torch.Tensor]:
    """The policy's weights with the adapters folded in, under the base model's own keys.

    Each adapted layer's weight is W + delta (peft's `get_delta_weight`), computed into a new tensor:
    the live base weights (the reference) are left bit-identical.
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.save_and_load import get_base_model_state_dict

    state = get_base_model_state_dict(peft_model)
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A:
            key = f"{name}.weight"
            delta = module.get_delta_weight(ADAPTER_NAME)
            state[key] = (state[key] + delta.to(state[key].dtype)).detach()
    return state


class MergedExport:
    """What a checkpoint writes for a LoRA policy: `save_pretrained` gives a plain HF model directory
    (merged weights, no adapter keys) that `AutoModelForCausalLM.from_pretrained` loads without peft."""

    def __init__(self, peft_model: Any) -> None:
        self.peft_model = peft_model

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        base = self.peft_model.get_base_model()
        base.save_pretrained(directory, state_dict=merged_state_dict(self.peft_model), **kwargs)


class LoraAdapterFiles:
    """Saves and restores the adapter weights in `lora/` of a checkpoint (a `Companion` of the run)."""

    def __init__(self, peft_model: Any) -> None:
        self.peft_model = peft_model

    def save(self, directory: str | Path) -> None:
        self.peft_model.save_pretrained(Path(directory) / ADAPTER_DIR, safe_serialization=True)

    def load(self, directory: str | Path) -> None:
        from peft.utils.save_and_load import load_peft_weights, set_peft_model_state_dict

        path = Path(directory) / ADAPTER_DIR
        if not path.is_dir():
            raise FileNotFoundError(f"{path} not found: {directory} holds no LoRA adapter")
        device = next(self.peft_model.parameters()).device
        weights = load_peft_weights(str(path), device=str(device))
        result = set_peft_model_state_dict(self.peft_model, weights, adapter_name=ADAPTER_NAME)
        missing = [key for key in result.missing_keys if "lora_" in key]
        if missing:
            raise ValueError(f"{path} lacks adapter weights: {missing[:3]} ...")


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """Turn on non-reentrant gradient checkpointing in every Hugging Face model inside `module`.

    Returns the number of outermost models it was enabled on (a causal LM counts once, its base
    model inside it included); raises ValueError when none supports it.
    """
    from transformers import PreTrainedModel

    models: list[PreTrainedModel] = []
    covered: set[int] = set()  # modules inside a model already listed (a causal LM's base model)
    for child in module.modules():
        outermost = isinstance(child, PreTrainedModel) and id(child) not in covered
        if outermost and child.supports_gradient_checkpointing:
            models.append(child)
            covered.update(id(inner) for inner in child.modules())
    if not models:
        raise ValueError(f"no model inside {type(module).__name__} supports gradient checkpointing")
    for model in models:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    return len(models)
