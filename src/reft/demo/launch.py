"""How the demo starts one stage's `reft` command: forked from a server that has already imported torch
and transformers, or (where the platform cannot fork) as a fresh `python -m reft` process.

Importing torch, transformers and accelerate takes ~7.7 s on a 2-core VM, while a `--quick` stage
does ~0.5 s of work (bench/README.md), so a demo of 28 commands spent most of its time importing.
The standard library's forkserver imports them once, in a fresh single-threaded process, and forks
every stage from it. A stage stays its own process, exactly as before: its own log (stdout and
stderr), exit status, signals and threads, running the same `reft.cli.main(argv)` that the line in
`commands.sh` runs.

Either way a stage starts its own session (so its own process group): the terminal's Ctrl-C reaches
only the runner, which forwards one SIGINT to each stage (a training stage then checkpoints and
exits). Were the stages in the terminal's group, the forwarded SIGINT would be their second.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Protocol

PRELOAD = [
    "reft.train.ppo",  # torch, transformers, accelerate and the training loop
    "reft.train.sft",
    "reft.train.self_train",
    "reft.train.reward_model",
    "reft.evaluate.run",
    "transformers.models.llama.modeling_llama",  # loaded lazily by AutoModelForCausalLM
]
"""What every stage would import anyway, imported once by the fork server."""


class StageProcess(Protocol):
    """The part of `subprocess.Popen` the runner uses."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self) -> int: ...


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that give a stage `threads` torch threads."""
    return {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


def can_fork_stages() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def launch_stage(argv: list[str], log: Path, threads: int) -> StageProcess:
    """Start `reft <argv>` with stdout and stderr appended to `log` and `threads` torch threads:
    forked from the server where the platform has one, else as a fresh process."""
    start = start_forked if can_fork_stages() else start_subprocess
    return start(argv, log, threads)


def start_subprocess(argv: list[str], log: Path, threads: int) -> StageProcess:
    """`python -m reft <argv>` as a fresh process (it imports everything itself)."""
    with log.open("a") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "reft", *argv], stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=os.environ | thread_env(threads),
            start_new_session=True,  # its own process group (module docstring); Python 3.10 too
        )  # fmt: skip


def start_forked(argv: list[str], log: Path, threads: int) -> StageProcess:
    """`reft <argv>` forked from the fork server (started, with `PRELOAD`, on first use)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    env = os.environ | thread_env(threads)
    process = context.Process(target=_run_stage, args=(argv, str(log), env, threads))
    process.start()
    return ForkedStage(process)


class ForkedStage:
    """A stage forked from the server, seen through `StageProcess`."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode  # -N when killed by signal N, as Popen's

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        """Signal the stage's process group, which it leads (_run_stage), whatever the fork
        server says: when the server is gone (a closed terminal's SIGHUP reaches it too), every
        stage's exitcode reads 255 while the stages still run."""
        try:
            os.killpg(self.pid, signum)
            return
        except (ProcessLookupError, PermissionError):  # ended, or not yet its group's leader
            pass
        if self.process.exitcode is None:  # an ended stage's pid may be another process's
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        self.process.join()
        return self.process.exitcode


def _run_stage(argv: list[str], log: str, env: dict[str, str], threads: int) -> None:
    """In the forked child: its own session, the environment, the log as stdout and stderr, the
    threads, then the command. Exits with the command's status, as `python -m reft` does."""
    os.setsid()  # its own process group, as start_subprocess's (module docstring)
    # The runner's SIGINT must raise KeyboardInterrupt, as in `python -m reft`. The fork server
    # restores its own start-up handler, which is that one unless it inherited SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Else the demo's: what the stage quotes as its own command (the line that resumes it after
    # Ctrl-C, reft.train.interrupt; the holder of its run lock) would be `reft demo ...`.
    sys.argv = ["reft", *argv]
    os.environ.clear()
    os.environ.update(env)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    import torch

    torch.set_num_threads(threads)
    from reft.cli import main

    status = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(status)
