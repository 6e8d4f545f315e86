"""`reft self-train`: the paper's self-training baselines.

reft self-train --mode offline --config configs/synth/offline_self_training.yaml [key=value ...]
reft self-train --mode online --config configs/synth/online_self_training.yaml [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.commands import report
from reft.config import add_config_arguments, config_from_args
from reft.models.source import check_model_settings
from reft.train.config import SelfTrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "self-train",
        help="offline (sample, filter, SFT) or online (sample and SFT every step) self-training",
    )
    add_config_arguments(parser, SelfTrainConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(SelfTrainConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.train.self_train import run_self_train  # torch loads only when training

    state = run_self_train(config)
    report(f"{config.mode.value} self-training {state.summary()}; checkpoints in {config.out_dir}")
    return 0
