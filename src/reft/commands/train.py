"""`reft train`: ReFT — PPO from an SFT warm-up checkpoint with a KL penalty and a value head.

reft train --config configs/paper/svamp_nl_reft.yaml [model=runs/warmup/best] [key=value ...] [--resume]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command, report
from reft.train.config import PPOConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    add_config_command(
        subparsers, "train", "ReFT: PPO on answer correctness from an SFT warm-up", PPOConfig, run
    )


def run(config: PPOConfig) -> int:
    from reft.train.ppo import run_ppo  # torch and transformers load only when training

    state = run_ppo(config)
    report(f"reft {state.summary()}; checkpoints in {config.out_dir}")
    return 0
