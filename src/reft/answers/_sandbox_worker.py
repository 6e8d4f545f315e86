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
Landlock, rlimits, no_new_privs; `_sandbox_kernel.py` holds the kernel helpers; the audit hook,
asleep), warms up, then forks one child per program. The child sets its CPU limit and the seccomp
filter (which must not apply to the zygote: it forbids fork), wakes the audit hook, runs
`solution()`, converts its value to a plain string and writes it to a fresh pipe. After every call
the zygote kills everything else in its PID namespace, so nothing a program started outlives the
call.

A forbidden act (docs/grading.md, "The sandbox's policy") ends the child at once: the audit hook
sees it by its Python event name, seccomp (SIGSYS) or the file-size limit (SIGXFSZ) by the kernel's
kill; the zygote then reports `forbidden`, whatever the program would have returned.
"""

from __future__ import annotations

import _thread
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
from collections.abc import Callable
from fractions import Fraction
from json.encoder import encode_basestring_ascii

# The kernel helpers sit beside this script, whose directory Python put first on sys.path; after
# importing them that entry is dropped: nothing else of reft is needed here.
from _sandbox_kernel import (  # type: ignore[import-not-found]
    LANDLOCK_RESTRICT_SELF,
    MNT_DETACH,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
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
FORBIDDEN_EXIT = 86
"""Exit status of a child that a forbidden act ended; it decides, whatever the result pipe holds."""
FORBIDDEN_EVENT = "reft.sandbox.forbidden"
"""Audit event by which the sandbox's own checks (printed output, threads) report a forbidden act."""
ARM_EVENT = "reft.sandbox.arm"
"""Audit event by which a call's child, its setup done, wakes the audit hook up."""
RESULT_FD = 3
"""The result pipe's descriptor in a call's child."""
THREAD_GRACE_S = 0.05
"""A thread that is finishing when solution() returns gets this long to end before it counts as
left running (joined threads are gone at once; the wait keeps results deterministic)."""
FORBIDDEN_SIGNALS = {
    signal.SIGSYS: "a system call the sandbox forbids (seccomp ended the program)",
    signal.SIGXFSZ: "writing a file past the file-size limit",
}
"""How a child killed by the kernel for a forbidden act died, and what it tried."""


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
# Forbidden acts (docs/grading.md, "The sandbox's policy")
# --------------------------------------------------------------------------------------------

SPAWN, SIGNAL = "starting a process or a program", "sending a signal"
EVENT_ACTS = {
    **dict.fromkeys(
        ("os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "subprocess.Popen",
         "pty.spawn"),
        SPAWN,
    ),
    **dict.fromkeys(("os.kill", "os.killpg", "signal.pthread_kill"), SIGNAL),
    **dict.fromkeys(("resource.setrlimit", "resource.prlimit"), "changing a resource limit"),
    **dict.fromkeys(("os.link", "os.symlink"), "making a link (it could lead a path outside)"),
    # What would let a program reach the audit hook and switch it off:
    **dict.fromkeys(
        ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
         "sys.setprofile"),
        "inspecting the sandbox's own objects",
    ),
}  # fmt: skip
"""Audit events that are forbidden acts whatever their arguments (Python's event names)."""
PREFIX_ACTS = {"socket.": "using the network", "ctypes.": "calling C code (ctypes)"}
"""Event-name prefixes that are forbidden acts: every socket.* and ctypes.* event."""
READ_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "os.getxattr", "os.listxattr"})
"""Events that read their first argument, a path: allowed under the readable dirs or the scratch dir
(and, for listing, the import path: importing a missing module lists it)."""
WRITE_EVENTS = {
    "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1, "os.truncate": 1,
    "os.utime": 1, "os.setxattr": 1, "os.removexattr": 1, "os.rename": 2,
}  # fmt: skip
"""Events that change their first N arguments, paths: allowed under the scratch dir only. (An
"open" that may write, create or truncate counts here too.)"""
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def make_absolute() -> Callable[[object], str | None]:
    """absolute(path) -> a str or bytes path made absolute with `.` and `..` resolved, as written
    (links are forbidden acts, so none leads elsewhere); "" for a file descriptor; None for a path
    object, whose __fspath__ would run the program's own code inside the check."""
    str_, bytes_, int_, none, type_, getcwd = str, bytes, int, type(None), type, os.getcwd

    def absolute(path: object) -> str | None:
        kind = type_(path)
        if kind is int_ or kind is none:  # a descriptor, or the default "."
            return "" if kind is int_ else absolute(".")
        if kind is bytes_:
            path, kind = path.decode("utf-8", "surrogateescape"), str_
        if kind is not str_:
            return None
        parts: list = []
        for part in (path if path.startswith("/") else getcwd() + "/" + path).split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    return absolute


