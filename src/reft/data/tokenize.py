"""Tokenisation for training: prompt tokens masked out of the loss, EOS appended, over-length counted.

The prompt and the target are encoded separately and concatenated (as the reference does), so the
training sequence starts with exactly the tokens a model sees at generation time. That prompt is the
generation prompt (`reft.data.prompts.split_training_text`): for a P-CoT target that starts with the
program header, the plain prompt + header encoded as sampling encodes it, then the program body. The
EOS that ends the target is built into `labels` here, not recovered later from `input_ids == pad_token_id`: tokenizers
whose pad token IS the EOS token (Llama/SmolLM-style) keep the EOS in the loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from reft.data.example import CotKind, Example
from reft.data.prompts import continues_program_header, render_target, split_training_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (PyTorch's cross-entropy default ignore_index)."""


class OverlengthPolicy(str, Enum):
    """What to do with an example longer than `max_length` tokens."""

    skip = "skip"
    """Leave it out of training (counted and reported)."""
    truncate = "truncate"
    """Keep its first `max_length` tokens (the target loses its end and its EOS)."""


@dataclass(frozen=True)
class SFTFeatures:
    """One tokenised training example: prompt + target + EOS."""

    example_id: str
    input_ids: list[int]
    labels: list[int]
    """Same length as input_ids; IGNORE_INDEX on prompt tokens, the token id on target tokens."""


@dataclass
class TokenizationReport:
    """Counts of what tokenisation did, for logs and `reft data stats`."""

    total: int = 0
    kept: int = 0
    skipped_overlength: int = 0
    truncated: int = 0
    max_length: int = 0
    without_header: int = 0
    """P-CoT targets not starting with the program header: trained after the plain prompt (their
    first tokens may then differ from what sampling, which starts after the header, conditions on)."""

    def summary(self) -> str:
        header = f"; {self.without_header} without the P-CoT header" if self.without_header else ""
        return (
            f"{self.kept}/{self.total} examples kept (max_length={self.max_length}); "
            f"{self.skipped_overlength} skipped as over-length, {self.truncated} truncated{header}"
        )


def eos_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's EOS id; a tokenizer without one cannot mark where an answer ends."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token")
    return tokenizer.eos_token_id


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Prompt ids, with the tokenizer's own special tokens (e.g. Llama's BOS) as at generation."""
    return tokenizer.encode(prompt, add_special_tokens=True)


def encode_target(tokenizer: PreTrainedTokenizerBase, target: str) -> list[int]:
    """Target ids followed by EOS (no BOS or other special tokens inside the sequence)."""
    return [*tokenizer.encode(target, add_special_tokens=False), eos_token_id(tokenizer)]


def tokenize_sft(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    cot: CotKind,
    max_length: int,
    overlength: OverlengthPolicy = OverlengthPolicy.skip,
) -> tuple[list[SFTFeatures], TokenizationReport]:
    """Tokenise examples for SFT; the report counts what was skipped or truncated."""
    pairs = [(example.id, example.question, render_target(example, cot)) for example in examples]
    return tokenize_pairs(pairs, tokenizer, cot, max_length, overlength)


def tokenize_pairs(
    pairs: list[tuple[str, str, str]],
    tokenizer: PreTrainedTokenizerBase,
    cot: CotKind,
    max_length: int,
    overlength: OverlengthPolicy = OverlengthPolicy.skip,
) -> tuple[list[SFTFeatures], TokenizationReport]:
    """Tokenise (id, question, target text) triples: the generation prompt, then the rest of
    render_prompt(question) + target verbatim + EOS (`split_training_text`).

    Used for gold targets (`tokenize_sft`) and for self-sampled ones (self-training), with the same
    over-length rules.
    """
    report = TokenizationReport(total=len(pairs), max_length=max_length)
    features = []
    for item_id, question, target in pairs:
        if cot is CotKind.python and not continues_program_header(question, target):
            report.without_header += 1
        # The P-CoT header goes to the prompt side, so it carries no loss (the reference trains on it
        # after the plain prompt): it only copies the question, and sampling always supplies it.
        prompt, completion = split_training_text(question, target, cot)
        prompt_ids = encode_prompt(tokenizer, prompt)
        target_ids = encode_target(tokenizer, completion)
        input_ids = prompt_ids + target_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
        if len(input_ids) > max_length:
            if overlength is OverlengthPolicy.skip or len(prompt_ids) >= max_length:
                report.skipped_overlength += 1
                continue
            input_ids, labels = input_ids[:max_length], labels[:max_length]
            report.truncated += 1
        features.append(SFTFeatures(item_id, input_ids, labels))
    report.kept = len(features)
    if report.without_header:
        logger.warning(
            "%d P-CoT targets do not start with the program header; they are trained after the "
            "plain prompt, while sampling starts after the header",
            report.without_header,
        )
    return features, report
