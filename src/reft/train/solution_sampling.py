"""Sampling K graded solutions to training questions, shared by offline self-training and the reward
model's training data: the sampling settings, the sampler, and de-duplication by normalised text."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reft.answers.grader import Grader
from reft.data.example import Example
from reft.evaluate.predict import QuestionResult, predict
from reft.generation.config import SamplingConfig
from reft.models.load import load_causal_lm, load_tokenizer
from reft.train.config import SelfSampledConfig


def dedup_key(text: str) -> str:
    """What two solutions must share to count as one: the text with whitespace runs collapsed."""
    return " ".join(text.split())


def first_unique(texts: Sequence[str], limit: int = 0) -> list[int]:
    """Indices of the first occurrence of each distinct text (by `dedup_key`), in order, at most
    `limit` of them (0: all)."""
    seen: set[str] = set()
    kept: list[int] = []
    for index, text in enumerate(texts):
        key = dedup_key(text)
        if key in seen:
            continue
        if limit and len(kept) == limit:
            break
        seen.add(key)
        kept.append(index)
    return kept


def sampling_settings(config: SelfSampledConfig, num_samples: int) -> SamplingConfig:
    """The sampling settings of a self-sampling trainer (reference: temperature 1, no top-k/top-p)."""
    return SamplingConfig.of(config.sampling, num_samples=num_samples)


def sample_training_solutions(
    config: SelfSampledConfig, examples: list[Example], device: torch.device, progress: str
) -> list[QuestionResult]:
    """`num_samples` graded solutions per example from `sample_model` (default: `model`)."""
    source = config.sample_model or config.model
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, dtype=config.dtype, device=str(device))
    grader = Grader.of(examples[0].answer_kind, config.cot, config.grading)
    with grader:
        return predict(
            model, tokenizer, examples, config.cot, sampling_settings(config, config.num_samples),
            grader, seed=config.seed, progress=progress,
        )  # fmt: skip
