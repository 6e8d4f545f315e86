"""Steps 1-7 of a ReFT step: sample, score, and turn the samples into PPO training data.

    1. rollout      sample responses to the step's prompts from the current policy
    2. score        grade each response with the shared reward function (1 / partial / 0)
    3. forward      log-probs and values of the rollout policy, log-probs of the frozen reference
    4. KL           per-token KL estimate to the reference (reft.algos.kl)
    5. rewards      score on the last response token minus kl_coef x KL on every token
    6. GAE          advantages and returns (returns from the unwhitened advantages)
    7. whitening    advantages normalised over the batch's response tokens (global / local / none)

With a critic-free `estimator` (reft.train.config.Estimator), 6 is REINFORCE++'s discounted return
(then 7), or, for GRPO / Dr. GRPO / RLOO, 5-7 are one advantage per sequence from its score (minus
kl_coef x its summed KL) against the other samples of its prompt, given to each of its tokens. With
kl_placement=loss the KL stays out of the reward (the update adds it to the loss instead).

Each step is one call into `reft.algos` or the shared generation / grading code; this module only
wires them and keeps the result in one `Experience`. Sources per detail: docs/implementation_details.md.

`collect_experience` runs all seven. `collect_samples` stops before the policy+value forward of step
3 (it runs the reference forward only) and `build_experience` does steps 4-7 from given log-probs and
values: `reft.train.ppo` uses the pair when the first update's forward can stand in for the rollout's.
`AdvantageSteps` holds steps 4-7 as the config chooses them, looked up once when a trainer is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch

from reft.algos import (
    GROUP_ESTIMATORS,
    KL_ESTIMATORS,
    WHITENERS,
    gae,
    grpo_advantages,
    kl_penalized_rewards,
    reinforce_pp_returns,
    sequence_to_tokens,
)
from reft.algos.kl import KLFunction
from reft.algos.normalize import Whitener
from reft.answers.grader import Grader
from reft.data.example import CotKind, Example
from reft.data.prompts import render_generation_prompt
from reft.data.tokenize import encode_prompt
from reft.generation.backends import GatheredBackend, LocalBackend, RolloutBackend, VLLMBackend
from reft.generation.config import GenerationEngine, SamplingConfig
from reft.generation.engine import GeneratedBatch, generate_ids
from reft.models.load import resolve_dtype
from reft.models.value import ActorCritic
from reft.train.config import Estimator, KLPlacement, PPOConfig, RolloutBackendKind


class ReferenceModel(Protocol):
    """The KL reference (reft.models.value: FrozenReference or AdapterDisabledReference)."""

    def logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
        buckets: int = 1,
    ) -> torch.Tensor: ...  # fmt: skip


@dataclass
class Experience:
    """One rollout batch on this process, ready for PPO updates. N sequences, P prompt, T response."""

    sequences: torch.Tensor
    """[N, P + T] long: left-padded prompt then right-padded response."""
    attention_mask: torch.Tensor
    """[N, P + T] long: 1 on prompt and response tokens (response up to and including EOS)."""
    response_mask: torch.Tensor
    """[N, T] bool: response tokens up to and including EOS."""
    old_logprobs: torch.Tensor
    """[N, T] float: log-probs of the sampled tokens under the rollout policy."""
    ref_logprobs: torch.Tensor
    """[N, T] float: the same under the frozen reference."""
    values: torch.Tensor
    """[N, T] float: V(s_t) of the rollout value model."""
    advantages: torch.Tensor
    """[N, T] float: whitened GAE advantages, or the critic-free estimator's (0 outside the response)."""
    returns: torch.Tensor
    """[N, T] float: GAE returns = unwhitened advantages + values (0 without a critic)."""
    scores: torch.Tensor
    """[N] float: outcome rewards (1 / partial / 0)."""
    correct: torch.Tensor
    """[N] bool: whether each response's answer is right."""
    kl: torch.Tensor
    """[N, T] float: per-token KL estimate (0 outside the response)."""
    errors: list[str | None] = field(default_factory=list)
    """[N] GradeResult.error of each response (None: an answer was extracted / returned)."""
    texts: list[str] = field(default_factory=list)
    """[N] the decoded responses (EOS not part of the text), for metrics on the text itself."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in rollout / scoring (grade: its part inside `Grader.grade`) / forward (step
    3's no-grad forwards), and fused_forward when the policy+value forward was epoch 1's update
    forward instead (`reft.train.ppo`)."""

    @property
    def response_length(self) -> int:
        return self.response_mask.shape[1]


