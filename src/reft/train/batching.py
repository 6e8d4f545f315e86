"""Which examples each optimizer (or rollout) step uses: a seeded permutation per epoch.

The order depends only on (seed, epoch), so a resumed run sees exactly the batches an unbroken run
would, with no sampler state to save.
"""

from __future__ import annotations

import math

import torch

from reft.train.config import TrainConfig


def epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a permutation of range(size) that depends only on (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


def global_batch(size: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of step `step`'s global batch; each epoch drops its incomplete last batch."""
    steps_per_epoch = size // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {size} examples")
    epoch, offset = divmod(step, steps_per_epoch)
    order = epoch_order(size, seed, epoch)
    return order[offset * batch_size : (offset + 1) * batch_size]


def shard(items: list, rank: int, world_size: int) -> list:
    """This process's share of a global batch (every world_size-th item, starting at rank)."""
    return items[rank::world_size]


def step_counts(num_items: int, config: TrainConfig, what: str) -> tuple[int, int]:
    """(steps per epoch, total steps) of a run over `num_items` `what` in global batches.

    Total steps are `max_steps`, else `epochs` x steps per epoch (incomplete batches are dropped).
    Raises ValueError when there is not one full batch.
    """
    steps_per_epoch = num_items // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{num_items} {what}, fewer than batch_size {config.batch_size}")
    return steps_per_epoch, config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
