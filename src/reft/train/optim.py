"""AdamW with decoupled weight decay (not on biases and norm weights) and a warm-up schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import get_scheduler

from reft.train.config import TrainConfig


def build_optimizer(trainable: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the `trainable` parameters.

    One-dimensional tensors (biases, norm scales) get no weight decay, as in most LM recipes.
    """
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> Any:
    """The configured schedule with `warmup_ratio * total_steps` linear warm-up steps."""
    warmup = math.floor(config.warmup_ratio * total_steps)
    return get_scheduler(
        config.schedule.value,
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=max(total_steps, 1),
    )
