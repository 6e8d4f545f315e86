"""`reft rm`: the outcome reward model used for reranking (`reft eval --rerank RM --k K`).

reft rm train --config configs/synth/reward_model.yaml [model=runs/sft/best] [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.commands import report
from reft.config import add_config_arguments, config_from_args
from reft.models.source import check_model_settings
from reft.train.config import RewardModelConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rm", help="outcome reward model for reranking")
    actions = parser.add_subparsers(dest="rm_command", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="sample solutions to the training questions, label them by grading, train a classifier",
    )
    add_config_arguments(train, RewardModelConfig)
    train.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(RewardModelConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.train.reward_model import run_reward_model  # torch loads only when training

    state = run_reward_model(config)
    report(f"reward model {state.summary()}; checkpoints in {config.out_dir} "
          f"(use: reft eval --rerank {config.out_dir}/best --k K)")  # fmt: skip
    return 0
