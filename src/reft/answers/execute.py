"""Run model-written programs (P-CoT) in sandboxed worker processes and return typed results.

A program is untrusted code: a policy under RL pressure will eventually try anything that earns
reward, including reading the gold answers from disk. So programs never run in the caller's
process. A `ProgramPool` keeps a few small, torch-free worker processes (fresh `python -s` processes,
never forks of the trainer); each worker forks one child per program, and the child runs the program
under these protections (see docs/grading.md for what each does and does not cover):

- user, PID, network, mount, IPC and UTS namespaces: no network; a minimal read-only root that holds
  only the standard library, sympy and mpmath plus a size-limited tmpfs scratch dir; the worker is
  PID 1 of its namespace, so it kills every process a program left behind after each call;
- Landlock: file access limited to those directories, no TCP, no signals to outside processes;
- seccomp: no new processes, executables, sockets, ptrace, mounts or raised rlimits;
- no capabilities (all sets emptied, bounding set included), no_new_privs;
- rlimits: CPU time, address space, file size, open files; plus a wall-clock timeout;
- the returned value is converted to a plain string inside the child, under the same limits.

An attempt at a forbidden act (starting a process, sending a signal, the network, files outside
the sandbox, ctypes, printing a flood, a thread left running at return, ...) ends the program at
once with `ErrorKind.forbidden`, even if the program would catch the error: a Python audit hook
sees most acts by name, seccomp ends the process at the system calls behind them.

Every kernel feature is detected when the pool starts; a missing one is logged loudly and shown in
`ProgramPool.protections`; rlimits and timeouts are always enforced.

No third-party imports here (and never torch): the trainer imports this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("_sandbox_worker.py")
DEFAULT_TIMEOUT_S = 10.0
"""Wall-clock limit per program, as the paper's code (grade-school programs need milliseconds)."""
MAX_PROGRAM_CHARS = 100_000
"""Longer programs are rejected without running (a model's program is a few hundred characters)."""
MAX_REPLY_BYTES = 1 << 20
"""A worker reply larger than this means the worker is broken."""
_USES_SYMPY = re.compile(r"sympy|mpmath")


class ErrorKind(str, Enum):
    """Why a program gave no value."""

    timeout = "timeout"
    """Wall-clock or CPU-time limit reached (infinite loops, sleeps, huge computations)."""
    memory = "memory"
    """MemoryError: the address-space limit was reached."""
    exception = "exception"
    """The program raised (SyntaxError, ZeroDivisionError, PermissionError from the sandbox, ...)."""
    no_result = "no_result"
    """It ran but gave no answer: no solution(), None, an unsupported type, a non-finite number."""
    crashed = "crashed"
    """The process died without reporting (a segfault, a signal, a broken worker)."""
    forbidden = "forbidden"
    """It attempted a forbidden act (docs/grading.md, "The sandbox's policy"); the detail names it.
    The program was ended at the attempt, whatever it would have returned."""


