"""Load any Hugging Face causal LM and its tokenizer, by hub name or local directory.

Models go through `AutoModelForCausalLM` / `AutoTokenizer`, so the Llama, Qwen2, GPT-2, ... families
and reft's tiny presets (reft.models.presets) load the same way. Tokenizers pad on the left, as
generation needs. A tokenizer without a pad token gets its EOS token as pad: reft never infers a loss
mask or a response end from pad ids (training labels are built explicitly in reft.data.tokenize, and
response masks from the first generated EOS in reft.generation), so pad == eos is safe.

`gguf_file` is passed through to `from_pretrained` for quantised single-file checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
"""Accepted dtype names."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from a name in DTYPES (or a torch.dtype, returned as is)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda if available, else mps if available, else cpu; otherwise the named device.

    Raises ValueError for a malformed name or an accelerator this machine does not have.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"invalid device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available")
    return resolved


def load_tokenizer(
    name_or_path: str, *, gguf_file: str | None = None, **kwargs: Any
) -> PreTrainedTokenizerBase:
    """The tokenizer of `name_or_path`, padding on the left, with a pad token (its EOS if it had none).

    Raises ValueError if the tokenizer has neither a pad nor an EOS token. Extra keyword arguments go to
    `AutoTokenizer.from_pretrained`.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file, **kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer {name_or_path!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str,
    dtype: str | torch.dtype = "float32",
    device: str = "auto",
    *,
    gguf_file: str | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """A causal LM from `name_or_path` with weights in `dtype`, on `device`, in eval mode.

    Attention defaults to PyTorch's sdpa (override with attn_implementation=...). Extra keyword
    arguments go to `AutoModelForCausalLM.from_pretrained`.
    """
    from transformers import AutoModelForCausalLM

    kwargs.setdefault("attn_implementation", "sdpa")
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=resolve_dtype(dtype), gguf_file=gguf_file, **kwargs
    )
    return model.to(resolve_device(device)).eval()
