"""The code that runs inside a sandbox worker process (started by `reft.answers.execute`).

Standalone on purpose: only the standard library and the preloaded math modules, no `reft` import,
so a worker is a small, torch-free Python process. It is started as

    python -s -B _sandbox_worker.py CONFIG_JSON

with a clean environment, and talks to its pool over stdin/stdout with length-prefixed JSON messages.

Process tree of one worker (with namespaces):

    pool (trainer) -> outer -> zygote (PID 1 of its own user/pid/net/mount/ipc/uts namespaces)
                                 -> one forked child per program (+ whatever the program spawns)

The zygote preloads the modules programs use (sympy too, in the pool's sympy workers), sets up the
protections once (namespaces, a minimal read-only root with a size-limited tmpfs scratch dir,
Landlock, rlimits, no_new_privs; `_sandbox_kernel.py` holds the kernel helpers), warms up, then forks
one child per program. The child sets its CPU limit and the seccomp filter (which must not apply to
the zygote: it forbids fork), runs `solution()`, converts its value to a plain string and writes it
to a fresh pipe. After every call the zygote kills everything else in its PID namespace, so nothing
a program started outlives the call.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import struct
import sys
import time
from fractions import Fraction

# The kernel helpers sit beside this script, whose directory Python put first on sys.path; after
# importing them that entry is dropped: nothing else of reft is needed here.
from _sandbox_kernel import (  # type: ignore[import-not-found]
    LANDLOCK_RESTRICT_SELF,
    MNT_DETACH,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    SeccompFilter,
    become_init,
    build_root,
    check,
    drop_capabilities,
    enter_namespaces,
    landlock_abi,
    landlock_ruleset,
    landlock_works,
    libc,
    probe,
    readable_paths,
    seccomp_program,
    seccomp_works,
)

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

# Modules a program may use, imported once here so that every forked call gets them for free.
PRELOAD = (
    "bisect", "cmath", "collections", "copy", "datetime", "decimal", "fractions", "functools",
    "heapq", "itertools", "math", "numbers", "operator", "random", "re", "statistics", "string",
)  # fmt: skip
PRELOAD_HEAVY = ("sympy", "mpmath")
"""Preloaded only by the pool's sympy workers: a process that holds sympy forks ~4x slower."""
MAX_MESSAGE_BYTES = 1 << 20
"""Largest protocol message accepted from the pool."""
MAX_RESULT_BYTES = 1 << 16
"""Largest result a program's child may write back (it is read while the child runs)."""
MAX_VALUE_CHARS = 100
"""A returned string longer than this is not an answer."""
MAX_INT_BITS = 1024
"""Integers beyond the float range (2**1024) are not answers (and are slow to print)."""
MAX_DETAIL_CHARS = 300


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------


