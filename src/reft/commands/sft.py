"""`reft sft`: supervised fine-tuning (the ReFT warm-up, the SFT baseline, offline self-training's SFT).

reft sft --config configs/paper/svamp_nl_sft.yaml [key=value | --key value ...] [--resume]
"""

from __future__ import annotations

import argparse

from reft.commands import report
from reft.config import add_config_arguments, config_from_args
from reft.models.source import check_model_settings
from reft.train.config import SFTConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sft", help="supervised fine-tuning on gold chains of thought")
    add_config_arguments(parser, SFTConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(SFTConfig, args)
    check_model_settings(config)  # before any data is read or directory written
    from reft.train.sft import run_sft  # torch and transformers load only when training

    state = run_sft(config)
    report(f"sft {state.summary()}; checkpoints in {config.out_dir}")
    return 0
