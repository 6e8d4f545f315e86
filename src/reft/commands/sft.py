"""`reft sft`: supervised fine-tuning (the ReFT warm-up, the SFT baseline, offline self-training's SFT).

reft sft --config configs/paper/svamp_nl_sft.yaml [key=value | --key value ...] [--resume]
"""

from __future__ import annotations

import argparse

from reft.commands import add_config_command, report
from reft.train.config import SFTConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    add_config_command(
        subparsers, "sft", "supervised fine-tuning on gold chains of thought", SFTConfig, run
    )


def run(config: SFTConfig) -> int:
    from reft.train.sft import run_sft  # torch and transformers load only when training

    state = run_sft(config)
    report(f"sft {state.summary()}; checkpoints in {config.out_dir}")
    return 0
