"""Tiny presets and loading: sizes, special ids from the tokenizer, and checkpoints that plain
transformers reloads to identical logits (also in a process where reft cannot be imported)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from reft.models import presets
from reft.models.load import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
from reft.models.presets import PRESETS, build_tiny_model, init_tiny_checkpoint

TEXTS = [
    f"Question:\nAnn has {n} apples and buys {n + 3}.\nAnswer reasoning:\n{2 * n + 3}"
    for n in range(60)
]


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [
        ("micro-llama", 50_000, 1_000_000),
        ("tiny-llama", 2_000_000, 5_000_000),
        ("tiny-qwen2", 2_000_000, 5_000_000),
        ("small-llama", 20_000_000, 60_000_000),
    ],
)
def test_parameter_counts_are_in_range(tiny_tokenizer, preset, low, high):
    model = build_tiny_model(preset, tiny_tokenizer, seed=0)
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    assert model.config.model_type == PRESETS[preset].model_type


def test_model_takes_vocab_and_special_ids_from_the_tokenizer(tiny_tokenizer):
    model = build_tiny_model("micro-llama", tiny_tokenizer, seed=0)
    config = model.config
    assert config.vocab_size == len(tiny_tokenizer)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        tiny_tokenizer.pad_token_id,
        tiny_tokenizer.bos_token_id,
        tiny_tokenizer.eos_token_id,
    )
    assert config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert config._attn_implementation == "sdpa"


def test_pad_equal_to_eos_tokenizer_gives_that_id_to_the_model(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    model = build_tiny_model("micro-llama", tokenizer, seed=0)
    assert model.config.pad_token_id == model.config.eos_token_id == tokenizer.eos_token_id


def test_seed_fixes_the_weights_and_leaves_the_global_rng_alone(tiny_tokenizer):
    state = torch.get_rng_state()
    first = build_tiny_model("micro-llama", tiny_tokenizer, seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    again = build_tiny_model("micro-llama", tiny_tokenizer, seed=3).state_dict()
    other = build_tiny_model("micro-llama", tiny_tokenizer, seed=4).state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_unknown_preset_is_an_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="known presets: micro-llama"):
        build_tiny_model("huge-llama", tiny_tokenizer)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return init_tiny_checkpoint(
        "micro-llama", TEXTS, tmp_path_factory.mktemp("ckpt") / "micro", vocab_size=300, seed=0
    )


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(
        ["Question:\nAnn has 7 apples.", "Answer reasoning:\n12"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        return model(**batch).logits


def test_checkpoint_reloads_with_plain_transformers(checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert (model.config.pad_token_id, model.config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )
    assert model.config.vocab_size == len(tokenizer)

    rebuilt = build_tiny_model("micro-llama", tokenizer, seed=0).eval()
    assert torch.equal(_logits(model, tokenizer), _logits(rebuilt, tokenizer))
    assert torch.equal(
        _logits(load_causal_lm(str(checkpoint), device="cpu"), load_tokenizer(str(checkpoint))),
        _logits(model, tokenizer),
    )
    assert "auto_map" not in json.loads((checkpoint / "config.json").read_text())


def test_checkpoint_loads_where_reft_cannot_be_imported(checkpoint):
    script = (
        "import sys; sys.modules['reft'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"path = {str(checkpoint)!r}\n"
        "tok = AutoTokenizer.from_pretrained(path)\n"
        "model = AutoModelForCausalLM.from_pretrained(path)\n"
        "print(type(model).__name__, tok.padding_side, tok.pad_token_id, tok.eos_token_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["LlamaForCausalLM", "left", "0", "2"]


def test_existing_checkpoint_directory_is_not_overwritten(checkpoint):
    before = sorted(p.name for p in checkpoint.iterdir())
    with pytest.raises(FileExistsError):
        init_tiny_checkpoint("micro-llama", TEXTS, checkpoint, vocab_size=300)
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch, tiny_tokenizer):
    class Unsaveable:
        def save_pretrained(self, directory):
            (directory / "model.safetensors").write_bytes(b"partial")
            raise OSError("disk full")

    monkeypatch.setattr(presets, "build_tiny_model", lambda *args, **kwargs: Unsaveable())
    with pytest.raises(OSError, match="disk full"):
        init_tiny_checkpoint("micro-llama", TEXTS, tmp_path / "out", vocab_size=300)
    assert list(tmp_path.iterdir()) == []


def test_load_tokenizer_uses_eos_as_pad_when_there_is_none(tmp_path, tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token_id == loaded.eos_token_id == tiny_tokenizer.eos_token_id
    assert loaded.padding_side == "left"


def test_dtype_and_device_names():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_load_causal_lm_casts_to_the_requested_dtype(checkpoint):
    model = load_causal_lm(str(checkpoint), dtype="bfloat16", device="cpu")
    assert model.dtype is torch.bfloat16 and not model.training