@dataclass(frozen=True)
class ExecutionResult:
    """What running one program gave: a plain value or an error kind, never both."""

    value: str | None
    """solution()'s value converted in the sandbox: exact int digits ("42"), a float's repr
    ("0.75"), or a string of at most 100 characters. None when `error` is set."""
    error: ErrorKind | None = None
    detail: str = ""
    """Human-readable reason for the error (exception type and message, signal name, the forbidden
    act)."""
    stdout: str = ""
    """The first characters the program printed (capped)."""
    seconds: float = 0.0
    """Wall-clock time of the call inside the worker."""

    @property
    def ok(self) -> bool:
        """True when the program returned a value."""
        return self.error is None


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and protections of the program sandbox."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    """Wall-clock limit per program; the CPU-time limit is ceil(timeout_s) + 1 s."""
    memory_mb: int = 512
    """Address space a program may add to its worker's (RLIMIT_AS)."""
    file_mb: int = 8
    """Largest file a program may write (RLIMIT_FSIZE)."""
    scratch_mb: int = 16
    """Size of the private tmpfs scratch dir (with namespaces)."""
    max_output_chars: int = 2000
    """Printed output kept per program; the rest is dropped."""
    max_printed_chars: int = 10_000_000
    """Printing more than this in all is a forbidden act (a flood, not a program's debug output)."""
    namespaces: bool = True
    """Use user/PID/network/mount namespaces (and the minimal root) when the kernel allows."""
    landlock: bool = True
    """Use Landlock when the kernel offers it."""
    seccomp: bool = True
    """Use the seccomp filter (x86_64 only)."""
    audit_hook: bool = True
    """End a program at its first forbidden act seen from Python (an audit hook, with the output
    flood and threads-at-return checks). Off only to test the kernel layers alone."""
    grace_s: float = 5.0
    """Extra time the pool gives a worker beyond timeout_s before declaring it stuck and killing it."""
    startup_timeout_s: float = 60.0
    """Time a new worker has to start (import sympy, set up the sandbox) and say hello."""


# Missing protection -> what a program can then do. Logged as warnings when the pool starts.
PROTECTION_LOSSES = {
    "user_namespace": "no user namespace: the PID, network and mount namespaces are unavailable too",
    "network_namespace": "programs can use the network (only TCP is blocked, and only by Landlock ABI >= 4)",
    "pid_namespace": "programs can see and signal other processes of this user; leftover processes "
    "are found through a child subreaper instead",
    "filesystem_view": "programs see the host's whole file system (only Landlock, if present, limits access)",
    "landlock": "programs can read and write every file this user can (answer files included) "
    "unless the minimal root hides them",
    "seccomp": "programs can start processes, run executables, open sockets and raise their rlimits",
    "no_capabilities": "programs keep the worker's capabilities (all of root's, as root without a "
    "user namespace)",
    "audit_hook": "a program that catches the error of a refused act (a file, a socket, a signal) "
    "and returns the right value is graded correct; without seccomp too, it can start processes",
}


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker cannot start)."""


def _memory_backed_tmp() -> str | None:
    """/dev/shm when it is a writable directory (without namespaces, scratch dirs live here: RAM is
    faster than a disk for a directory per call); else the default temporary directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def uses_sympy(program: str) -> bool:
    """True when a program mentions sympy or mpmath: it then runs on a worker that preloaded them."""
    return _USES_SYMPY.search(program) is not None


def missing_protections(protections: dict[str, bool]) -> dict[str, str]:
    """The protections that are off, each with what a program can do without it."""
    missing = {name: text for name, text in PROTECTION_LOSSES.items() if not protections.get(name)}
    # Without Landlock, PROTECTION_LOSSES["landlock"] already says it all.
    scoped = protections.get("signal_scope") or protections.get("pid_namespace")
    if protections.get("landlock") and not scoped:
        missing["signal_scope"] = (
            "programs can signal processes outside the sandbox (Landlock ABI < 6)"
        )
    if not protections.get("pid_namespace") and not protections.get("subreaper"):
        missing["subreaper"] = "processes a program starts can outlive the call"
    return missing


PIPELINE_DEPTH = 2
"""Jobs queued per worker: the next program is already in the pipe when one finishes."""