def sampling_config(config: PPOConfig) -> SamplingConfig:
    """The rollout sampling settings (reference: temperature 1, top_k 0, top_p 1)."""
    return SamplingConfig.of(config.sampling, num_samples=config.samples_per_prompt)


def make_rollout_backend(
    config: PPOConfig, policy: torch.nn.Module, model_path: str, process_index: int,
    num_processes: int, device: torch.device,
    gathered: Callable[[], AbstractContextManager[torch.nn.Module]] | None = None,
) -> RolloutBackend:  # fmt: skip
    """The backend `config.rollout_backend` names; a vLLM engine starts from `model_path`.
    `gathered`: where a sharded (FSDP2) `policy` cannot sample itself, what gives a whole copy of
    it for each rollout (`TrainingRun.generation_policy`)."""
    if config.rollout_backend is RolloutBackendKind.vllm:
        return VLLMBackend.launch(
            model_path, dtype=str(resolve_dtype(config.dtype)).removeprefix("torch."),
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            max_model_len=config.max_length + config.sampling.max_new_tokens,
            num_processes=num_processes, process_index=process_index, device=device,
        )  # fmt: skip
    engine = GenerationEngine(config.rollout_backend.value)
    if gathered is not None:
        return GatheredBackend(gathered, engine)
    return LocalBackend(policy, engine)


@dataclass
class Samples:
    """Steps 1-3 without the policy+value forward: sampled, scored, and under the reference."""

    sequences: torch.Tensor
    """[N, P + T] long: left-padded prompt then right-padded response."""
    attention_mask: torch.Tensor
    """[N, P + T] long: 1 on prompt and response tokens (response up to and including EOS)."""
    response_mask: torch.Tensor
    """[N, T] bool: response tokens up to and including EOS."""
    ref_logprobs: torch.Tensor
    """[N, T] float: log-probs of the sampled tokens under the frozen reference."""
    scores: torch.Tensor
    """[N] float: outcome rewards (1 / partial / 0)."""
    correct: torch.Tensor
    """[N] bool: whether each response's answer is right."""
    errors: list[str | None] = field(default_factory=list)
    """[N] GradeResult.error of each response (None: an answer was extracted / returned)."""
    texts: list[str] = field(default_factory=list)
    """[N] the decoded responses (EOS not part of the text)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in rollout / scoring (grade: its part inside `Grader.grade`) / forward (the
    reference's, so far)."""

    @property
    def response_length(self) -> int:
        return self.response_mask.shape[1]


@torch.no_grad()
def collect_experience(
    examples: list[Example],
    *,
    actor_critic: ActorCritic,
    reference: ReferenceModel,
    backend: RolloutBackend,
    tokenizer,
    grader: Grader,
    config: PPOConfig,
    seed: int,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    steps: AdvantageSteps | None = None,
) -> Experience:
    """Run steps 1-7 for this process's `examples` (its shard of the step's prompts).

    `autocast`: the context of the training forwards (mixed precision), so the rollout log-probs are
    computed in the precision the PPO ratio will compare them with. `steps`: steps 4-7 as the
    trainer resolved them (None: resolved from `config` here).
    """
    samples = collect_samples(
        examples, reference=reference, backend=backend, tokenizer=tokenizer, grader=grader,
        config=config, seed=seed,
    )  # fmt: skip
    started = time.perf_counter()
    with autocast():  # 3, the rest: the rollout policy's log-probs and values
        rollout = actor_critic(
            samples.sequences, samples.attention_mask, samples.response_length,
            buckets=config.length_buckets,
        )  # fmt: skip
    samples.timings["forward"] += time.perf_counter() - started
    steps = steps or AdvantageSteps.of(config)
    return build_experience(samples, rollout.logprobs, rollout.values, steps)


