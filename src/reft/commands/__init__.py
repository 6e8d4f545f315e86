"""One module per `reft` subcommand; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from typing import Any

from reft.config import add_config_arguments, config_from_args
from reft.models.source import check_model_settings


def report(message: str) -> None:
    """Print a command's closing line once, from the main process of a multi-process launch
    (torchrun and accelerate set RANK for every process)."""
    if os.environ.get("RANK", "0") == "0":
        print(message)


def add_config_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    config_class: type,
    handler: Callable[[Any], int],
) -> argparse.ArgumentParser:
    """A subcommand whose options are `config_class`'s fields. `handler(config)` runs with the config
    built from --config files and overrides, its model settings checked before any data is read or
    directory written."""
    parser = subparsers.add_parser(name, help=help)
    add_config_arguments(parser, config_class)
    parser.set_defaults(handler=functools.partial(_run_checked, config_class, handler))
    return parser


def _run_checked(
    config_class: type, handler: Callable[[Any], int], args: argparse.Namespace
) -> int:
    config = config_from_args(config_class, args)
    check_model_settings(config)
    return handler(config)