class _Worker:
    """One worker process seen from the pool: its pipes, its state and its queued jobs."""

    def __init__(self, config: SandboxConfig, root: str, heavy: bool) -> None:
        self.heavy = heavy
        options = asdict(config)
        options.update(root=root, preload_sympy=heavy)
        # Kept for the worker's lifetime, read back only to explain a failed start; closed in stop().
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-s", "-B", str(WORKER_SCRIPT), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd="/",
            env={"PYTHONHASHSEED": "0", "PYTHONUTF8": "1"},  # the same hashes in every worker
            start_new_session=True,  # a Ctrl-C meant for the trainer does not reach the sandbox
        )
        os.set_blocking(self.process.stdout.fileno(), False)
        self.buffer = bytearray()
        self.hello: dict | None = None
        self.jobs: deque[int] = deque()
        """Jobs sent and not answered yet, oldest (running) first."""
        self.deadline = time.monotonic() + config.startup_timeout_s
        self.allowance = config.grace_s

    @property
    def ready(self) -> bool:
        """Started, and with room for another job."""
        return self.hello is not None and len(self.jobs) < PIPELINE_DEPTH

    @property
    def waited_on(self) -> bool:
        """Starting, or running a job: something must arrive before `deadline`."""
        return self.hello is None or bool(self.jobs)

    def send(self, job: int, program: str, timeout: float) -> None:
        """Queue one program; each queued job must be answered within timeout + grace of the last."""
        body = json.dumps({"id": job, "code": program, "timeout": timeout}).encode()
        self.process.stdin.write(struct.pack(">I", len(body)) + body)
        self.process.stdin.flush()
        if not self.jobs:
            self.deadline = time.monotonic() + timeout + self.allowance
        self.jobs.append(job)

    def receive(self) -> list[dict] | None:
        """The complete messages readable now; None when the worker has gone (end of file)."""
        try:
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        messages = []
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">I", self.buffer[:4])
            if size > MAX_REPLY_BYTES:
                return None
            if len(self.buffer) < 4 + size:
                break
            messages.append(json.loads(self.buffer[4 : 4 + size]))
            del self.buffer[: 4 + size]
        return messages

    def startup_log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def stop(self, kill: bool = False) -> None:
        """Close the pipes (the worker exits at end of file) or kill it; its namespace dies with it."""
        if kill:
            self.process.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):  # a broken pipe to a dead worker
                pipe.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.stderr.close()


def _result_from_reply(reply: dict) -> ExecutionResult:
    """Validate a worker's reply (it is untrusted input) and type it."""
    value, error = reply.get("value"), reply.get("error")
    stdout = reply.get("stdout") if isinstance(reply.get("stdout"), str) else ""
    seconds = float(reply["seconds"]) if isinstance(reply.get("seconds"), (int, float)) else 0.0
    if isinstance(value, str) and error is None:
        return ExecutionResult(value, None, "", stdout, seconds)
    if error in ErrorKind.__members__:
        detail = reply.get("detail") if isinstance(reply.get("detail"), str) else ""
        return ExecutionResult(None, ErrorKind(error), detail, stdout, seconds)
    return ExecutionResult(
        None, ErrorKind.crashed, "malformed reply from the worker", stdout, seconds
    )


@dataclass
class _Run:
    """The state of one run_many call."""

    programs: Sequence[str]
    timeout: float
    results: list[ExecutionResult | None]
    queues: dict[bool, deque[int]]
    """Jobs not sent yet, for light (False) and sympy (True) workers."""
    deaths: dict[int, int] = field(default_factory=dict)
    """Job -> how many workers died while running it (a job is retried once on a fresh worker)."""