def make_judge(scratch: str, readable: list[str]) -> Callable[[str, tuple], str | None]:
    """judge(event, args) -> the forbidden act an audit event is, or None when it is allowed.

    The tables are copied into the closure, and no global or builtin name is read at call time: a
    program can rebind those, not a closure it cannot reach.
    """
    event_acts, prefixes = dict(EVENT_ACTS), tuple(PREFIX_ACTS.items())
    reads, writes, write_flags = READ_EVENTS, dict(WRITE_EVENTS), WRITE_FLAGS
    absolute, type_, int_ = make_absolute(), type, int
    read_roots = tuple(root.rstrip("/") + "/" for root in [*readable, scratch])
    write_roots = (scratch.rstrip("/") + "/",)
    listed = frozenset(absolute(path) for path in sys.path if type(path) is str)

    def judge(event: str, args: tuple) -> str | None:
        act = event_acts.get(event)
        for prefix, prefixed_act in prefixes:
            if event.startswith(prefix):
                act = prefixed_act
        if act is not None:
            return f"{act} ({event})"
        count = writes.get(event, 0)
        writing = count > 0 or (
            event == "open" and (type_(args[2]) is not int_ or args[2] & write_flags)
        )
        if not writing and event not in reads:
            return None
        for path in args[: count or 1]:
            where = absolute(path)
            if where is None:
                return f"giving a path that is not a str, bytes or file descriptor ({event})"
            roots = write_roots if writing else read_roots
            if (
                where
                and not (where + "/").startswith(roots)
                and not (event in ("os.listdir", "os.scandir") and where in listed)
            ):
                place = "outside the scratch dir" if writing else "outside the sandbox's files"
                return f"{'writing' if writing else 'reading'} {place} ({event} {where!r})"
        return None

    return judge


def install_audit_hook(judge: Callable[[str, tuple], str | None], printed: list) -> None:
    """Install, in the zygote, the hook that ends a call's child at the program's first forbidden
    act, before the act and even if the program would catch its error: it reports the act on the
    result pipe (RESULT_FD), then exits with FORBIDDEN_EXIT (which decides, whatever else the pipe
    holds). `printed` is the call's output writer's list of parts.

    The hook sleeps until a child, its setup done, raises ARM_EVENT: the zygote and the child's
    setup (rlimits, ctypes calls) are never judged, and each child pays nothing to install it. It
    reads only closure variables (see make_judge); nothing else holds it, and Python offers no way
    to remove or list audit hooks, so a program cannot switch it off again.
    """
    exit_, write, pack, encode = os._exit, os.write, struct.pack, encode_basestring_ascii
    join, length, lock = "".join, len, _thread.allocate_lock()
    base_exception, str_, type_ = BaseException, str, type
    arm_event, forbidden_event, result_fd = ARM_EVENT, FORBIDDEN_EVENT, RESULT_FD
    status, limit = FORBIDDEN_EXIT, MAX_DETAIL_CHARS
    armed = False

    def hook(event: str, args: tuple) -> None:
        nonlocal armed
        if not armed:
            armed = event == arm_event
            return
        try:
            act = args[0] if event == forbidden_event else judge(event, args)
            if act is None:
                return
            detail = encode(act[:limit] if type_(act) is str_ else "a forbidden act")
        except base_exception:  # fail closed: an event the judge cannot read is not allowed
            detail = encode(f"an act the sandbox could not judge ({event})")
        lock.acquire()  # one report, even when threads act at once; never released
        try:
            stdout = encode(join(printed))
        except base_exception:
            stdout = '""'
        body = (
            '{"error": "forbidden", "detail": ' + detail + ', "stdout": ' + stdout + "}"
        ).encode()
        try:
            write(result_fd, pack(">I", length(body)) + body)
        finally:
            exit_(status)

    sys.addaudithook(hook)


# --------------------------------------------------------------------------------------------
# One call: the child that runs the program
# --------------------------------------------------------------------------------------------


class _NoResult(Exception):
    """The program ran but gave nothing that can be an answer."""


class CappedWriter(io.TextIOBase):
    """sys.stdout/sys.stderr for programs: keeps the first `limit` characters, drops the rest, and
    reports printing more than `flood_limit` characters in all as a forbidden act."""

    def __init__(self, limit: int, flood_limit: int) -> None:
        self.limit, self.flood_limit = limit, flood_limit
        self.parts: list[str] = []
        self.size = self.written = 0
        self.audit = sys.audit  # bound now: the program may rebind sys.audit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if type(text) is not str:
            raise TypeError("write() argument must be str")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.written += len(text)
        if self.written > self.flood_limit:
            self.audit(FORBIDDEN_EVENT, f"printing more than {self.flood_limit} characters")
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


