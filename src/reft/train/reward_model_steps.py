"""The optimizer steps of `reft rm train`: pointwise cross-entropy over a batch of solutions, or
the listwise loss over batches of whole questions (`reft.algos.ranking.listwise_loss_sum`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reft.algos.ranking import listwise_loss_sum
from reft.models.reward_model import pad_right
from reft.train.batching import global_batch, shard, step_counts
from reft.train.config import RMLoss
from reft.train.loop import TrainingRun
from reft.train.sft import backward_micro_batches

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RMFeatures:
    input_ids: list[int]
    label: int
    id: str = ""
    """Id of the question the solution answers (the listwise loss groups by it)."""


def question_groups(features: list[RMFeatures], max_size: int) -> list[list[RMFeatures]]:
    """Each question's solutions in order of first appearance, a question with more than max_size
    split into consecutive groups of at most max_size (so a group fits one micro-batch)."""
    by_question: dict[str, list[RMFeatures]] = {}
    for feature in features:
        by_question.setdefault(feature.id, []).append(feature)
    return [
        solutions[start : start + max_size]
        for solutions in by_question.values()
        for start in range(0, len(solutions), max_size)
    ]


def pack_groups(groups: list[list[RMFeatures]], max_size: int) -> list[list[list[RMFeatures]]]:
    """Consecutive groups packed into micro-batches of at most max_size solutions (a group is never
    split; one larger than max_size is a micro-batch of its own)."""
    packs: list[list[list[RMFeatures]]] = []
    size = 0
    for group in groups:
        if not packs or size + len(group) > max_size:
            packs.append([])
            size = 0
        packs[-1].append(group)
        size += len(group)
    return packs


def _is_mixed(group: list[RMFeatures]) -> bool:
    return len({feature.label for feature in group}) == 2


def rm_logits(run: TrainingRun, chunk: list[RMFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, 2] in float32, labels [B]) of a chunk of solutions."""
    batch = pad_right([f.input_ids for f in chunk], run.tokenizer.pad_token_id)
    labels = torch.tensor([f.label for f in chunk], device=run.device)
    logits = run.model(**{k: v.to(run.device) for k, v in batch.items()}).logits.float()
    return logits, labels


class RewardModelStep:
    """loss=pointwise: one optimizer step of cross-entropy over a global batch of solutions."""

    def __init__(self, run: TrainingRun, features: list[RMFeatures]) -> None:
        self.run, self.features = run, features

    def step_counts(self) -> tuple[int, int]:
        """(steps per epoch, total steps)."""
        return step_counts(len(self.features), self.run.config, "reward-model examples")

    def loss_sum(self, chunk: list[RMFeatures]) -> tuple[torch.Tensor, dict[str, float]]:
        logits, labels = rm_logits(self.run, chunk)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return loss, {"correct": float((logits.argmax(dim=-1) == labels).sum())}

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        indices = global_batch(len(self.features), config.batch_size, config.seed, step)
        batch = [self.features[i] for i in indices]
        local = shard(batch, run.accelerator.process_index, run.num_processes)
        totals = backward_micro_batches(run, local, self.loss_sum, run.num_processes / len(batch))
        grad_norm = run.clip_and_step()
        sums = torch.tensor([totals["loss_sum"], totals.get("correct", 0.0)], device=run.device)
        loss_sum, correct = run.accelerator.reduce(sums, "sum").tolist()
        return {
            "loss": loss_sum / len(batch),
            "accuracy": correct / len(batch),
            "grad_norm": grad_norm,
        }