@torch.no_grad()
def collect_samples(
    examples: list[Example],
    *,
    reference: ReferenceModel,
    backend: RolloutBackend,
    tokenizer,
    grader: Grader,
    config: PPOConfig,
    seed: int,
) -> Samples:
    """Steps 1, 2 and the reference half of step 3 for this process's `examples`."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    generated = backend.generate(  # 1
        encode_prompts(examples, tokenizer, config.cot), sampling_config(config),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, seed=seed,
    )  # fmt: skip
    timings["rollout"] = time.perf_counter() - started

    started = time.perf_counter()
    graded = score_responses(generated, examples, tokenizer, grader)  # 2
    timings["scoring"] = time.perf_counter() - started
    timings["grade"] = graded.grade_seconds  # part of "scoring", which also decodes

    started = time.perf_counter()
    sequences = torch.cat([generated.prompt_ids, generated.response_ids], dim=1)  # 3
    attention_mask = torch.cat([generated.prompt_mask, generated.response_mask.long()], dim=1)
    length = generated.response_ids.shape[1]
    ref_logprobs = reference.logprobs(sequences, attention_mask, length, config.length_buckets)
    timings["forward"] = time.perf_counter() - started
    return Samples(
        sequences=sequences, attention_mask=attention_mask, response_mask=generated.response_mask,
        ref_logprobs=ref_logprobs, scores=graded.scores, correct=graded.correct,
        errors=graded.errors, texts=graded.texts, timings=timings,
    )  # fmt: skip


@torch.no_grad()
def build_experience(
    samples: Samples, old_logprobs: torch.Tensor, values: torch.Tensor, steps: AdvantageSteps
) -> Experience:
    """Steps 4-7 from the rollout policy's [N, T] log-probs and values of `samples` (no graph kept).

    With global whitening every process must call this at the same point (it all-reduces).
    """
    mask = samples.response_mask
    kl = steps.kl(old_logprobs, samples.ref_logprobs) * mask  # 4
    scores = samples.scores.to(kl.device)
    advantages, returns = steps.estimate(scores, kl, values, mask, steps)  # 5-7
    return Experience(
        sequences=samples.sequences, attention_mask=samples.attention_mask, response_mask=mask,
        old_logprobs=old_logprobs, ref_logprobs=samples.ref_logprobs, values=values,
        advantages=advantages, returns=returns, scores=samples.scores, correct=samples.correct,
        kl=kl, errors=samples.errors, texts=samples.texts, timings=dict(samples.timings),
    )  # fmt: skip


def _reward_kl_coef(config: PPOConfig) -> float:
    """kl_coef where the KL is part of the reward; 0 where the update adds it to the loss."""
    return config.kl_coef if config.kl_placement is KLPlacement.reward else 0.0


def _gae_advantages(
    scores, kl, values, mask, steps: AdvantageSteps
) -> tuple[torch.Tensor, torch.Tensor]:
    """ReFT's PPO: steps 5 (rewards), 6 (GAE with the critic's values) and 7 (whitening)."""
    config = steps.config
    rewards = kl_penalized_rewards(scores, kl, _reward_kl_coef(config), mask)  # 5
    advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)  # 6
    return steps.whiten(advantages, mask), returns  # 7


def _reinforce_pp_advantages(scores, kl, values, mask, steps: AdvantageSteps):
    """REINFORCE++: the discounted return itself, no baseline but the whitening; no critic."""
    rewards = kl_penalized_rewards(scores, kl, _reward_kl_coef(steps.config), mask)
    advantages = reinforce_pp_returns(rewards, mask, steps.config.gamma)
    return steps.whiten(advantages, mask), torch.zeros_like(values)


def _group_token_advantages(scores, kl, values, mask, steps: AdvantageSteps):
    """GRPO / Dr. GRPO / RLOO: one advantage per sequence (its score minus kl_coef x its summed KL,
    against its prompt's other samples) given to each of its tokens; no whitening, no critic."""
    config = steps.config
    advantages = group_advantages(scores - _reward_kl_coef(config) * kl.sum(dim=1), config)
    return sequence_to_tokens(advantages, mask), torch.zeros_like(values)


AdvantageEstimator = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "AdvantageSteps"],
    tuple[torch.Tensor, torch.Tensor],
]
"""(scores [N], kl [N, T], values [N, T], response mask [N, T], steps) -> (advantages, returns),
both [N, T]; returns are zeros where no critic is trained."""

