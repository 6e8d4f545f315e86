"""One module per `reft` subcommand; each exposes `register(subparsers)`."""

from __future__ import annotations

import os


def report(message: str) -> None:
    """Print a command's closing line once, from the main process of a multi-process launch
    (torchrun and accelerate set RANK for every process)."""
    if os.environ.get("RANK", "0") == "0":
        print(message)