class ListwiseRewardModelStep:
    """loss=listwise: one optimizer step over a global batch of whole question groups (sharded by
    group): mean listwise loss over the batch's mixed groups + pointwise_weight x mean cross-entropy
    over its solutions. Groups per step: batch_size x groups / solutions, rounded (at least 1), so a
    step sees about batch_size solutions."""

    def __init__(self, run: TrainingRun, features: list[RMFeatures]) -> None:
        config = run.config
        self.run, self.features = run, features
        self.groups = question_groups(features, config.micro_batch_size)
        share = config.batch_size * len(self.groups) / max(len(features), 1)
        self.groups_per_step = max(1, round(share))
        logger.info("listwise: %d questions in %d groups of at most %d solutions; %d groups a step",
                    len({f.id for f in features}), len(self.groups), config.micro_batch_size,
                    self.groups_per_step)  # fmt: skip
        if self.groups_per_step < run.num_processes:
            raise ValueError(
                f"batch_size {config.batch_size} gives {self.groups_per_step} question groups per "
                f"step, fewer than the {run.num_processes} processes"
            )

    def step_counts(self) -> tuple[int, int]:
        """(steps per epoch, total steps) over the question groups, as batching.step_counts."""
        config = self.run.config
        per_epoch = len(self.groups) // self.groups_per_step
        if per_epoch < 1:
            raise ValueError(
                f"{len(self.groups)} question groups, fewer than one step's {self.groups_per_step}"
            )
        return per_epoch, config.max_steps or max(1, math.ceil(config.epochs * per_epoch))

    def loss_fn(self, mixed: int, solutions: int) -> Callable[[list], tuple[torch.Tensor, dict]]:
        """loss_sum_fn for one pack of groups: this pack's share of the batch's total loss."""
        weight = self.run.config.pointwise_weight

        def pack_loss(chunk: list[list[list[RMFeatures]]]) -> tuple[torch.Tensor, dict]:
            (pack,) = chunk
            flat = [feature for group in pack for feature in group]
            groups = torch.tensor([g for g, group in enumerate(pack) for _ in group])
            logits, labels = rm_logits(self.run, flat)
            margins = logits[:, 1] - logits[:, 0]
            listwise = listwise_loss_sum(margins, labels, groups.to(labels.device))
            cross_entropy = F.cross_entropy(logits, labels, reduction="sum")
            loss = listwise / max(mixed, 1) + weight * cross_entropy / solutions
            return loss, {"listwise_sum": listwise.item(), "ce_sum": cross_entropy.item(),
                          "correct": float((logits.argmax(dim=-1) == labels).sum())}  # fmt: skip

        return pack_loss

    def batch(self, step: int) -> list[list[RMFeatures]]:
        """The question groups of step `step`'s global batch: a seeded order per epoch, as
        batching.global_batch over groups."""
        config = self.run.config
        order = global_batch(len(self.groups), self.groups_per_step, config.seed, step)
        return [self.groups[i] for i in order]

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        batch = self.batch(step)
        solutions, mixed = sum(len(g) for g in batch), sum(_is_mixed(g) for g in batch)
        local = shard(batch, run.accelerator.process_index, run.num_processes)
        packs = pack_groups(local, config.micro_batch_size)
        loss_fn = self.loss_fn(mixed, solutions)
        keys = ("loss_sum", "listwise_sum", "ce_sum", "correct")
        sums = torch.zeros(len(keys), device=run.device)
        for index, pack in enumerate(packs):  # DDP averages over processes: scale by their count
            part = backward_micro_batches(run, [pack], loss_fn, run.num_processes,
                                          sync=index == len(packs) - 1)  # fmt: skip
            sums += torch.tensor([part.get(key, 0.0) for key in keys], device=run.device)
        grad_norm = run.clip_and_step()
        loss_sum, listwise_sum, ce_sum, correct = run.accelerator.reduce(sums, "sum").tolist()
        return {
            "loss": loss_sum,
            "listwise": listwise_sum / max(mixed, 1),
            "cross_entropy": ce_sum / solutions,
            "accuracy": correct / solutions,
            "mixed_groups": mixed / len(batch),
            "solutions": float(solutions),
            "grad_norm": grad_norm,
        }


RM_STEPS = {RMLoss.pointwise: RewardModelStep, RMLoss.listwise: ListwiseRewardModelStep}
"""The optimizer step of each loss, chosen once from the config."""
