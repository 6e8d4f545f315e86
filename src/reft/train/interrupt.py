"""Ctrl-C during training: finish the step, checkpoint, say how to resume.

A training step is a unit the run can resume from exactly; a KeyboardInterrupt raised in the middle of
one would lose every step since the last checkpoint. So the first SIGINT only records the request
(the loop checkpoints after the current step and stops); a second one interrupts at once, as usual.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)


class InterruptRequest:
    """While active (a context manager), the first SIGINT sets `requested` instead of raising.

    Outside the main thread (where Python cannot install signal handlers) it does nothing, and
    Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> InterruptRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl-C: the user wants out now
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("interrupt: finishing this step, then writing a checkpoint "
                       "(Ctrl-C again to stop at once, losing the steps since the last checkpoint)")  # fmt: skip


def resume_command(argv: list[str] | None = None) -> str:
    """The command line that continues this run: the same one with `resume=true`."""
    argv = list(sys.argv if argv is None else argv)
    args = without_resume(argv[1:])
    return " ".join([program_prefix(argv), *map(shlex.quote, args), "resume=true"])


def program_prefix(argv: list[str]) -> str:
    """How the command was invoked: `reft` (its console script), or `python -m reft`."""
    program = Path(argv[0]).name if argv else "reft"
    return "python -m reft" if program == "__main__.py" else shlex.quote(program)


def without_resume(args: list[str]) -> list[str]:
    """`args` less any resume setting: `--resume [true|false]`, `--resume=...`, `resume=...`."""
    kept: list[str] = []
    for arg in args:
        if arg.lower() in ("true", "false") and kept[-1:] == ["--resume"]:
            continue  # the switch's value
        kept.append(arg)
    return [a for a in kept if a != "--resume" and not a.startswith(("--resume=", "resume="))]