ADVANTAGE_ESTIMATORS: dict[Estimator, AdvantageEstimator] = {
    Estimator.gae: _gae_advantages,
    Estimator.reinforce_pp: _reinforce_pp_advantages,
    Estimator.grpo: _group_token_advantages,
    Estimator.dr_grpo: _group_token_advantages,
    Estimator.rloo: _group_token_advantages,
}
"""Steps 5-7 per `config.estimator`."""


@dataclass(frozen=True)
class AdvantageSteps:
    """Steps 4-7 as a PPOConfig chooses them, each function looked up once (`of`), when the
    trainer is built, instead of on every step."""

    config: PPOConfig
    kl: KLFunction
    """Step 4: the per-token KL estimator (`config.kl_estimator`)."""
    estimate: AdvantageEstimator
    """Steps 5-7: the advantage estimator (`config.estimator`)."""
    whiten: Whitener
    """Step 7 of gae and reinforce_pp: the whitening (`config.whitening`)."""

    @classmethod
    def of(cls, config: PPOConfig) -> AdvantageSteps:
        return cls(config, KL_ESTIMATORS[config.kl_estimator.value],
                   ADVANTAGE_ESTIMATORS[config.estimator], WHITENERS[config.whitening.value])  # fmt: skip


def group_advantages(scores: torch.Tensor, config: PPOConfig) -> torch.Tensor:
    """[N] advantages of a group estimator; rows are prompt-major (each prompt's samples_per_prompt
    responses together, as generated), and every group lies on one process (prompts are sharded
    whole), so the group statistics never need another process's rows."""
    group_ids = torch.arange(len(scores), device=scores.device) // config.samples_per_prompt
    if config.estimator is Estimator.grpo:
        return grpo_advantages(scores, group_ids, scale_by_std=config.group_std)
    return GROUP_ESTIMATORS[config.estimator.value](scores, group_ids)


def rollout_seed(seed: int, step: int, num_processes: int, process_index: int) -> int:
    """The sampling seed of one process at one step: distinct per (seed, step, process)."""
    return (seed * 1_000_003 + step) * num_processes + process_index


def encode_prompts(examples: list[Example], tokenizer, cot: CotKind) -> list[list[int]]:
    """The generation prompt of each example, as token ids."""
    return [encode_prompt(tokenizer, render_generation_prompt(e.question, cot)) for e in examples]


def sample_responses(
    policy: torch.nn.Module,
    examples: list[Example],
    tokenizer,
    sampling: SamplingConfig,
    cot: CotKind,
    seed: int,
) -> GeneratedBatch:
    """Sample `sampling.num_samples` responses per example, continuing its generation prompt."""
    return generate_ids(
        policy, encode_prompts(examples, tokenizer, cot), sampling,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, seed=seed,
    )  # fmt: skip


@dataclass
class ResponseGrades:
    """Step 2's result for N responses, in rollout order."""

    scores: torch.Tensor
    """[N] float: outcome rewards (1 / partial / 0)."""
    correct: torch.Tensor
    """[N] bool: whether each response's answer is right."""
    errors: list[str | None]
    """[N] GradeResult.error of each response (reft.answers.grading_stats counts them)."""
    texts: list[str]
    """[N] the decoded responses that were graded."""
    grade_seconds: float
    """Seconds inside `Grader.grade` (for P-CoT: waiting for the sandboxed programs), without
    decoding the responses."""


def score_responses(
    generated: GeneratedBatch, examples: list[Example], tokenizer, grader: Grader
) -> ResponseGrades:
    """Grades of the decoded responses (EOS not part of the text)."""
    texts = []
    for row in range(generated.response_ids.shape[0]):
        ids = generated.response_ids[row][generated.response_mask[row]]
        if generated.finished[row]:
            ids = ids[:-1]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    golds = [example.answer for example in examples for _ in range(generated.num_samples)]
    started = time.perf_counter()
    grades = grader.grade(texts, golds)
    return ResponseGrades(
        scores=torch.tensor([grade.reward for grade in grades], dtype=torch.float32),
        correct=torch.tensor([grade.correct for grade in grades]),
        errors=[grade.error for grade in grades],
        texts=texts,
        grade_seconds=time.perf_counter() - started,
    )
