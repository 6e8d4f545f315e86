"""The `reft` command: one parser, one subcommand per pipeline stage.

Each subcommand lives in `reft.commands.<name>` and exposes `register(subparsers)`, which adds its
parser and sets `handler` to a function `(args) -> int`. Command modules import heavy libraries (torch,
transformers) inside their handlers, so `reft --help` and `reft data ...` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from reft import __version__
from reft.config import ConfigError
from reft.data.errors import DataError
from reft.files import DiskFullError, OutputPathError, RunComplete

# Only commands that work are registered; later stages add their module name here. A module's
# register() names its command (module self_train registers `reft self-train`).
COMMAND_MODULES = [
    "data",
    "grade",
    "sft",
    "train",
    "self_train",
    "rm",
    "sample",
    "eval",
    "eval_table",
    "demo",
    "demo_table",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reft",
        description="ReFT: SFT warm-up, PPO on answer correctness, and evaluation for math word problems.",
    )
    parser.add_argument("--version", action="version", version=f"reft {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"reft.commands.{name}").register(subparsers)
    return parser


def leave_process_group() -> None:
    """End a `torchrun` / `accelerate launch` run together and tear its process group down.

    A rank that exits while its peers are still finishing (rank 0 writes the last links) with gloo's
    threads alive can abort in teardown ("terminate called without an active exception", SIGABRT),
    which fails the whole launch. No-op outside a distributed run, and torch is never imported here.
    """
    torch = sys.modules.get("torch")
    if (
        torch is None
        or not torch.distributed.is_available()
        or not torch.distributed.is_initialized()
    ):
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line, with `key=value` overrides accepted anywhere: argparse takes one
    run of positionals, so overrides typed after a later `--option` come back unrecognised and
    join the others here, in the order typed (later ones win)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [arg for arg in extra if arg.startswith("-") or "=" not in arg]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        # Called in-process (a test, a notebook): sys.argv is what a run quotes as its own command
        # (model card, resume hint, run lock), so it is this command line while it runs.
        saved, sys.argv = sys.argv, ["reft", *argv]
        try:
            return main()
        finally:
            sys.argv = saved
    args = parse_command_line()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        status = args.handler(args)
        leave_process_group()
        return status
    except RunComplete as complete:
        print(complete)
        return 0
    except (ConfigError, DataError, FileExistsError, OutputPathError) as error:
        print(f"reft {args.command}: error: {error}", file=sys.stderr)
        return 2
    except DiskFullError as error:
        print(f"reft {args.command}: error: {error.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reft {args.command}: interrupted", file=sys.stderr)
        return 130
