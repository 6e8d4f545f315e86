"""Load the model a trainer starts from: a checkpoint being resumed, a HF model (hub name, local
directory or GGUF file, see reft.models.load), or a tiny preset."""

from __future__ import annotations

import logging
import shutil
from typing import Any

import torch

from reft.data.example import Example
from reft.data.loaders import load_dataset
from reft.data.prompts import render_prompt, render_target
from reft.models.load import load_causal_lm, load_tokenizer
from reft.models.presets import PRESET_PREFIX, init_tiny_checkpoint
from reft.train.config import TrainConfig
from reft.train.loop import TrainingRun
from reft.train.zero import plain_construction

logger = logging.getLogger(__name__)

TOKENIZER_CHARS_PER_TOKEN = 16
"""A preset's tokenizer is trained on each text's first max_length x this many characters only:
BPE training time grows with the square of a word's length (a 100,000-character word takes seconds,
a 10 MB one hours). A training example keeps at most max_length tokens (a longer one is skipped or
truncated), and a token is hardly ever longer than 16 characters, so the cut text is never trained."""


def load_training_model(run: TrainingRun, examples: list[Example]) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) to train: resumed weights, `config.model` (any source `load_causal_lm`
    takes, a `.gguf` file included: its weights come unpacked), or a fresh preset.

    A `preset:NAME` model gets a tokenizer trained on the prompts and gold solutions of `examples`
    (or of `config.preset_tokenizer_data`); the initial checkpoint is written to `out_dir/init` by
    the main process (others wait for it); every process then loads it (under ZeRO-3 partitioned).
    """
    config = run.config
    source = run.model_source()
    if source.startswith(PRESET_PREFIX):
        init_dir = run.out_dir / "init"
        if run.is_main:
            shutil.rmtree(init_dir, ignore_errors=True)
            if config.preset_tokenizer_data:
                examples = load_dataset(config.preset_tokenizer_data)
            with plain_construction():  # built by this process alone, even under ZeRO-3
                init_tiny_checkpoint(
                    source.removeprefix(PRESET_PREFIX),
                    preset_tokenizer_texts(examples, config),
                    init_dir,
                    config.preset_vocab_size,
                    config.seed,
                )
            logger.info("built %s from scratch in %s", source, init_dir)
        run.accelerator.wait_for_everyone()
        source = str(init_dir)
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, dtype=config.dtype, device=str(run.device))
    return model, tokenizer


def preset_tokenizer_texts(examples: list[Example], config: TrainConfig) -> list[str]:
    """The texts a preset's tokenizer is trained on: each example's prompt and gold solution, cut to
    max_length x TOKENIZER_CHARS_PER_TOKEN characters."""
    limit = config.max_length * TOKENIZER_CHARS_PER_TOKEN
    return [(render_prompt(e.question) + render_target(e, config.cot))[:limit] for e in examples]
