"""The training and dev examples of a run, with an optional dev split held out of the training data.

Datasets without a dev split (GSM8K, SVAMP) get one by holding out `dev_holdout` training questions,
chosen by the run's seed: model selection then never looks at the test set.
"""

from __future__ import annotations

import random

from reft.data.example import Example
from reft.data.loaders import load_dataset
from reft.train.config import TrainConfig


def load_train_and_dev(config: TrainConfig) -> tuple[list[Example], list[Example] | None]:
    """(training examples, dev examples or None) as the config asks."""
    train = load_dataset(config.train_data, strip_calculator=config.strip_calculator)
    if config.dev_data:
        dev = load_dataset(config.dev_data, strip_calculator=config.strip_calculator)
    elif config.dev_holdout:
        train, dev = hold_out(train, config.dev_holdout, config.seed)
    else:
        dev = None
    if dev is not None and config.dev_limit:
        dev = dev[: config.dev_limit]
    return train, dev


def hold_out(examples: list[Example], count: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off `count` examples (a seeded random choice) as a dev set; order is kept in both parts."""
    if not 0 < count < len(examples):
        raise ValueError(f"dev_holdout must be between 1 and {len(examples) - 1}, got {count}")
    chosen = set(random.Random(f"dev-holdout:{seed}").sample(range(len(examples)), count))
    train = [e for i, e in enumerate(examples) if i not in chosen]
    dev = [e for i, e in enumerate(examples) if i in chosen]
    return train, dev
