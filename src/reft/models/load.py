"""Load any Hugging Face causal LM and its tokenizer, by hub name, local directory or GGUF file.

Models go through `AutoModelForCausalLM` / `AutoTokenizer`, so the Llama, Qwen2, GPT-2, ... families
and reft's tiny presets (reft.models.presets) load the same way. Tokenizers pad on the left, as
generation needs. A tokenizer without a pad token gets its EOS token as pad: reft never infers a loss
mask or a response end from pad ids (training labels are built explicitly in reft.data.tokenize, and
response masks from the first generated EOS in reft.generation.engine), so pad == eos is safe. A source
that cannot be loaded (no such model, no network, no weights) raises a one-line ConfigError naming it;
the commands check their model settings earlier still (reft.models.source).

GGUF (llama.cpp's single-file format, often quantised): a source ending in `.gguf` (`DIR/model.gguf`,
or `ORG/REPO/model.gguf` on the hub) is split into the directory or repository and the file name, or
the file is named with `gguf_file=`. transformers reads the config and tokenizer from the file's
metadata; reft always has the weights unpacked into dense tensors of `dtype` (`GgufConfig(dequantize=
True)`), so the model trains, and saves as a normal checkpoint, like any other. Needs the `gguf`
package (`pip install 'reft[gguf]'`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reft.config import ConfigError
from reft.manifest import verify_checkpoint
from reft.models.source import split_gguf_source

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


def _require_gguf_reader(gguf_file: str | None) -> None:
    if gguf_file is not None and importlib.util.find_spec("gguf") is None:
        raise ImportError(f"loading {gguf_file!r} needs the gguf package: pip install 'reft[gguf]'")


def _from_pretrained(load: Callable[..., Any], name_or_path: str, *args: Any, **kwargs: Any) -> Any:
    """`load(name_or_path, ...)` (a `from_pretrained`), its OSError (no such model, no network, no
    weights in the directory) or a damaged file reported as a one-line ConfigError naming it."""
    from safetensors import SafetensorError

    try:
        return load(name_or_path, *args, **kwargs)
    except SafetensorError as error:  # a damaged file in a folder written without a manifest
        raise ConfigError(
            f"model {name_or_path}: a .safetensors file in it is damaged ({error})"
        ) from error
    except OSError as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"model {name_or_path}: cannot be loaded: {first_line}") from error


def _unpacking_gguf_options() -> dict[str, Any]:
    """`from_pretrained` options that unpack every GGUF weight into a dense tensor.

    Without them, transformers keeps the weights in GGUF blocks whenever a matmul kernel is installed
    (transformers/quantizers/quantizer_gguf.py): such layers neither train nor serialise. Releases
    without `GgufConfig` always unpacked.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_tokenizer(
    name_or_path: str, *, gguf_file: str | None = None, **kwargs: Any
) -> PreTrainedTokenizerBase:
    """The tokenizer of `name_or_path`, padding on the left, with a pad token (its EOS if it had none).

    A GGUF source (see `split_gguf_source`) loads the tokenizer stored in the file. Raises ValueError
    if the tokenizer has neither a pad nor an EOS token. Extra keyword arguments go to
    `AutoTokenizer.from_pretrained`.
    """
    from transformers import AutoTokenizer

    source, gguf_file = split_gguf_source(name_or_path, gguf_file)
    _require_gguf_reader(gguf_file)
    tokenizer = _from_pretrained(
        AutoTokenizer.from_pretrained, source, gguf_file=gguf_file, **kwargs
    )
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

    A GGUF source (see `split_gguf_source`) is unpacked into dense weights and keeps no quantizer, so
    it trains and `save_pretrained` writes a plain checkpoint. A local folder with a manifest (a reft
    checkpoint) is checked against it first (CorruptCheckpointError naming the file). Attention defaults to PyTorch's sdpa
    (override with attn_implementation=...). Extra keyword arguments go to
    `AutoModelForCausalLM.from_pretrained`.
    """
    from transformers import AutoModelForCausalLM

    source, gguf_file = split_gguf_source(name_or_path, gguf_file)
    _require_gguf_reader(gguf_file)
    kwargs.setdefault("attn_implementation", "sdpa")
    if Path(source).is_dir():
        verify_checkpoint(source, "model")  # names a changed file; no-op without a manifest
    if gguf_file is not None:
        kwargs = {**_unpacking_gguf_options(), **kwargs}
    model = _from_pretrained(
        AutoModelForCausalLM.from_pretrained,
        source,
        dtype=resolve_dtype(dtype),
        gguf_file=gguf_file,
        **kwargs,
    )
    return model.to(resolve_device(device)).eval()
