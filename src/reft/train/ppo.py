"""ReFT's PPO stage (`reft train`): the policy starts from the SFT warm-up, a frozen copy of it is the
KL reference, a value head (or a separate critic) supplies the baseline, and the only reward is whether
the final answer is right.

One training step = steps 1-7 in `rollout.collect_experience` (sample, score, forward, KL, rewards,
GAE, whitening), then step 8 here: `ppo_epochs` passes of mini-batch updates with the clipped policy
surrogate and the clipped value loss, dropout off (the value model keeps every network in eval mode).
Deviations from the reference code are listed in docs/implementation_details.md.

Critic-free estimators (`estimator=grpo|dr_grpo|rloo|reinforce_pp`, reft.train.config.Estimator):
the same clipped policy update, with the estimator's advantages (reft.train.rollout) and no value
model at all (reft.models.value.PolicyOnly: nothing built, trained or checkpointed beside the
policy); `kl_placement=loss` adds kl_coef x the aggregated KL (k3 for GRPO) to the loss instead of
the reward; `loss_aggregation=token_sum_constant` is Dr. GRPO's constant normaliser.

Fused first forward (`fuses_first_forward`): when each process's rollout is one mini-batch of one
micro-batch, the rollout's separate no-grad policy+value forward is skipped and epoch 1's update
forward supplies the old log-probs and values; metrics then show `time_forward` (the reference's
forward only) and `time_fused_forward` (that shared forward, part of `time_update`).

Grading: `time_grade` is the part of `time_scoring` spent inside the grader (for P-CoT, waiting for
the sandboxed programs; `time_scoring` also decodes the responses); P-CoT steps log
`programs_per_s`, the step's programs over all processes per second of (mean) `time_grade`. Every
step logs `error_<kind>`, the share of its responses that ended in each error kind
(reft.answers.grading_stats), so a policy that learns to crash or to probe the sandbox shows.
On multiple-choice N-CoT data whose questions carry numeric option values (MathQA, the synthetic
task with `choices`), every step also logs `hacked_reward_rate`, `no_number_rate` and
`reasoning_accuracy` (reft.answers.hacking): how often the reward paid for reasoning that computes
another number than the option it names, the paper's MathQA finding. Other data logs none of them.

Across processes (docs/scaling.md): each process rolls out its shard of the step's prompts; whitening
is global by default; a mini-batch is `mini_batch_size / processes` rows of every process, and the
loss weights are normalised by the GLOBAL mini-batch (sequences, or tokens for token_mean), so N
processes take the step one process would on the same mini-batch. With one mini-batch per PPO epoch
the partition is the same for any process count (tests/test_distributed.py checks it); with several,
each process draws its own rows, a different but equally random partition.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import torch

from reft.algos import (
    KL_ESTIMATORS,
    LOSS_AGGREGATORS,
    approx_kl_k1,
    approx_kl_k3,
    clip_fraction,
    explained_variance,
    explained_variance_over_processes,
    masked_mean,
    ppo_policy_loss,
    token_sum_constant,
    value_clip_fraction,
    value_loss,
)
from reft.algos.losses import LossAggregator
from reft.answers.grader import Grader
from reft.answers.grading_stats import error_shares, programs_per_second
from reft.answers.hacking import HackingCounts, example_hacking_counts, tracks_hacking
from reft.data.example import CotKind
from reft.generation.backends import RolloutBackend
from reft.models.load import load_causal_lm
from reft.models.value import (
    VALUE_MODELS,
    AdapterDisabledReference,
    FrozenReference,
    PolicyValueOutput,
)
from reft.train.batching import global_batch, shard, step_counts
from reft.train.config import KLPlacement, LossAggregation, PPOConfig, ValueModelKind
from reft.train.data import load_train_and_dev
from reft.train.dev import make_dev_evaluator
from reft.train.loop import RunState, TrainingRun
from reft.train.model_setup import load_training_model
from reft.train.rollout import (
    AdvantageSteps,
    Experience,
    ReferenceModel,
    Samples,
    build_experience,
    collect_experience,
    collect_samples,
    make_rollout_backend,
    rollout_seed,
)

logger = logging.getLogger(__name__)


LOSS_AGGREGATIONS: dict[LossAggregation, Callable[[PPOConfig], LossAggregator]] = {
    LossAggregation.seq_mean_token_mean: lambda _: LOSS_AGGREGATORS["seq_mean_token_mean"],
    LossAggregation.token_mean: lambda _: LOSS_AGGREGATORS["token_mean"],
    # Dr. GRPO's constant normaliser is the longest possible response.
    LossAggregation.token_sum_constant: lambda config: functools.partial(
        token_sum_constant, normalizer=config.sampling.max_new_tokens
    ),
}
"""`config.loss_aggregation` -> the (per-token loss, mask) -> scalar function it configures."""


def loss_aggregator(config: PPOConfig) -> LossAggregator:
    """(per-token loss, mask) -> one number, as `config.loss_aggregation` says."""
    return LOSS_AGGREGATIONS[config.loss_aggregation](config)


def fuses_first_forward(config: PPOConfig, num_processes: int) -> bool:
    """Whether epoch 1's update forward can stand in for the rollout's policy+value forward.

    True when each process's rollout rows are one mini-batch of one micro-batch: epoch 1's only
    forward then runs before any optimizer step (at the rollout's weights), on the same sequences,
    in the same eval mode and autocast, so its detached log-probs and values ARE the old log-probs
    and values (TRL's GRPO does the same when it updates once per rollout: grpo_trainer.py
    `old_per_token_logps = per_token_logps.detach()`). With several micro-batches every graph would
    have to be kept until whitening has seen the whole batch. Saves one forward of the rollout batch
    per step (bench/README.md).
    """
    rollouts = config.batch_size * config.samples_per_prompt
    return config.mini_batch_size == rollouts == config.micro_batch_size * num_processes


class PPOUpdate:
    """Step 8: `ppo_epochs` passes of clipped-surrogate + clipped-value updates over mini-batches."""

    def __init__(self, run: TrainingRun, config: PPOConfig) -> None:
        self.run = run
        self.config = config
        self.aggregate = loss_aggregator(config)
        self.critic = config.estimator.uses_critic
        self.kl_loss = config.kl_placement is KLPlacement.loss
        self.kl_estimator = KL_ESTIMATORS[config.kl_estimator.value]
        self.advantage_steps = AdvantageSteps.of(config)
        """Steps 4-7 of every step's experience, resolved here once."""
        self.by_tokens = config.loss_aggregation is LossAggregation.token_mean
        self.train_policy = True
        """False during critic_warmup_steps: the policy loss is left out of the backward."""
        self._given_forward: PolicyValueOutput | None = None
        """Set by `fused`: epoch 1's forward of all rows, taken by the first micro-batch instead of
        running its own (see `_forward_of`)."""
        self.local_mini = config.mini_batch_size // run.num_processes
        if config.mini_batch_size % run.num_processes:
            raise ValueError(f"mini_batch_size {config.mini_batch_size} does not split over "
                             f"{run.num_processes} processes")  # fmt: skip

    def __call__(self, experience: Experience, step: int) -> dict[str, float]:
        """Update on `experience`; returns the mean losses and diagnostics over all mini-batches."""
        rows = experience.sequences.shape[0]
        self.train_policy = step >= self.config.critic_warmup_steps
        totals: dict[str, float] = {}
        updates = 0
        for order in self._orders(rows, step):
            for start in range(0, rows, self.local_mini):
                minibatch = order[start : start + self.local_mini]
                stats = self._minibatch(experience, minibatch)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                updates += 1
        return {key: value / max(updates, 1) for key, value in totals.items()}

    def fused(self, samples: Samples, step: int) -> tuple[Experience, dict[str, float]]:
        """Steps 4-8 when `fuses_first_forward`: epoch 1's forward (with grad, all rows in epoch 1's
        order), steps 4-7 from its detached log-probs and values put back in rollout order, then the
        epochs, the first reusing its graph."""
        started = time.perf_counter()
        order = self._orders(samples.sequences.shape[0], step)[0]
        out = self._forward(
            samples.sequences[order], samples.attention_mask[order], samples.response_length
        )
        forward_seconds = time.perf_counter() - started
        back = torch.argsort(order)
        experience = build_experience(
            samples, out.logprobs.detach()[back], out.values.detach()[back], self.advantage_steps
        )
        experience.timings["fused_forward"] = forward_seconds
        self._given_forward = out
        return experience, self(experience, step)

    def _orders(self, rows: int, step: int) -> list[torch.Tensor]:
        """The row order of each PPO epoch at `step` (a fresh shuffle per epoch, seeded by step)."""
        generator = torch.Generator().manual_seed(self.config.seed * 7_919 + step)
        return [torch.randperm(rows, generator=generator) for _ in range(self.config.ppo_epochs)]

    def _forward(
        self, sequences: torch.Tensor, attention_mask: torch.Tensor, response_length: int
    ) -> PolicyValueOutput:
        """The update forward (with grad, under the training autocast) of [B, P + T] sequences."""
        with self.run.accelerator.autocast():
            return self.run.model(
                sequences, attention_mask, response_length, with_entropy=True,
                buckets=self.config.length_buckets,
            )  # fmt: skip

    def _forward_of(self, experience: Experience, rows: torch.Tensor) -> PolicyValueOutput:
        """The update forward of `rows`: the one `fused` gave (once, for epoch 1's only micro-batch,
        which holds every row in that order), else a fresh one."""
        given, self._given_forward = self._given_forward, None
        if given is not None:
            assert given.logprobs.shape[0] == len(rows), "a given forward covers one micro-batch"
            return given
        return self._forward(
            experience.sequences[rows], experience.attention_mask[rows], experience.response_length
        )

    def _minibatch(self, experience: Experience, rows: torch.Tensor) -> dict[str, float]:
        """One optimizer step on `rows`."""
        run, config = self.run, self.config
        micro = [
            rows[i : i + config.micro_batch_size]
            for i in range(0, len(rows), config.micro_batch_size)
        ]
        mask = experience.response_mask
        mini_size = self._global_mini_size(mask, rows) / run.num_processes
        stats: dict[str, float] = {}
        for index, chunk in enumerate(micro):
            # Weight each micro-batch by its share of the GLOBAL mini-batch (x processes, since the
            # gradient all-reduce averages), so the sum is the mini-batch's aggregate.
            weight = (float(mask[chunk].sum()) if self.by_tokens else float(len(chunk))) / mini_size
            with run.micro_batch(last=index == len(micro) - 1):
                out = self._forward_of(experience, chunk)
                chunk_stats = self._loss_and_backward(experience, chunk, out, weight)
            for key, value in chunk_stats.items():
                stats[key] = stats.get(key, 0.0) + value * weight
        stats["grad_norm"] = run.clip_and_step()
        return stats

    def _global_mini_size(self, mask: torch.Tensor, rows: torch.Tensor) -> float:
        """Sequences (or response tokens, for token_mean) in the mini-batch, over all processes."""
        if not self.by_tokens:
            return float(len(rows) * self.run.num_processes)
        tokens = mask[rows].sum().to(device=self.run.device, dtype=torch.float64)
        return float(self.run.accelerator.reduce(tokens, "sum"))

    def _loss_and_backward(
        self, experience: Experience, rows: torch.Tensor, out: PolicyValueOutput, weight: float
    ) -> dict[str, float]:
        """Backward of `weight` x the loss of `rows`, given their update forward `out`."""
        config = self.config
        mask = experience.response_mask[rows]
        old_logprobs, advantages = experience.old_logprobs[rows], experience.advantages[rows]
        old_values, returns = experience.values[rows], experience.returns[rows]
        pg = self.aggregate(
            ppo_policy_loss(out.logprobs, old_logprobs, advantages, mask, config.clip_range), mask
        )
        loss = pg if self.train_policy else 0.0  # critic warm-up: no policy loss
        stats = {"policy_loss": pg.item()}
        if self.critic:
            vf = self.aggregate(
                value_loss(out.values, old_values, returns, mask, config.clip_range_value), mask
            )
            loss = loss + config.vf_coef * vf
            stats["value_loss"] = vf.item()
            stats["value_clip_fraction"] = value_clip_fraction(
                out.values.detach(), old_values, returns, mask, config.clip_range_value
            ).item()
        if self.kl_loss:  # GRPO: the KL to the reference as a loss term, with its gradient
            # Off the response the reference is set equal to the policy: padding's arbitrary
            # log-probs could overflow k3's exp into a NaN gradient, even though they are masked.
            ref = torch.where(mask.bool(), experience.ref_logprobs[rows], out.logprobs.detach())
            kl = self.aggregate(self.kl_estimator(out.logprobs, ref), mask)
            loss = loss + config.kl_coef * kl
            stats["kl_loss"] = kl.item()
        self.run.accelerator.backward(loss * weight)
        with torch.no_grad():
            return stats | {
                "entropy": masked_mean(out.entropy, mask).item(),
                "approx_kl": approx_kl_k1(out.logprobs, old_logprobs, mask).item(),
                "approx_kl_k3": approx_kl_k3(out.logprobs, old_logprobs, mask).item(),
                "clip_fraction": clip_fraction(
                    out.logprobs, old_logprobs, advantages, mask, config.clip_range
                ).item(),
            }


class PPOStep:
    """One ReFT step: collect experience for the step's prompts (steps 1-7), then update (step 8)."""

    def __init__(self, run: TrainingRun, config: PPOConfig, examples: list, reference: ReferenceModel,
                 backend: RolloutBackend, grader: Grader) -> None:  # fmt: skip
        self.run, self.config, self.examples = run, config, examples
        self.reference, self.backend, self.grader = reference, backend, grader
        self.update = PPOUpdate(run, config)
        self.tracks_hacking = tracks_hacking(examples, config.cot)
        fused = fuses_first_forward(config, run.num_processes)
        self._collect_and_update = self._fused_steps if fused else self._separate_steps

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.config
        started = time.perf_counter()
        indices = global_batch(len(self.examples), config.batch_size, config.seed, step)
        local = [
            self.examples[i]
            for i in shard(indices, run.accelerator.process_index, run.num_processes)
        ]
        seed = rollout_seed(config.seed, step, run.num_processes, run.accelerator.process_index)
        experience, losses = self._collect_and_update(local, seed, step)
        sync_started = time.perf_counter()
        self.backend.sync_weights(run.policy_weights)  # a no-op unless the backend holds a copy
        timings = {**experience.timings, "sync": time.perf_counter() - sync_started}
        metrics = self._rollout_metrics(experience) | losses
        metrics |= {f"time_{key}": value for key, value in timings.items()}
        metrics = self._mean_over_processes(metrics)
        if config.cot is CotKind.python:
            programs = experience.sequences.shape[0] * run.num_processes
            metrics["programs_per_s"] = programs_per_second(programs, metrics["time_grade"])
        if self.config.estimator.uses_critic:
            metrics["explained_variance"] = self._explained_variance(experience)
        if self.tracks_hacking:
            metrics |= self._hacking_metrics(local, experience)
        (tokens,) = self.run.sum_over_processes([experience.response_mask.sum().item()])
        metrics["tokens_per_s"] = tokens / (time.perf_counter() - started)
        return metrics

    def _fused_steps(
        self, local: list, seed: int, step: int
    ) -> tuple[Experience, dict[str, float]]:
        """Steps 1-8 with no separate policy+value forward in step 3: epoch 1's update forward gives
        the old log-probs and values (see `fuses_first_forward`), so steps 4-7 run inside the update."""
        samples = collect_samples(
            local, reference=self.reference, backend=self.backend, tokenizer=self.run.tokenizer,
            grader=self.grader, config=self.config, seed=seed,
        )  # fmt: skip
        started = time.perf_counter()
        experience, losses = self.update.fused(samples, step)
        experience.timings["update"] = time.perf_counter() - started
        return experience, losses

    def _separate_steps(
        self, local: list, seed: int, step: int
    ) -> tuple[Experience, dict[str, float]]:
        """Steps 1-7 with their own no-grad policy+value forward, then the update (step 8)."""
        run = self.run
        experience = collect_experience(
            local, actor_critic=run.accelerator.unwrap_model(run.model), reference=self.reference,
            backend=self.backend, tokenizer=run.tokenizer, grader=self.grader, config=self.config,
            seed=seed, autocast=run.accelerator.autocast, steps=self.update.advantage_steps,
        )  # fmt: skip
        started = time.perf_counter()
        losses = self.update(experience, step)
        experience.timings["update"] = time.perf_counter() - started
        return experience, losses

    def _rollout_metrics(self, experience: Experience) -> dict[str, float]:
        """Per-sequence means of this process's rollout, with the share of each error kind (every
        kind, 0.0 when absent: reft.answers.grading_stats)."""
        mask = experience.response_mask
        return {
            "reward": experience.scores.mean().item(),
            "accuracy": experience.correct.float().mean().item(),
            "kl": experience.kl.sum(dim=1).mean().item(),
            "response_length": mask.sum(dim=1).float().mean().item(),
        } | error_shares(experience.errors, self.config.cot)

    def _hacking_metrics(self, local: list, experience: Experience) -> dict[str, float]:
        """reft.answers.hacking's rates over the responses of ALL processes (their counts summed,
        since processes hold different numbers of rewarded responses)."""
        per_response = [e for e in local for _ in range(self.config.samples_per_prompt)]
        counts = example_hacking_counts(experience.texts, per_response, experience.correct.tolist())
        return HackingCounts.from_list(self.run.sum_over_processes(counts.as_list())).rates()

    def _explained_variance(self, experience: Experience) -> float:
        """1 - Var[returns - values] / Var[returns] over the response tokens of ALL processes."""
        run = self.run
        if run.num_processes == 1:
            mask = experience.response_mask
            return explained_variance(experience.values, experience.returns, mask).item()
        return explained_variance_over_processes(
            experience.values, experience.returns, experience.response_mask,
            lambda sums: run.accelerator.reduce(sums.to(run.device), "sum"),
        )  # fmt: skip

    def _mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per-process means averaged: exact for per-sequence metrics (every process holds the same
        number of sequences), a mean of per-process token means for the per-token diagnostics."""
        if self.run.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor(
            [metrics[key] for key in keys], device=self.run.device, dtype=torch.float64
        )
        values = self.run.accelerator.reduce(values, "mean")
        return dict(zip(keys, values.tolist(), strict=True))


def run_ppo(config: PPOConfig) -> RunState:
    """ReFT: PPO on `config.train_data` from the warm-up checkpoint `config.model`."""
    run, step, grader, dev_examples = build_ppo_step(config)
    with grader:
        return run.train(step, make_dev_evaluator(run, dev_examples))


def build_ppo_step(config: PPOConfig) -> tuple[TrainingRun, PPOStep, Grader, list]:
    """Everything `run_ppo` trains with: the prepared run, its PPO step, the grader (a context
    manager holding the program workers) and the dev examples. bench/bench_demo_step.py times
    exactly this step."""
    run = TrainingRun(config, stage="reft")
    examples, dev_examples = load_train_and_dev(config)
    policy, tokenizer = load_training_model(run, examples)
    value_model = config.value_model if config.estimator.uses_critic else ValueModelKind.none
    actor_critic = VALUE_MODELS[value_model.value](policy, config.seed)
    # Loaded before `prepare` restores a resumed run's RNG state, so loading cannot move it.
    frozen = None if config.lora else frozen_reference(run, config)
    steps_per_epoch, total = step_counts(len(examples), config, "training questions")
    updates_per_step = (
        config.ppo_epochs * config.batch_size * config.samples_per_prompt // config.mini_batch_size
    )
    run.prepare(
        actor_critic, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch,
        policy=actor_critic.policy, companion=actor_critic, optimizer_steps=total * updates_per_step,
    )  # fmt: skip
    reference = frozen if frozen is not None else AdapterDisabledReference(run.lora)
    backend = make_rollout_backend(
        config, actor_critic.policy, run.model_source(), run.accelerator.process_index,
        run.num_processes, run.device,
        gathered=run.generation_policy if run.sharding is not None else None,
    )  # fmt: skip
    backend.sync_weights(run.policy_weights)
    grader = Grader.of(examples[0].answer_kind, config.cot, config.grading)
    return run, PPOStep(run, config, examples, reference, backend, grader), grader, dev_examples


def frozen_reference(run: TrainingRun, config: PPOConfig) -> FrozenReference:
    """The paper's KL reference: a frozen copy of the warm-up on `ref_device` in `ref_dtype`.
    (With LoRA the reference is the policy with its adapters disabled instead.)"""
    device = str(run.device) if config.ref_device == "same" else config.ref_device
    model = load_causal_lm(
        config.ref_model or config.model, dtype=config.ref_dtype or config.dtype, device=device
    )
    return FrozenReference(model)
