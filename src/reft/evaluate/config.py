"""Configs of `reft sample` and `reft eval` (torch-free, so `reft --help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from reft.answers.execute import DEFAULT_TIMEOUT_S
from reft.answers.rewards import DEFAULT_PARTIAL_REWARD
from reft.config import check_ranges
from reft.data.example import CotKind
from reft.generation.config import SamplingConfig
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
    max_new_tokens: int = SamplingConfig.max_new_tokens
    """Longest generated solution (the reference samples up to 700 tokens for 7B models)."""
    batch_size: int = 64
    """Sequences decoded together."""
    strict: bool = True
    """N-CoT extraction: strict (the paper's trigger, the training reward's rule) or lenient."""
    partial_reward: float = DEFAULT_PARTIAL_REWARD
    """Reward recorded for an extracted but wrong answer (0 disables)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Per-program time limit for P-CoT execution (the reference's 10 s)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required (model=PATH or --model PATH)")
        if self.model.startswith(PRESET_PREFIX):
            raise ValueError(
                f"model={self.model}: a preset is an untrained architecture that only the training "
                "commands build; give a checkpoint directory or a Hugging Face model"
            )
        check_ranges(self, {"limit": ">= 0", "timeout_s": "> 0", "partial_reward": "in [0, 1]"})


@dataclass
class SampleConfig(InferenceConfig):
    """`reft sample`: K completions per question, graded, written as JSON lines."""

    out: str = "samples.jsonl"
    """Output file: one line per question with every completion, its answer, correctness and reward."""
    do_sample: bool = True
    """True: sample with temperature/top_k/top_p; False: greedy (then num_samples must be 1)."""
    num_samples: int = 1
    """Completions per question (K)."""
    temperature: float = SamplingConfig.temperature
    """Sampling temperature, > 0 (the reference's RL sampling: 1.0); greedy is do_sample=false."""
    top_k: int = SamplingConfig.top_k
    """Top-k filter; 0 = off (the reference's RL sampling)."""
    top_p: float = SamplingConfig.top_p
    """Nucleus filter; 1 = off (the reference's RL sampling)."""

    def sampling(self) -> SamplingConfig:
        return SamplingConfig.of(
            self, num_samples=self.num_samples, batch_size=self.batch_size, do_sample=self.do_sample
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sampling()  # validates the sampling settings


@dataclass
class EvalConfig(InferenceConfig):
    """`reft eval`: greedy top-1, and with k > 0 also voting@K, pass@K and (rerank=RM) rerank@K from
    K samples."""

    out_dir: str = "runs/eval"
    """Directory for results.json, the per-question predictions and config.yaml."""
    k: int = 0
    """Samples per question for voting@K and pass@K (0: greedy top-1 only)."""
    temperature: float = SamplingConfig.temperature
    """Temperature of the K samples."""
    top_k: int = SamplingConfig.top_k
    """Top-k filter of the K samples (0 = off)."""
    top_p: float = SamplingConfig.top_p
    """Nucleus filter of the K samples (1 = off)."""
    rerank: str | None = None
    """Reward model (a `reft rm train` checkpoint) that reranks the K samples: adds rerank@K
    (needs k > 0)."""

    def greedy_sampling(self) -> SamplingConfig:
        return SamplingConfig(
            do_sample=False, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size
        )

    def k_sampling(self) -> SamplingConfig:
        return SamplingConfig.of(self, num_samples=self.k, batch_size=self.batch_size)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"k": ">= 0"})
        if self.rerank and not self.k:
            raise ValueError("rerank needs K samples to choose from: set k > 0 (e.g. --k 8)")
        self.greedy_sampling()
        if self.k:
            self.k_sampling()
