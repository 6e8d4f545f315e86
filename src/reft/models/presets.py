"""Tiny model presets for CPU runs and tests, built from scratch with a locally trained tokenizer.

A preset is a handful of architecture numbers (width, depth, heads) for a Llama- or Qwen2-style
decoder. `build_tiny_model` fills in everything that depends on the tokenizer (vocabulary size and the
pad/bos/eos ids), ties the input and output embeddings and uses PyTorch's sdpa attention.
`init_tiny_checkpoint` trains the tokenizer, builds the model and saves both as an ordinary Hugging
Face directory: `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` load it
without reft installed.

Parameter counts below are for an 800-token vocabulary (the embedding, vocab_size x hidden_size, is
counted once because it is tied); each extra 100 tokens adds 100 x hidden_size.

torch, transformers and tokenizers are imported by the builders only, so configs check preset names
(`check_preset`) without loading them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyPreset:
    """Architecture of a tiny decoder-only model; tokenizer-dependent fields are filled at build time."""

    model_type: str
    """Hugging Face `model_type`: "llama" or "qwen2" (selects the config and model classes)."""
    hidden_size: int
    """Width of the residual stream."""
    num_hidden_layers: int
    """Number of decoder blocks."""
    num_attention_heads: int
    """Query heads; head_dim = hidden_size / num_attention_heads."""
    num_key_value_heads: int
    """Key/value heads (fewer than query heads = grouped-query attention)."""
    intermediate_size: int
    """Width of the gated MLP."""
    max_position_embeddings: int = 2048
    """Longest sequence (prompt + response) the rotary embedding is set up for."""


PRESETS: dict[str, TinyPreset] = {
    # ~0.15 M parameters: for fast unit tests only.
    "micro-llama": TinyPreset("llama", 64, 2, 2, 2, 176),
    # ~0.6 M parameters: small enough for `reft demo`'s many stages on two CPU cores.
    "mini-llama": TinyPreset("llama", 128, 3, 4, 4, 344),
    # ~3.4 M parameters: the model of the generation and PPO-step benchmarks (bench/README.md).
    "tiny-llama": TinyPreset("llama", 256, 4, 4, 4, 688),
    # ~3.1 M parameters: Qwen2-style (bias on q/k/v, grouped-query attention with 2 kv heads).
    "tiny-qwen2": TinyPreset("qwen2", 256, 4, 4, 2, 688),
    # ~35 M parameters: the GPU check's model (bench/gpu_check.sh), too slow for CPU demos.
    "small-llama": TinyPreset("llama", 512, 12, 8, 4, 1408),
}
"""The registry of presets, by name."""

PRESET_PREFIX = "preset:"
"""A model setting `preset:NAME` builds preset NAME from scratch instead of loading weights."""


def check_preset(setting: str, source: str) -> None:
    """Raise ValueError if the model setting `setting` is `preset:NAME` with an unknown NAME (any
    other value passes); configs call it, so a typo fails before any work."""
    if source.startswith(PRESET_PREFIX) and source.removeprefix(PRESET_PREFIX) not in PRESETS:
        raise ValueError(
            f"{setting}={source}: unknown preset; known presets: "
            + ", ".join(PRESET_PREFIX + name for name in PRESETS)
        )


def get_preset(name: str) -> TinyPreset:
    """The preset called `name`, or ValueError listing the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_tiny_model(
    preset: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised model of `preset` whose vocabulary and special ids match `tokenizer`.

    The global torch RNG is left untouched: initialisation draws from a forked RNG seeded with `seed`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = get_preset(preset)
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs an EOS and a pad token to build a model for it")
    config = AutoConfig.for_model(
        spec.model_type,
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model


def init_tiny_checkpoint(
    preset: str, texts: Iterable[str], out_dir: str | Path, vocab_size: int = 1024, seed: int = 0
) -> Path:
    """Train a tokenizer on `texts`, build `preset` for it and save both into `out_dir`.

    The directory appears complete or not at all: everything is written to a temporary sibling
    directory first, then renamed. An existing non-empty `out_dir` is an error (FileExistsError).
    Returns `out_dir`.
    """
    from reft.models.tokenizer import train_tokenizer

    out_dir = Path(out_dir)
    get_preset(preset)  # fail on a bad name before training the tokenizer
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_model(preset, tokenizer, seed=seed)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp_dir.chmod(0o755)  # mkdtemp makes it private; the checkpoint is an ordinary directory
        tokenizer.save_pretrained(tmp_dir)
        model.save_pretrained(tmp_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir
