"""`reft train`: ReFT — PPO from an SFT warm-up checkpoint with a KL penalty and a value head.

reft train --config configs/paper/svamp_nl_reft.yaml [model=runs/warmup/best] [key=value ...] [--resume]
"""

from __future__ import annotations

import argparse

from reft.commands import report
from reft.config import add_config_arguments, config_from_args
from reft.models.source import check_model_settings
from reft.train.config import PPOConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="ReFT: PPO on answer correctness from an SFT warm-up"
    )
    add_config_arguments(parser, PPOConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(PPOConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.train.ppo import run_ppo  # torch and transformers load only when training

    state = run_ppo(config)
    report(f"reft {state.summary()}; checkpoints in {config.out_dir}")
    return 0
