"""`reft rm`: the outcome reward model used for reranking (`reft eval --rerank RM --k K`).

reft rm train --config configs/synth/reward_model.yaml [model=runs/sft/best] [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command, report
from reft.train.config import RewardModelConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rm", help="outcome reward model for reranking")
    actions = parser.add_subparsers(dest="rm_command", metavar="ACTION", required=True)
    add_config_command(
        actions, "train",
        "sample solutions to the training questions, label them by grading, train a classifier",
        RewardModelConfig, run_train,
    )  # fmt: skip


def run_train(config: RewardModelConfig) -> int:
    from reft.train.reward_model import run_reward_model  # torch loads only when training

    state = run_reward_model(config)
    report(f"reward model {state.summary()}; checkpoints in {config.out_dir} "
          f"(use: reft eval --rerank {config.out_dir}/best --k K)")  # fmt: skip
    return 0
