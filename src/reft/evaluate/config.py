"""Configs of `reft sample` and `reft eval` (torch-free, so `reft --help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reft.answers.grader import GRADING_ALIASES, GradingSettings
from reft.config import check_ranges
from reft.data.example import CotKind
from reft.generation.config import SAMPLING_ALIASES, SamplingConfig, SamplingSettings
from reft.models.presets import PRESET_PREFIX


@dataclass
class InferenceConfig:
    """What every inference command needs: a model, a dataset, and how to grade."""

    model: str = ""
    """Model to generate with: a Hugging Face name or path, or a reft checkpoint directory."""
    dataset: str = "synth:test"
    """Questions: a .json/.jsonl file, synth:SPLIT[:N] or hf:NAME[:CONFIG]:SPLIT."""
    cot: CotKind = CotKind.nl
    """Chain-of-thought kind the model writes: nl (N-CoT) or python (P-CoT)."""
    limit: int = 0
    """Use only the first `limit` questions (0: all)."""
    seed: int = 0
    """Sampling seed; the same seed gives the same samples on CPU."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """How solutions are generated: `max_new_tokens` and `batch_size` (sequences decoded
    together) for every decode; temperature, top_k and top_p for sampled ones."""
    strict: bool = True
    """N-CoT extraction: strict (the paper's trigger, the training reward's rule) or lenient."""
    grading: GradingSettings = field(default_factory=GradingSettings)
    """The reward recorded for an extracted but wrong answer, and the P-CoT program time limit."""

    ALIASES: ClassVar[dict[str, str]] = {
        **SAMPLING_ALIASES, "batch_size": "sampling.batch_size", **GRADING_ALIASES,
    }  # fmt: skip
    """Flat spellings of the sections' settings (reft.config.aliases_of)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required (model=PATH or --model PATH)")
        if self.model.startswith(PRESET_PREFIX):
            raise ValueError(
                f"model={self.model}: a preset is an untrained architecture that only the training "
                "commands build; give a checkpoint directory or a Hugging Face model"
            )
        check_ranges(self, {"limit": ">= 0"})


@dataclass
class SampleConfig(InferenceConfig):
    """`reft sample`: K completions per question, graded, written as JSON lines."""

    out: str = "samples.jsonl"
    """Output file: one line per question with every completion, its answer, correctness and reward."""
    do_sample: bool = True
    """True: sample with temperature/top_k/top_p; False: greedy (then num_samples must be 1)."""
    num_samples: int = 1
    """Completions per question (K)."""

    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig.of(
            self.sampling, num_samples=self.num_samples, do_sample=self.do_sample
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sampling_config()  # validates do_sample against num_samples


@dataclass
class EvalConfig(InferenceConfig):
    """`reft eval`: greedy top-1, and with k > 0 also voting@K, pass@K and (rerank=RM) rerank@K from
    K samples."""

    out_dir: str = "runs/eval"
    """Directory for results.json, the per-question predictions and config.yaml."""
    k: int = 0
    """Samples per question for voting@K and pass@K (0: greedy top-1 only), drawn with the
    sampling section's temperature, top_k and top_p."""
    rerank: str | None = None
    """Reward model (a `reft rm train` checkpoint) that reranks the K samples: adds rerank@K
    (needs k > 0)."""

    def greedy_sampling(self) -> SamplingConfig:
        return SamplingConfig(
            do_sample=False,
            max_new_tokens=self.sampling.max_new_tokens,
            batch_size=self.sampling.batch_size,
        )

    def k_sampling(self) -> SamplingConfig:
        return SamplingConfig.of(self.sampling, num_samples=self.k)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"k": ">= 0"})
        if self.rerank and not self.k:
            raise ValueError("rerank needs K samples to choose from: set k > 0 (e.g. --k 8)")
        self.greedy_sampling()
        if self.k:
            self.k_sampling()