class ProgramPool:
    """A persistent pool of sandbox workers; `run_many` runs programs and returns typed results.

    Light workers (standard library preloaded; they fork ~4x faster) run most programs; programs
    that mention sympy or mpmath go to workers that preloaded them, started on first use. A worker
    that dies or hangs is killed and replaced: the job it was running gets an error result, the
    jobs queued behind it run elsewhere. Calls are serialised (thread-safe). Use as a context
    manager or call `close()`.

    Example::

        with ProgramPool(workers=2) as pool:
            results = pool.run_many(programs)  # list[ExecutionResult], same order
    """

    def __init__(self, workers: int | None = None, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.size = max(1, workers or os.cpu_count() or 1)
        self._root = tempfile.mkdtemp(prefix="reft-sandbox-", dir=_memory_backed_tmp())
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._workers: dict[bool, list[_Worker]] = {False: [], True: []}
        self._failures = 0
        self.protections: dict[str, bool] = {}
        """Which protections the workers have (name -> on); see PROTECTION_LOSSES."""
        self.landlock_abi = 0
        self._finalizer = weakref.finalize(self, _shut_down, self._workers, self._root)
        self.warnings: list[str] = []
        """What the workers reported when they started (missing modules, failed features)."""
        try:
            self._start_workers(heavy=False)
            idle = _Run([], 0.0, [], {False: deque(), True: deque()})
            while not all(worker.hello for worker in self._workers[False]):
                self._collect(idle)
        except BaseException:
            self.close()
            raise
        self._warn_missing()

    @property
    def worker_pids(self) -> list[int]:
        """Host PIDs of the worker processes (with namespaces: the process outside each namespace)."""
        return [worker.process.pid for worker in self._all_workers()]

    def run(self, program: str, timeout_s: float | None = None) -> ExecutionResult:
        """Run one program (see run_many)."""
        return self.run_many([program], timeout_s)[0]

    def run_many(
        self, programs: Sequence[str], timeout_s: float | None = None
    ) -> list[ExecutionResult]:
        """Run every program's solution(); results in input order, one per program, never None."""
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        run = _Run(programs, timeout, [None] * len(programs), {False: deque(), True: deque()})
        for index, program in enumerate(programs):
            if len(program) > MAX_PROGRAM_CHARS:
                detail = f"program longer than {MAX_PROGRAM_CHARS} characters: not run"
                run.results[index] = ExecutionResult(None, ErrorKind.exception, detail)
            else:
                run.queues[uses_sympy(program)].append(index)
        with self._lock:
            if run.queues[True] and not self._workers[True]:
                self._start_workers(heavy=True)
            try:
                while any(result is None for result in run.results):
                    self._dispatch(run)
                    self._collect(run)
            except BaseException:  # e.g. KeyboardInterrupt: no worker may keep a stale job
                for worker in self._all_workers():
                    if worker.jobs:
                        worker.jobs.clear()
                        self._replace(worker)
                raise
        return run.results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop every worker and remove the pool's temporary directory (also done at garbage collection)."""
        self._finalizer()
        self._selector.close()

    def __enter__(self) -> ProgramPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all_workers(self) -> list[_Worker]:
        return self._workers[False] + self._workers[True]

    def _start_workers(self, heavy: bool) -> None:
        while len(self._workers[heavy]) < self.size:
            self._spawn(heavy)

    def _spawn(self, heavy: bool) -> None:
        worker = _Worker(self.config, self._root, heavy)
        self._workers[heavy].append(worker)
        self._selector.register(worker.process.stdout.fileno(), selectors.EVENT_READ, worker)

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if worker in self._workers[worker.heavy]:
            self._workers[worker.heavy].remove(worker)
            self._selector.unregister(worker.process.stdout.fileno())
        worker.stop(kill=kill)

    def _replace(self, worker: _Worker) -> None:
        self._retire(worker, kill=True)
        self._spawn(worker.heavy)

    def _dispatch(self, run: _Run) -> None:
        """Fill every ready worker's pipeline with jobs of its kind."""
        for heavy, queue in run.queues.items():
            for worker in list(self._workers[heavy]):
                while queue and worker.ready:
                    job = queue.popleft()
                    try:
                        worker.send(job, run.programs[job], run.timeout)
                    except OSError:  # it died since its last message (broken pipe)
                        queue.appendleft(job)
                        self._worker_died(worker, run)
                        break

    def _collect(self, run: _Run) -> None:
        """Wait for replies (at most until the nearest deadline) and handle them."""
        waiting = [worker for worker in self._all_workers() if worker.waited_on]
        if not waiting:
            return
        wait = max(0.0, min(1.0, min(worker.deadline for worker in waiting) - time.monotonic()))
        for key, _ in self._selector.select(timeout=wait):
            worker: _Worker = key.data
            try:
                messages = worker.receive()
            except ValueError:  # not JSON: the worker is broken
                messages = None
            if messages is None:
                self._worker_died(worker, run)
                continue
            for message in messages:
                if worker in self._workers[worker.heavy]:
                    self._handle(worker, message, run)
        now = time.monotonic()
        for worker in waiting:
            if worker.waited_on and now > worker.deadline and worker in self._workers[worker.heavy]:
                detail = "the sandbox worker did not answer in time and was killed"
                self._fail(worker, run, ErrorKind.timeout, detail)

    def _handle(self, worker: _Worker, message: dict, run: _Run) -> None:
        if worker.hello is None:
            if not isinstance(message.get("hello"), dict):
                self._fail(worker, run, ErrorKind.crashed, "bad hello from the sandbox worker")
                return
            worker.hello, self._failures = message["hello"], 0
            if not worker.heavy and not self.protections:
                self._record_protections(worker.hello)
            return
        if not worker.jobs or message.get("id") != worker.jobs[0]:
            self._fail(worker, run, ErrorKind.crashed, "unexpected reply from the sandbox worker")
            return
        run.results[worker.jobs.popleft()] = _result_from_reply(message)
        worker.deadline = time.monotonic() + run.timeout + self.config.grace_s

    def _worker_died(self, worker: _Worker, run: _Run) -> None:
        """A worker died (end of file). Its running job may be innocent (the worker could have died
        before reading it): retry it once on a fresh worker, then give it a `crashed` result."""
        if worker.jobs:
            job = worker.jobs[0]
            run.deaths[job] = run.deaths.get(job, 0) + 1
            if run.deaths[job] == 1:
                run.queues[worker.heavy].extendleft(reversed(worker.jobs))
                worker.jobs.clear()
        self._fail(worker, run, ErrorKind.crashed, "the sandbox worker died")

    def _fail(self, worker: _Worker, run: _Run, kind: ErrorKind, detail: str) -> None:
        """The running job gets an error result, queued ones go back to the queue; replace the worker."""
        if worker.jobs:
            run.results[worker.jobs.popleft()] = ExecutionResult(None, kind, detail)
            run.queues[worker.heavy].extendleft(reversed(worker.jobs))
            worker.jobs.clear()
        if worker.hello is None:
            self._failures += 1
            if self._failures >= 3:
                log = worker.startup_log()
                self._retire(worker, kill=True)
                raise SandboxError(f"sandbox worker failed to start 3 times in a row: {log}")
        self._replace(worker)

    def _record_protections(self, hello: dict) -> None:
        protections = dict(hello.get("protections", {}))
        self.landlock_abi = int(protections.pop("landlock_abi", 0))
        self.protections = {name: bool(on) for name, on in protections.items()}
        self.warnings = [str(text) for text in hello.get("warnings", [])]

    def _warn_missing(self) -> None:
        for text in self.warnings:
            logger.warning("program sandbox: %s", text)
        for name, consequence in missing_protections(self.protections).items():
            logger.warning("PROGRAM SANDBOX PROTECTION MISSING: %s: %s", name, consequence)


def _shut_down(workers: dict[bool, list[_Worker]], root: str) -> None:
    """Stop a pool's workers and remove its directory (ProgramPool.close, or its finalizer)."""
    for worker in workers[False] + workers[True]:
        worker.stop(kill=False)
    workers[False].clear()
    workers[True].clear()
    shutil.rmtree(root, ignore_errors=True)


def run_programs(
    programs: Sequence[str], config: SandboxConfig | None = None, workers: int | None = None
) -> list[ExecutionResult]:
    """Run programs in a temporary pool (start-up takes ~0.1-1 s: keep a ProgramPool to call often)."""
    with ProgramPool(workers=workers, config=config) as pool:
        return pool.run_many(programs)
