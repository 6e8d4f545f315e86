"""Generation settings, kept free of torch so configs and `reft --help` load fast.

`reft.generation.engine` runs them; its docstring gives the output contract of both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from reft.config import check_ranges

SAMPLING_RANGES = {
    "temperature": "> 0", "top_k": ">= 0", "top_p": "in (0, 1]", "max_new_tokens": ">= 1",
}  # fmt: skip
"""Accepted ranges of the sampling settings: temperature 0 is not greedy decoding here, and top_k 0
/ top_p 1 turn those filters off."""


class GenerationEngine(str, Enum):
    """Which code runs the decoding; both give the `GeneratedBatch` contract of reft.generation."""

    reft = "reft"
    """reft's own decode loop: pre-allocated KV cache, shared prefill for K samples (fastest)."""
    hf = "hf"
    """transformers' `model.generate` with its dynamic KV cache (any causal LM)."""


SAMPLING_ALIASES = {
    name: f"sampling.{name}" for name in ("temperature", "top_k", "top_p", "max_new_tokens")
}
"""The flat spellings of a command's `sampling` section (`temperature=0.7` is
`sampling.temperature=0.7`); each command adds the alias of its decode batch."""


@dataclass
class SamplingSettings:
    """The `sampling` section of every command that samples (`reft train`, `self-train`,
    `rm train`, `sample`, `eval`): its settings and their defaults, defined once. The command's
    own number of samples per prompt and greedy / sampled choice complete a `SamplingConfig`."""

    temperature: float = 1.0
    """Logits are divided by this before top-k/top-p filtering and sampling (> 0; the reference's
    RL sampling: 1). Greedy decoding is not temperature 0 here."""
    top_k: int = 0
    """Keep only the k most likely tokens before sampling; 0 turns the filter off (the reference)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1 = off
    (the reference)."""
    max_new_tokens: int = 256
    """Longest response: one that has not produced EOS after this many tokens is cut (the
    reference: 700 for GSM8K-size problems)."""
    batch_size: int = 64
    """Sequences decoded together (prompts x samples)."""

    def __post_init__(self) -> None:
        check_ranges(self, {**SAMPLING_RANGES, "batch_size": ">= 1"})


@dataclass
class SamplingConfig:
    """How to sample responses; recorded with every result."""

    do_sample: bool = False
    """False: greedy decoding (temperature/top_k/top_p are then ignored). True: sample."""
    temperature: float = SamplingSettings.temperature
    """Logits are divided by this before top-k/top-p filtering and sampling (> 0)."""
    top_k: int = SamplingSettings.top_k
    """Keep only the k most likely tokens before sampling; 0 turns the filter off."""
    top_p: float = SamplingSettings.top_p
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1 = off."""
    max_new_tokens: int = SamplingSettings.max_new_tokens
    """A response that has not produced EOS after this many tokens is cut (finished=False)."""
    num_samples: int = 1
    """Responses per prompt (K); they are consecutive rows of the output."""
    batch_size: int = SamplingSettings.batch_size
    """Sequences decoded together (prompts x samples): a prompt's K samples may span two batches."""
    engine: GenerationEngine = GenerationEngine.reft
    """reft: our decode loop (fastest, plain full-attention decoders); hf: model.generate."""

    @classmethod
    def of(
        cls, settings: SamplingSettings, *, num_samples: int, do_sample: bool = True
    ) -> SamplingConfig:
        """The sampling a command's `sampling` section describes, with the command's own K and
        greedy / sampled choice."""
        return cls(
            do_sample=do_sample, temperature=settings.temperature, top_k=settings.top_k,
            top_p=settings.top_p, max_new_tokens=settings.max_new_tokens, num_samples=num_samples,
            batch_size=settings.batch_size,
        )  # fmt: skip

    def __post_init__(self) -> None:
        check_ranges(self, {**SAMPLING_RANGES, "num_samples": ">= 1", "batch_size": ">= 1"})
        if not self.do_sample and self.num_samples > 1:
            raise ValueError(
                f"greedy decoding would give num_samples={self.num_samples} identical copies; "
                "set do_sample=true or num_samples=1"
            )
        self.engine = GenerationEngine(self.engine)
