"""`reft demo`: the paper's comparison (SFT warm-up -> ReFT, SFT, offline and online self-training,
voting and reranking) end to end on the built-in synthetic task and a tiny model, on a CPU.

reft demo [--quick] [--seeds 0,1,2] [--out DIR] [--config FILE.yaml] [key=value ...]
"""

from __future__ import annotations

import argparse

from reft.config import add_config_arguments, config_from_args, config_to_dict, load_config
from reft.demo.config import DemoConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the paper's experiment at laptop scale, with a report (results.json, report.md, plots)",
    )
    # --help shows the shipped recipe's values, which a plain `reft demo` runs (not the dataclass's).
    add_config_arguments(parser, DemoConfig, shipped=config_to_dict(shipped_recipe()))
    parser.set_defaults(handler=run)


def shipped_recipe() -> DemoConfig:
    """The configuration a plain `reft demo` runs: the dataclass under the shipped recipe."""
    return load_config(DemoConfig, DemoConfig().recipe_files(), [])


def run(args: argparse.Namespace) -> int:
    # The shipped recipe (with the P-CoT and quick layers the command asks for) lies under any files
    # and overrides given.
    asked = config_from_args(DemoConfig, args)
    recipes = DemoConfig(quick=asked.quick, cot=asked.cot).recipe_files()
    user_files = list(args.config or [])
    args.config = [*recipes, *user_files]
    config = config_from_args(DemoConfig, args)
    from reft.demo.run import run_demo

    run_demo(config)
    return 0