def read_message(fd: int) -> dict | None:
    """Read one length-prefixed JSON message; None at end of file."""
    header = _read_exact(fd, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {size} bytes is too large")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd: int, message: dict) -> None:
    """Write one length-prefixed JSON message."""
    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


# --------------------------------------------------------------------------------------------
# One call: the child that runs the program
# --------------------------------------------------------------------------------------------


class _NoResult(Exception):
    """The program ran but gave nothing that can be an answer."""


class CappedWriter(io.TextIOBase):
    """sys.stdout/sys.stderr for programs: keeps the first `limit` characters, drops the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size = limit, [], 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if type(text) is not str:
            raise TypeError("write() argument must be str")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _as_float(value: object) -> float | None:
    """The float of an exactly-typed number (float, Fraction, Decimal, real complex, sympy number).

    Only exact built-in types are accepted, so an object of the program's own class (one that
    overrides __float__, __eq__, __str__, ...) is never taken for a number.
    """
    import decimal

    kind = type(value)
    if kind is float:
        return value
    if kind in (Fraction, decimal.Decimal):
        return float(value)
    if kind is complex:
        return value.real if value.imag == 0 else None
    sympy = sys.modules.get("sympy")
    is_sympy = (
        sympy is not None and kind.__module__.startswith("sympy.") and isinstance(value, sympy.Expr)
    )
    if is_sympy and value.is_number:
        number = complex(value.evalf())
        return number.real if number.imag == 0 else None
    return None


def plain_value(value: object) -> str:
    """The returned value as a plain string: exact int digits, a float's repr, or a short string.

    Raises _NoResult for None, bools, other types, non-finite numbers, integers beyond the float
    range and strings longer than MAX_VALUE_CHARS.
    """
    kind = type(value)
    if value is None:
        raise _NoResult("solution() returned None")
    if kind is str:
        if len(value) > MAX_VALUE_CHARS:
            raise _NoResult(f"returned string is longer than {MAX_VALUE_CHARS} characters")
        return value
    sympy = sys.modules.get("sympy")
    if (
        sympy is not None
        and kind.__module__.startswith("sympy.")
        and isinstance(value, sympy.Integer)
    ):
        value, kind = int(value), int
    if kind is int:
        if value.bit_length() > MAX_INT_BITS:
            raise _NoResult("returned integer is beyond the float range")
        return str(value)
    try:
        number = _as_float(value)
    except (OverflowError, ValueError, TypeError, ArithmeticError) as error:
        raise _NoResult(
            f"returned value cannot be converted to a number ({type(error).__name__})"
        ) from None
    if number is None:
        raise _NoResult(f"solution() returned a {kind.__name__!s:.50}, not a number or a string")
    if not math.isfinite(number):
        raise _NoResult("returned value is not a finite number")
    return repr(number)


def _describe(error: BaseException) -> str:
    try:
        text = f"{type(error).__name__}: {error}"
    except BaseException:  # a hostile __str__
        text = "exception whose message cannot be printed"
    return text[:MAX_DETAIL_CHARS]


def run_program(code: str, max_output_chars: int) -> dict:
    """Execute `code`, call its solution() and convert the value, all inside the sandboxed child."""
    output = CappedWriter(max_output_chars)
    sys.stdout = sys.stderr = output
    try:
        namespace: dict = {"__name__": "__sandbox__"}
        exec(compile(code, "<program>", "exec"), namespace)
        function = namespace.get("solution")
        if not callable(function):
            message = {"error": "no_result", "detail": "the program defines no solution()"}
        else:
            message = {"value": plain_value(function())}
    except _NoResult as error:
        message = {"error": "no_result", "detail": str(error)}
    except MemoryError:
        message = {"error": "memory", "detail": "MemoryError (memory limit reached)"}
    except BaseException as error:
        message = {"error": "exception", "detail": _describe(error)}
    message["stdout"] = output.getvalue()
    return message


def limit_worker(memory_bytes: int, file_bytes: int) -> None:
    """rlimits set once on the zygote, inherited by every call's child: address space, file size,
    open files, no core dumps, no locked memory or message queues. (CPU time is set per call.)"""
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_FSIZE: file_bytes,
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        resource.RLIMIT_MSGQUEUE: 0,
    }
    for kind, limit in limits.items():
        resource.setrlimit(kind, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails instead of killing


def cpu_limit(timeout: float) -> int:
    """CPU seconds a call may use: the wall-clock timeout rounded up, plus one."""
    return math.ceil(timeout) + 1


def child_main(state: dict, code: str, write_fd: int, timeout: float, call_dir: str) -> None:
    """The forked child of one call: lock itself down, run the program, report, exit."""
    try:
        if not state["pid_namespace"]:  # else the namespace does this job
            os.setsid()
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for fd in (0, 1, 2):
            os.dup2(state["devnull"], fd)
        os.chdir(call_dir)
        seconds = cpu_limit(timeout)
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        if state["ruleset"] >= 0:
            check(libc.syscall(LANDLOCK_RESTRICT_SELF, state["ruleset"], 0), "landlock")
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, 1 << 16)
        if state["seccomp"] is not None:
            state["seccomp"].install()
        random = sys.modules.get("random")
        if random is not None:
            random.seed(0)  # the same program gives the same value on every call
        message = run_program(code, state["max_output_chars"])
    except BaseException as error:
        message = {"error": "crashed", "detail": f"sandbox setup failed: {_describe(error)}"}
    try:
        write_message(write_fd, message)
    finally:
        os._exit(0)


# --------------------------------------------------------------------------------------------
# One call: the zygote's side
# --------------------------------------------------------------------------------------------


def _wait_child(pid: int, read_fd: int, deadline: float, data: bytearray) -> bool:
    """Collect the child's output until it exits or the deadline passes; True on timeout."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    try:
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                return True
            wait_ms = remaining * 1000 if pidfd >= 0 else min(remaining * 1000, 2)
            for fd, _ in poller.poll(wait_ms):
                if fd == read_fd and not _read_some(read_fd, data):
                    poller.unregister(read_fd)
            if _exited(pid, pidfd):
                return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _exited(pid: int, pidfd: int) -> bool:
    if pidfd >= 0:
        return bool(select.select([pidfd], [], [], 0)[0])
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _read_some(fd: int, data: bytearray) -> bool:
    """Append what is readable now (up to the cap); False at end of file."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return True
    if len(data) < MAX_RESULT_BYTES + 4:
        data += chunk[: MAX_RESULT_BYTES + 4 - len(data)]
    return bool(chunk)


def _drain(fd: int, data: bytearray) -> None:
    """Read what is left in the pipe once every writer is dead, then close it."""
    os.set_blocking(fd, False)
    try:
        while len(data) <= MAX_RESULT_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    os.close(fd)


def kill_descendants(pid_namespace: bool) -> None:
    """Kill and reap every process the call left behind.

    In a PID namespace the zygote is init: kill(-1) reaches every other process in the namespace,
    and orphans are re-parented to it, so daemons that double-forked and called setsid() die too.
    Without one the zygote is a child subreaper: orphans still come back to it, and it kills its
    children until none is left.
    """
    for _ in range(1000):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # no child left at all
        for target in [-1] if pid_namespace else _child_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        time.sleep(0.0005)
    print("reft sandbox: could not reap every descendant", file=sys.stderr)


def _child_pids() -> list[int]:
    me, children = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == me:
                children.append(int(entry))
    return children


def clean_scratch(scratch: str) -> None:
    """Empty the scratch dir (the call's dir and anything a program put beside it): nothing a
    program writes reaches the next one, and the scratch space never fills up across calls."""
    for entry in os.scandir(scratch):
        try:
            os.rmdir(entry.path)  # the common case: the program wrote nothing
        except OSError:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _parse_result(data: bytes) -> dict | None:
    """The child's single message, or None if there is none or it is malformed."""
    if len(data) < 4:
        return None
    (size,) = struct.unpack(">I", data[:4])
    if size != len(data) - 4:
        return None
    try:
        message = json.loads(data[4:])
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("stdout", ""), str):
        return None
    if isinstance(message.get("value"), str) and set(message) <= {"value", "stdout"}:
        return message
    if message.get("error") in ("exception", "memory", "no_result", "crashed") and isinstance(
        message.get("detail"), str
    ):
        return message
    return None


