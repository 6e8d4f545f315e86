"""A run owns its output directory: an OS lock taken before anything is written there.

Two jobs pointed at one `out_dir` (a typo, a copied script) would interleave checkpoints, metrics and
config.yaml until the folder describes neither run. The lock is a POSIX record lock (`fcntl.lockf`)
on `out_dir/.reft.lock`: the kernel drops it when the process ends, however it ends (`kill -9`
included), so a dead run never leaves a stale lock, and a process forked from the run (a sandbox
worker) does not inherit it. The file holds the holder's PID and command, for the message the
second run stops with. Where the platform has no `fcntl` (Windows), runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from reft.files import OutputPathError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".reft.lock"


class OutputDirBusy(OutputPathError):
    """Another live process holds the output directory (the CLI exits with code 2)."""


class RunLock:
    """The lock on one output directory, held until `release` or the end of the process."""

    def __init__(self, out_dir: str | Path, what: str = "out_dir", wait: bool = False) -> None:
        """Take the lock on `out_dir` (created if missing). When another process holds it: raise
        OutputDirBusy naming the holder, or with `wait` say so on stderr and block until it ends."""
        self.path = Path(out_dir) / LOCK_FILE
        self._handle: IO[str] | None = None
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(_read_holder(handle))
            if not wait:
                handle.close()
                raise OutputDirBusy(
                    f"{what} {self.path.parent} is in use by another run ({holder}); wait for it "
                    "to end, stop it, or choose another directory"
                ) from None
            print(f"{what} {self.path.parent} is in use by another run ({holder}); waiting for "
                  "it to end", file=sys.stderr, flush=True)  # fmt: skip
            fcntl.lockf(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_this_process()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the lock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _this_process() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["reft", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _read_holder(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    try:
        return json.loads(handle.read())
    except ValueError:  # the holder is between taking the lock and writing its record
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that is starting"
    return (
        f"PID {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}: "
        f"{holder.get('command')}"
    )