def run_program(code: str, output: CappedWriter) -> dict:
    """Execute `code`, call its solution() and convert the value, all inside the sandboxed child.

    A thread still running when solution() returns is a forbidden act (reported to the audit hook).
    What that check uses is bound to local names before the program runs: a program can rebind
    globals, builtins and module attributes, not another frame's locals (tracing is forbidden).
    """
    audit, forbidden_event, count_threads = sys.audit, FORBIDDEN_EVENT, _thread._count
    monotonic, sleep, grace = time.monotonic, time.sleep, THREAD_GRACE_S
    threads_before = count_threads()
    sys.stdout = sys.stderr = output
    try:
        namespace: dict = {"__name__": "__sandbox__"}
        exec(compile(code, "<program>", "exec"), namespace)
        function = namespace.get("solution")
        if not callable(function):
            message = {"error": "no_result", "detail": "the program defines no solution()"}
        else:
            value = function()
            deadline = monotonic() + grace
            while count_threads() > threads_before and monotonic() < deadline:
                sleep(0.001)
            if count_threads() > threads_before:
                audit(forbidden_event, "leaving a thread running when solution() returned")
            message = {"value": plain_value(value)}
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
    # The zygote's own writes (its stderr is a file) fail instead of killing it; each call's child
    # restores the default action.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


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
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # a write past the file-size limit is fatal
        # The kernel's kills for forbidden acts (SIGSYS, SIGXFSZ) must not dump a core anywhere.
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        if state["ruleset"] >= 0:
            check(libc.syscall(LANDLOCK_RESTRICT_SELF, state["ruleset"], 0), "landlock")
        if write_fd != RESULT_FD:
            os.dup2(write_fd, RESULT_FD)
        os.closerange(RESULT_FD + 1, 1 << 16)
        if state["seccomp"] is not None:
            state["seccomp"].install()
        random = sys.modules.get("random")
        if random is not None:
            random.seed(0)  # the same program gives the same value on every call
        sys.audit(ARM_EVENT)  # from here on, every audit event is judged (when the hook is on)
        message = run_program(code, state["output"])
    except BaseException as error:
        message = {"error": "crashed", "detail": f"sandbox setup failed: {_describe(error)}"}
    try:
        write_message(RESULT_FD, message)
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


ERROR_KINDS = ("exception", "memory", "no_result", "crashed", "forbidden")
"""Error kinds a child may report itself (timeouts are the zygote's to give)."""


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
    if message.get("error") in ERROR_KINDS and isinstance(message.get("detail"), str):
        return message
    return None


def classify(data: bytes, status: int, cpu_seconds: float, cpu_limit: int, timed_out: bool) -> dict:
    """Turn what the child wrote and how it ended into the reply for the pool."""
    if timed_out:
        return {"error": "timeout", "detail": "wall-clock time limit reached"}
    message = _parse_result(data)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU or (
            number == signal.SIGKILL and cpu_seconds >= cpu_limit - 0.1
        ):
            return {"error": "timeout", "detail": "CPU time limit reached"}
        if number in FORBIDDEN_SIGNALS:
            return {"error": "forbidden", "detail": FORBIDDEN_SIGNALS[number]}
        return {"error": "crashed", "detail": f"killed by {signal.Signals(number).name}"}
    code = os.WEXITSTATUS(status)
    if code == FORBIDDEN_EXIT:  # the audit hook's exit: forbidden, whatever the pipe holds
        if message is None or message.get("error") != "forbidden":
            message = {"error": "forbidden", "detail": "a forbidden act"}
        return message
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
    "landlock", "landlock_network", "signal_scope", "seccomp", "no_capabilities", "audit_hook",
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
    protections["audit_hook"] = bool(config["audit_hook"])
    memory_bytes = base_bytes + (config["memory_mb"] << 20)
    limit_worker(memory_bytes, config["file_mb"] << 20)
    try:
        drop_capabilities()
        protections["no_capabilities"] = True
    except OSError as error:
        warnings.append(f"could not drop capabilities: {error}")
    os.environ["TMPDIR"] = "."  # tempfile then writes in the call's dir, where programs may write
    # Made once here, unused by the zygote: each child gets a fresh copy with its fork.
    output = CappedWriter(config["max_output_chars"], config["max_printed_chars"])
    if config["audit_hook"]:
        install_audit_hook(make_judge(scratch, read_paths), output.parts)
    return {
        "protocol_fds": protocol_fds,
        "devnull": devnull,
        "memory_bytes": memory_bytes,
        "ruleset": ruleset,
        "seccomp": seccomp,
        "output": output,
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
        message = run_program("def solution():\n    return 6 * 7", CappedWriter(10, 10))
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