def classify(data: bytes, status: int, cpu_seconds: float, cpu_limit: int, timed_out: bool) -> dict:
    """Turn what the child wrote and how it ended into the reply for the pool."""
    if timed_out:
        return {"error": "timeout", "detail": "wall-clock time limit reached"}
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU or (
            number == signal.SIGKILL and cpu_seconds >= cpu_limit - 0.1
        ):
            return {"error": "timeout", "detail": "CPU time limit reached"}
        return {"error": "crashed", "detail": f"killed by {signal.Signals(number).name}"}
    message = _parse_result(data)
    code = os.WEXITSTATUS(status)
    if message is not None and code == 0:
        return message
    if message is None and not data and code == 0:
        return {"error": "no_result", "detail": "the program exited without returning"}
    if data and message is None:
        return {"error": "crashed", "detail": "malformed result from the sandbox"}
    return {"error": "crashed", "detail": f"exited with status {code}"}


def run_call(state: dict, request: dict) -> dict:
    """Run one program in a fresh forked child and clean up everything it left."""
    timeout = float(request["timeout"])
    state["calls"] += 1
    call_dir = os.path.join(state["scratch"], f"call{state['calls']}")
    os.mkdir(call_dir)
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child_main(state, str(request["code"]), write_fd, timeout, call_dir)
    os.close(write_fd)
    data = bytearray()
    timed_out = _wait_child(pid, read_fd, started + timeout, data)
    _, status, usage = os.wait4(pid, 0)
    kill_descendants(state["pid_namespace"])
    _drain(read_fd, data)
    clean_scratch(state["scratch"])
    cpu_seconds = usage.ru_utime + usage.ru_stime
    reply = classify(bytes(data), status, cpu_seconds, cpu_limit(timeout), timed_out)
    reply["seconds"] = round(time.monotonic() - started, 6)
    return reply


# --------------------------------------------------------------------------------------------
# Start-up and the serve loop
# --------------------------------------------------------------------------------------------


def preload(heavy: bool) -> list[str]:
    """Import the modules programs may use; returns warnings for those that are missing."""
    import importlib

    warnings = []
    for name in PRELOAD + (PRELOAD_HEAVY if heavy else ()):
        try:
            importlib.import_module(name)
        except ImportError as error:
            warnings.append(f"module {name} is not available to programs: {error}")
    return warnings


