"""`reft self-train`: the paper's self-training baselines.

reft self-train --mode offline --config configs/synth/offline_self_training.yaml [key=value ...]
reft self-train --mode online --config configs/synth/online_self_training.yaml [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command, report
from reft.train.config import SelfTrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    add_config_command(
        subparsers,
        "self-train",
        "offline (sample, filter, SFT) or online (sample and SFT every step) self-training",
        SelfTrainConfig,
        run,
    )


def run(config: SelfTrainConfig) -> int:
    from reft.train.self_train import run_self_train  # torch loads only when training

    state = run_self_train(config)
    report(f"{config.mode.value} self-training {state.summary()}; checkpoints in {config.out_dir}")
    return 0