def setup_isolation(config: dict, read_paths: list[str], protections: dict, warnings: list) -> str:
    """Enter namespaces and the minimal root where possible; returns the scratch directory."""
    if config["namespaces"]:
        try:
            enter_namespaces()
        except OSError as error:
            warnings.append(f"namespaces unavailable: {error}")
        else:
            become_init(config["protocol_fds"])
            protections.update(user_namespace=True, network_namespace=True, pid_namespace=True)
            try:
                build_root(config["root"], read_paths, config["scratch_mb"])
                protections["filesystem_view"] = True
                return "/scratch"
            except (OSError, KeyError) as error:
                warnings.append(f"minimal root file system failed: {error}")
                libc.umount2(config["root"].encode(), MNT_DETACH)
    if not protections["pid_namespace"]:
        protections["subreaper"] = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    scratch = os.path.join(config["root"], f"worker{os.getpid()}")
    os.makedirs(scratch, exist_ok=True)
    return scratch


def setup_kernel_filters(
    config: dict, read_paths: list[str], scratch: str, protections: dict, warnings: list
) -> tuple[int, SeccompFilter | None]:
    """Build the Landlock ruleset and seccomp filter, and check in a throwaway child that each works."""
    ruleset, seccomp = -1, None
    abi = landlock_abi() if config["landlock"] else 0
    if abi:
        try:
            ruleset = landlock_ruleset(abi, read_paths, [scratch])
        except OSError as error:
            warnings.append(f"landlock ruleset failed: {error}")
        if ruleset >= 0 and probe(lambda: landlock_works(ruleset, scratch)):
            protections.update(landlock=True, landlock_network=abi >= 4, signal_scope=abi >= 6)
        else:
            ruleset = -1
    protections["landlock_abi"] = abi
    if config["seccomp"] and platform.machine() == "x86_64":
        seccomp = SeccompFilter(seccomp_program())
        protections["seccomp"] = probe(lambda: seccomp_works(seccomp))
        if not protections["seccomp"]:
            seccomp = None
    elif config["seccomp"]:
        warnings.append(f"the seccomp filter is written for x86_64, not {platform.machine()}")
    return ruleset, seccomp


PROTECTIONS = (
    "user_namespace", "network_namespace", "pid_namespace", "filesystem_view", "subreaper",
    "landlock", "landlock_network", "signal_scope", "seccomp", "no_capabilities",
)  # fmt: skip


def start(config: dict) -> dict:
    """Set the worker up; returns the per-call state (and sends nothing yet)."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)  # as PID 1, no handler means immune from inside
    protocol_fds = (os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)  # stray prints must never reach the protocol pipe
    warnings = preload(config["preload_sympy"])
    with open("/proc/self/statm") as file:
        base_bytes = int(file.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    protections: dict = dict.fromkeys(PROTECTIONS, False)
    read_paths = readable_paths()
    config = {**config, "protocol_fds": protocol_fds}
    scratch = setup_isolation(config, read_paths, protections, warnings)
    ruleset, seccomp = setup_kernel_filters(config, read_paths, scratch, protections, warnings)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # inherited by every child
    if ruleset >= 0 and protections["filesystem_view"]:
        # The zygote needs nothing outside the sandbox's files either: restrict it once, and every
        # child inherits the domain. (Without the minimal root it needs /proc: children apply it.)
        check(libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock")
        os.close(ruleset)
        ruleset = -1
    memory_bytes = base_bytes + (config["memory_mb"] << 20)
    limit_worker(memory_bytes, config["file_mb"] << 20)
    try:
        drop_capabilities()
        protections["no_capabilities"] = True
    except OSError as error:
        warnings.append(f"could not drop capabilities: {error}")
    return {
        "protocol_fds": protocol_fds,
        "devnull": devnull,
        "memory_bytes": memory_bytes,
        "ruleset": ruleset,
        "seccomp": seccomp,
        "max_output_chars": config["max_output_chars"],
        "scratch": scratch,
        "calls": 0,
        "pid_namespace": protections["pid_namespace"],
        "hello": {"protections": protections, "warnings": warnings, "readable": read_paths},
    }


def warm_up() -> None:
    """Run one program in the zygote itself, so that lazy one-time work (the first compile() builds
    ~120 AST types, ~1 ms) is done once here, not again in every forked child."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        message = run_program("def solution():\n    return 6 * 7", 10)
        json.dumps(message)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def serve(state: dict) -> None:
    """Answer requests until the pool closes the pipe."""
    read_fd, write_fd = state["protocol_fds"]
    warm_up()
    gc.freeze()  # forked children then do not touch the preloaded objects' pages when collecting
    write_message(write_fd, {"hello": state["hello"]})
    while True:
        request = read_message(read_fd)
        if request is None:
            return
        try:
            reply = run_call(state, request)
        except Exception as error:  # a sandbox bug must not kill the worker silently
            reply = {"error": "crashed", "detail": f"sandbox error: {_describe(error)}"}
        reply["id"] = request.get("id")
        write_message(write_fd, reply)


if __name__ == "__main__":
    serve(start(json.loads(sys.argv[1])))
