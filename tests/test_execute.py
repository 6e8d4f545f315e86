"""The program sandbox: benign programs, an adversarial table, each protection layer alone, healing.

Every hostile program below returns the gold answer (42) only if its attack worked, or, in the
forbidden-act cases, after catching the error of an attempt the sandbox refuses. "Contained" means:
an error kind (`forbidden` for every attempt at a forbidden act, docs/grading.md "The sandbox's
policy"), no reward, no side effect outside the sandbox, and benign programs graded after it still
pass. A case names the kernel protections that contain it (any one is enough); it is skipped,
saying so, on a kernel that offers none of them. The audit hook is always on in `pool`.
"""

from __future__ import annotations

import dis
import logging
import os
import signal
import socket
import subprocess
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from reft.answers.execute import (
    MAX_PROGRAM_CHARS,
    WORKER_SCRIPT,
    ErrorKind,
    ExecutionResult,
    ProgramPool,
    SandboxConfig,
    missing_protections,
    uses_sympy,
)
from reft.answers.rewards import grade_execution
from reft.data.example import AnswerKind

GOLD = "42"
TIMEOUT = 1.0
E = ErrorKind

BENIGN = [
    ("def solution():\n    return 6 * 7", "42"),
    ("import math\ndef solution():\n    return math.sqrt(16) + math.floor(2.5)", "6"),
    ("from fractions import Fraction\ndef solution():\n    return Fraction(3, 4) * 2", "1.5"),
    ("def solution():\n    total = int('40') + len([1, 2])\n    return total", "42"),
    (
        "import sympy\ndef solution():\n    x = sympy.symbols('x')\n    return sympy.solve(2 * x - 8, x)[0]",
        "4",
    ),
]


def assert_benign_pass(pool: ProgramPool) -> None:
    results = pool.run_many([code for code, _ in BENIGN])
    for (code, gold), result in zip(BENIGN, results, strict=True):
        grade = grade_execution(result, gold, AnswerKind.numeric)
        assert grade.correct, f"benign program failed after a hostile one: {code!r} -> {result}"


@pytest.fixture(scope="module")
def pool():
    config = SandboxConfig(timeout_s=TIMEOUT, grace_s=3.0)
    with ProgramPool(workers=2, config=config) as pool:
        yield pool
        for pid in pool.worker_pids:
            assert namespace_members(pid) in (None, 1), (
                "stray processes left in a worker's namespace"
            )


def init_of(outer_pid: int) -> int | None:
    """The worker's PID-1 process (the only child of the process outside the namespace)."""
    path = Path(f"/proc/{outer_pid}/task/{outer_pid}/children")
    children = path.read_text().split() if path.exists() else []
    return int(children[0]) if len(children) == 1 else None


def namespace_members(outer_pid: int) -> int | None:
    """How many processes live in the worker's PID namespace (None: no namespace to look at)."""
    init = init_of(outer_pid)
    if init is None:
        return None
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    count = 0
    for entry in os.listdir("/proc"):
        try:
            count += entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == namespace
        except OSError:
            continue
    return count


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    errors: frozenset[ErrorKind]
    needs: tuple[str, ...]
    """Kernel protections that contain it (any one suffices); empty: the audit hook, rlimits,
    timeouts or conversion alone (always on)."""
    reason: str


def case(name: str, code: str, errors: set[ErrorKind], needs: tuple[str, ...], reason: str) -> Case:
    return Case(name, code, frozenset(errors), needs, reason)


def caught(name: str, imports: str, attempt: str, reason: str, needs: tuple[str, ...] = ()) -> Case:
    """A program that attempts a forbidden act, catches whatever that raises and returns the right
    value: before the forbidden-act policy such a program was graded correct."""
    code = (
        f"import {imports}\ndef solution():\n    try:\n        {attempt}\n"
        "    except BaseException:\n        pass\n    return 42"
    )
    return case(name, code, {E.forbidden}, needs, reason)


FILES = ("filesystem_view", "landlock")
PROCESSES = ("seccomp",)
HOSTILE = [
    case(
        "infinite_loop",
        "def solution():\n    while True:\n        pass",
        {E.timeout},
        (),
        "wall clock",
    ),
    case(
        "sleep",
        "import time\ndef solution():\n    time.sleep(100)\n    return 42",
        {E.timeout},
        (),
        "sleeping is wall-clock time too",
    ),
    case(
        "signal_tampering",
        "import signal\ndef solution():\n"
        "    for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):\n"
        "        signal.signal(s, signal.SIG_IGN)\n"
        "    signal.alarm(0)\n    while True:\n        pass",
        {E.timeout},
        (),
        "the sandbox's kill is SIGKILL from outside, and RLIMIT_CPU's hard limit is SIGKILL",
    ),
    case(
        "cpu_in_threads",
        "import threading\ndef solution():\n    def spin():\n        while True:\n            pass\n"
        "    for _ in range(4):\n        threading.Thread(target=spin, daemon=True).start()\n    spin()",
        {E.timeout},
        (),
        "CPU burnt in threads still hits a limit",
    ),
    case(
        "memory_bomb",
        "def solution():\n    x = bytearray(10 ** 11)\n    return 42",
        {E.memory},
        (),
        "RLIMIT_AS",
    ),
    case(
        "huge_int",
        "def solution():\n    return 10 ** 10 ** 8",
        {E.timeout, E.memory},
        (),
        "computing it is bounded",
    ),
    case(
        "beyond_float",
        "def solution():\n    return 2 ** 5000",
        {E.no_result},
        (),
        "beyond float range: no answer",
    ),
    case(
        "nan",
        "def solution():\n    return float('nan')",
        {E.no_result},
        (),
        "NaN is never an answer",
    ),
    case(
        "inf",
        "def solution():\n    return float('inf')",
        {E.no_result},
        (),
        "inf is never an answer",
    ),
    case(
        "eq_always_true",
        "class X:\n    def __eq__(self, o):\n        return True\n"
        "    __hash__ = object.__hash__\ndef solution():\n    return X()",
        {E.no_result},
        (),
        "only plain types leave the sandbox; __eq__ never reaches the grader",
    ),
    case(
        "float_override",
        "class X:\n    def __float__(self):\n        return 42.0\n"
        "    def __str__(self):\n        return '42'\n    __repr__ = __str__\n"
        "def solution():\n    return X()",
        {E.no_result},
        (),
        "__float__/__str__ are not trusted",
    ),
    case(
        "sub_override",
        "class X(float):\n    def __sub__(self, o):\n        return 0.0\n"
        "    def __rsub__(self, o):\n        return 0.0\n    def __abs__(self):\n        return 0.0\n"
        "def solution():\n    return X(7)",
        {E.no_result},
        (),
        "float subclasses are rejected",
    ),
    case(
        "int_subclass",
        "class X(int):\n    def __eq__(self, o):\n        return True\n"
        "    __hash__ = int.__hash__\ndef solution():\n    return X(5)",
        {E.no_result},
        (),
        "int subclasses rejected",
    ),
    case(
        "str_subclass",
        "class X(str):\n    def __eq__(self, o):\n        return True\n"
        "    __hash__ = str.__hash__\ndef solution():\n    return X('5')",
        {E.no_result},
        (),
        "str subclasses rejected",
    ),
    case(
        "fake_sympy",
        "class X:\n    __module__ = 'sympy.core.numbers'\n    def __float__(self):\n        return 42.0\n"
        "def solution():\n    return X()",
        {E.no_result},
        (),
        "claiming sympy's module is not enough",
    ),
    case("bool", "def solution():\n    return True", {E.no_result}, (), "a bool is not a number"),
    case(
        "list", "def solution():\n    return [42]", {E.no_result}, (), "containers are not answers"
    ),
    case(
        "long_string",
        "def solution():\n    return '4' * 1000",
        {E.no_result},
        (),
        "long strings are not answers",
    ),
    case(
        "hanging_str_exception",
        "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
        "def solution():\n    raise E()",
        {E.timeout},
        (),
        "describing the exception is under the limits",
    ),
    case(
        "system_exit",
        "import sys\ndef solution():\n    sys.exit(42)",
        {E.exception},
        (),
        "SystemExit is an exception",
    ),
    case(
        "os_exit",
        "import os\ndef solution():\n    os._exit(0)",
        {E.no_result},
        (),
        "exited without a value",
    ),
    case(
        "segfault",
        "import ctypes\ndef solution():\n    ctypes.string_at(0)\n    return 42",
        {E.forbidden},
        (),
        "ctypes is a forbidden act (it would reach under the audit hook)",
    ),
    case(
        "stack_overflow",
        "import sys\nclass A:\n    def __repr__(self):\n        return repr(self)\n"
        "def solution():\n    sys.setrecursionlimit(10 ** 8)\n    return repr(A())",
        {E.crashed},
        (),
        "SIGSEGV",
    ),
    case(
        "recursion", "def solution():\n    return solution()", {E.exception}, (), "RecursionError"
    ),
    case(
        "forged_result",
        "import json, os, struct\ndef solution():\n    body = json.dumps(dict(value='42')).encode()\n"
        "    for fd in range(3, 64):\n        try:\n            os.write(fd, b'garbage' + struct.pack('>I', len(body)) + body)\n"
        "        except OSError:\n            pass\n    return 41",
        {E.crashed},
        (),
        "extra bytes on the result pipe make the whole result malformed",
    ),
    case(
        "write_outside",
        "def solution():\n    open({host_file!r}, 'w').write('pwned')\n    return 42",
        {E.forbidden},
        FILES,
        "no writes outside scratch",
    ),
    case(
        "delete_file",
        "import os\ndef solution():\n    os.remove({victim_file!r})\n    return 42",
        {E.forbidden},
        FILES,
        "no deletes outside scratch",
    ),
    case(
        "read_etc",
        "def solution():\n    open('/etc/passwd').read()\n    return 42",
        {E.forbidden},
        FILES,
        "/etc is not there",
    ),
    case(
        "read_answers",
        "def solution():\n    return int(open({secret_file!r}).read())",
        {E.forbidden},
        FILES,
        "the gold answer file is out of reach",
    ),
    case(
        "read_proc",
        "def solution():\n    open('/proc/1/environ').read()\n    return 42",
        {E.forbidden},
        FILES,
        "/proc is not there",
    ),
    case(
        "list_root",
        "import os\ndef solution():\n    return 42 if os.listdir('/') else 0",
        {E.forbidden},
        ("landlock",),
        "the root dir is not readable",
    ),
    case(
        "big_file",
        "def solution():\n    open('big', 'wb').write(b'x' * 10 ** 7)\n    return 42",
        {E.forbidden},
        (),
        "RLIMIT_FSIZE: SIGXFSZ ends the program",
    ),
    case(
        "os_system",
        "import os\ndef solution():\n    os.system('cat {secret_file} > {host_file}')\n"
        "    return int(open({host_file!r}).read())",
        {E.forbidden},
        PROCESSES + FILES,
        "no shell",
    ),
    case(
        "subprocess",
        "import subprocess\ndef solution():\n    return int(subprocess.check_output(['cat', {secret_file!r}]))",
        {E.forbidden},
        PROCESSES,
        "no new processes",
    ),
    case(
        "dunder_import",
        "def solution():\n    return int(__import__('subprocess').getoutput('cat {secret_file}'))",
        {E.forbidden},
        PROCESSES,
        "__import__ reaches the same wall",
    ),
    case(
        "fork",
        "import os\ndef solution():\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n    return 42",
        {E.forbidden},
        PROCESSES,
        "fork is denied",
    ),
    case(
        "fork_bomb",
        "import os\ndef solution():\n    while True:\n        os.fork()",
        {E.forbidden},
        PROCESSES,
        "fork is denied",
    ),
    case(
        "socket_connect",
        "import socket\ndef solution():\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
        "    s.sendall(b'pwned')\n    return 42",
        {E.forbidden},
        ("network_namespace", "seccomp", "landlock_network"),
        "no network",
    ),
    case(
        "kill_parent",
        "import os, signal\ndef solution():\n    os.kill(os.getppid(), signal.SIGKILL)\n"
        "    os.kill({victim_pid}, signal.SIGKILL)\n    return 42",
        {E.forbidden},
        ("seccomp", "signal_scope"),
        "no signals outside the sandbox",
    ),
    case(
        "kill_everything",
        "import os, signal\ndef solution():\n    os.kill(-1, signal.SIGKILL)\n    return 42",
        {E.forbidden},
        ("seccomp",),
        "kill(-1) is denied (and would only reach the namespace)",
    ),
    case(
        "raise_rlimit",
        "import resource\ndef solution():\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
        "    return 42",
        {E.forbidden},
        ("seccomp", "user_namespace"),
        "limits cannot be raised",
    ),
    case(
        "remount_writable",
        "import ctypes, os\ndef solution():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    target = os.path.dirname(os.__file__)\n"
        "    if libc.mount(None, target.encode(), None, 32 | 4096, None) != 0:\n"
        "        raise OSError(ctypes.get_errno(), 'mount')\n"
        "    open(os.path.join(target, 'pwned.txt'), 'w').write('x')\n    return 42",
        {E.forbidden},
        ("seccomp", "landlock", "no_capabilities"),
        "no capabilities: the read-only standard library cannot be remounted writable",
    ),
    case(
        "tamper_modules",
        "import builtins, math, fractions\ndef solution():\n    builtins.int = lambda *a: 0\n"
        "    math.sqrt = lambda x: 0\n    fractions.Fraction = None\n    return None",
        {E.no_result},
        (),
        "each call is a fresh fork: tampering dies with it",
    ),
]
# The forbidden-act policy: each attempt ends the program with `forbidden` and earns 0, even when the
# program catches the error and returns the right value (all of these were graded correct before).
HOSTILE += [
    caught("caught_os_system", "os", "os.system('true')", "spawning: os.system"),
    caught(
        "caught_popen_via_subclasses",
        "sympy  # runs on a sympy worker, where subprocess is loaded",
        "[c for c in object.__subclasses__() if c.__name__ == 'Popen'][0](['true']).wait()",
        "spawning: Popen reached through object.__subclasses__()",
    ),
    caught(
        "caught_system_via_subclasses",
        "math",
        "[c for c in object.__subclasses__() if c.__name__ == '_wrap_close'][0]"
        ".__init__.__globals__['system']('true')",
        "spawning: os.system reached through object.__subclasses__()",
    ),
    caught(
        "caught_dunder_import", "math", "__import__('os').system('true')", "spawning: __import__"
    ),
    caught("caught_fork", "os", "os.fork()", "spawning: fork"),
    caught("caught_posix_spawn", "os", "os.posix_spawn('/bin/true', ['true'], {{}})", "spawning"),
    caught(
        "caught_killpg",
        "os, signal",
        "os.killpg(os.getpgid(0), signal.SIGTERM)",
        "signalling its process group",
    ),
    caught(
        "caught_kill_outside",
        "os, signal",
        "os.kill({victim_pid}, signal.SIGKILL)",
        "signalling outside the program",
    ),
    caught(
        "caught_pidfd",
        "os",
        "os.pidfd_open(os.getppid())",
        "a system call without an audit event: seccomp ends the process",
        needs=("seccomp",),
    ),
    case(
        "print_flood",
        "def solution():\n    for _ in range(300):\n        print('x' * 10 ** 6)\n    return 42",
        {E.forbidden},
        (),
        "printing hundreds of megabytes exceeds the output cap",
    ),
    case(
        "thread_outlives_return",
        "import threading, time\ndef solution():\n"
        "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n    return 42",
        {E.forbidden},
        (),
        "a thread still running when solution() returns",
    ),
    caught("caught_write_outside", "os", "open({host_file!r}, 'w').write('pwned')", "files: write"),
    caught("caught_read_answers", "os", "open({secret_file!r}).read()", "files: read"),
    caught("caught_list_root", "os", "os.listdir('/')", "files: list a host directory"),
    caught(
        "caught_socket",
        "socket",
        "socket.create_connection(('127.0.0.1', {port}), timeout=0.5)",
        "network",
    ),
    caught("caught_ctypes", "ctypes", "ctypes.CDLL(None).getpid()", "C code"),
    caught(
        "caught_raise_rlimit",
        "resource",
        "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        "raising a limit",
    ),
    caught(
        "caught_big_file", "os", "open('big', 'wb').write(b'x' * 10 ** 7)", "RLIMIT_FSIZE: SIGXFSZ"
    ),
    caught(
        "caught_ignore_sigxfsz",
        "signal",
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)",
        "SIGXFSZ must stay fatal",
        needs=("seccomp",),
    ),
    caught("caught_gc_referrers", "gc", "gc.get_objects()", "reaching the audit hook"),
    case(
        "tamper_then_act",
        "import builtins, sys\ndef solution():\n    worker = sys.modules['__main__']\n"
        "    for name, value in list(vars(worker).items()):\n"
        "        if not name.startswith('__') and type(value) in (dict, frozenset, tuple, str, int):\n"
        "            setattr(worker, name, type(value)())\n"
        "    builtins.type = lambda *args: str\n"
        "    try:\n        open({secret_file!r}).read()\n    except BaseException:\n"
        "        pass\n    return 42",
        {E.forbidden},
        (),
        "rebinding the worker's tables and builtins does not switch the audit hook off",
    ),
]
# kill(-1) must never run where neither a PID namespace nor seccomp stops it: it would hit the host.
DANGEROUS_WITHOUT = {"kill_everything": ("pid_namespace", "seccomp"), "fork_bomb": ("seccomp",)}


@pytest.fixture
def targets(tmp_path):
    """Host-side things hostile programs aim at: a secret (gold) file, a victim file and process."""
    secret = tmp_path / "gold_answers.txt"
    secret.write_text(GOLD)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    process = subprocess.Popen(["sleep", "60"])
    yield {
        "secret_file": str(secret),
        "victim_file": str(victim),
        "host_file": str(tmp_path / "pwned.txt"),
        "victim_pid": process.pid,
        "port": server.getsockname()[1],
        "server": server,
        "process": process,
    }
    process.kill()
    process.wait()
    server.close()


def _connection_attempted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except (TimeoutError, OSError):
        return False
    connection.close()
    return True


@pytest.mark.parametrize("hostile", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_program_is_contained(pool, targets, hostile):
    for needed in (DANGEROUS_WITHOUT.get(hostile.name, ()), hostile.needs):
        if needed and not any(pool.protections.get(name) for name in needed):
            pytest.skip(
                f"{hostile.name}: needs one of {needed}, missing here: {missing_protections(pool.protections)}"
            )
    code = hostile.code.format(
        **{k: v for k, v in targets.items() if k not in ("server", "process")}
    )
    result = pool.run(code)
    grade = grade_execution(result, GOLD, AnswerKind.numeric)
    assert result.error in hostile.errors, f"{hostile.reason}: {result}"
    assert grade.reward == 0.0 and not grade.correct, hostile.reason
    assert not Path(targets["host_file"]).exists(), "a file was written outside the sandbox"
    assert Path(targets["victim_file"]).read_text() == "keep me", "a host file was changed"
    assert targets["process"].poll() is None, "a process outside the sandbox was killed"
    assert not _connection_attempted(targets["server"]), "the program reached the network"
    assert_benign_pass(pool)


def test_benign_results_and_types(pool):
    cases = [
        ("def solution():\n    return 7", ExecutionResult("7")),
        ("def solution():\n    return 2.5", ExecutionResult("2.5")),
        (
            "from fractions import Fraction\ndef solution():\n    return Fraction(1, 3)",
            ExecutionResult("0.3333333333333333"),
        ),
        (
            "from decimal import Decimal\ndef solution():\n    return Decimal('1.25')",
            ExecutionResult("1.25"),
        ),
        ("def solution():\n    return 'c'", ExecutionResult("c")),
        ("import sympy\ndef solution():\n    return sympy.Rational(3, 4)", ExecutionResult("0.75")),
        ("import sympy\ndef solution():\n    return sympy.sqrt(4)", ExecutionResult("2")),
        (
            "import statistics, itertools, functools, datetime\ndef solution():\n"
            "    return statistics.mean([1, 2, 3]) + len(list(itertools.permutations(range(3))))",
            ExecutionResult("8"),
        ),
        ("x = 1\n", ExecutionResult(None, E.no_result, "the program defines no solution()")),
        ("def solution(:\n", None),
    ]
    results = pool.run_many([code for code, _ in cases])
    for (code, expected), result in zip(cases, results, strict=True):
        if expected is None:
            assert result.error is E.exception and "SyntaxError" in result.detail, code
        else:
            assert (result.value, result.error) == (expected.value, expected.error), code


def test_memory_limit_stops_gradual_growth(pool):
    """Many allocations below the limit add up to RLIMIT_AS too. (Own test with a long timeout:
    touching ~500 MB can take over a second on a cold virtual machine.)"""
    program = (
        "def solution():\n    hoard = []\n    while True:\n        hoard.append(bytearray(10 ** 7))"
    )
    result = pool.run(program, timeout_s=30)
    assert result.error is E.memory, result
    assert_benign_pass(pool)


def test_oversized_program_is_rejected_without_running(pool):
    program = "def solution():\n    return 1\n" + "#" * MAX_PROGRAM_CHARS
    assert pool.run(program).error is E.exception
    assert pool.run("def solution():\n    return 1").value == "1"


def test_stdout_is_captured_and_capped(pool):
    result = pool.run(
        "def solution():\n    print('x' * 10 ** 6)\n    print('never seen')\n    return 1"
    )
    assert result.value == "1"
    assert result.stdout == "x" * pool.config.max_output_chars


# Ordinary programs never trip the forbidden-act policy: printing, caught ordinary errors, joined
# threads, files in the scratch dir, imports (sympy's lazy ones, a missing module's failed one).
UNFORBIDDEN = [
    "def solution():\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        pass\n"
    "    for i in range(200):\n        print('step', i)\n    return 42",
    "import threading\ndef solution():\n    found = []\n"
    "    worker = threading.Thread(target=lambda: found.append(42))\n"
    "    worker.start()\n    worker.join()\n    return found[0]",
    "import os\ndef solution():\n    os.mkdir('d')\n    open('d/a.txt', 'w').write('42')\n"
    "    os.rename('d/a.txt', 'd/b.txt')\n    return int(open('d/b.txt').read()) if os.listdir('d') else 0",
    "import tempfile\ndef solution():\n    with tempfile.TemporaryFile() as file:\n"
    "        file.write(b'42')\n        file.seek(0)\n        return int(file.read())",
    "def solution():\n    try:\n        import numpy\n    except ImportError:\n        pass\n"
    "    import csv, textwrap, json\n    return 42",
    "import sympy\ndef solution():\n    x = sympy.symbols('x')\n"
    "    area = sympy.integrate(sympy.sin(x) ** 2, (x, 0, sympy.pi))\n"
    "    return sympy.nsimplify(area / sympy.pi * 84)",
]


def test_ordinary_programs_are_not_forbidden(pool):
    results = pool.run_many(UNFORBIDDEN)
    for code, result in zip(UNFORBIDDEN, results, strict=True):
        assert result.value == "42", f"{code!r} -> {result}"


def test_forbidden_earns_nothing_not_the_partial_reward():
    result = ExecutionResult(None, E.forbidden, "starting a process or a program (os.system)")
    grade = grade_execution(result, GOLD, AnswerKind.numeric, partial_reward=0.1)
    assert (grade.reward, grade.correct, grade.error) == (0.0, False, "forbidden")


def test_audit_hook_reads_no_global_name():
    """A program can rebind the worker's globals and the builtins; the hook and its judge must only
    read their closure (plus constants), or such a rebinding could switch them off."""
    source = WORKER_SCRIPT.read_text()
    codes, seen = [compile(source, str(WORKER_SCRIPT), "exec")], {}
    while codes:
        code = codes.pop()
        seen[code.co_name] = code
        codes += [const for const in code.co_consts if isinstance(const, types.CodeType)]
    for name in ("hook", "judge", "absolute"):
        globals_read = [
            op.argval
            for op in dis.get_instructions(seen[name])
            if op.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        ]
        assert not globals_read, f"{name} reads {globals_read}"


def test_results_are_deterministic(pool):
    program = (
        "import random\ndef solution():\n"
        "    order = ''.join(sorted({'apple', 'pear', 'fig'}, key=hash))\n"
        "    return order + str(random.random())[:8]"
    )
    results = pool.run_many([program] * 6)  # spread over both workers
    assert len({r.value for r in results}) == 1 and results[0].error is None


def test_sympy_programs_go_to_warm_workers(pool):
    assert (
        uses_sympy("import sympy")
        and uses_sympy("from mpmath import mp")
        and not uses_sympy("import math")
    )
    pool.run("import sympy\ndef solution():\n    return 1")  # make sure the sympy workers exist
    started = time.perf_counter()
    results = pool.run_many(["import sympy\ndef solution():\n    return sympy.Integer(5) * 2"] * 10)
    assert [r.value for r in results] == ["10"] * 10
    assert time.perf_counter() - started < 3.0, (
        "sympy should be preloaded, not imported per program"
    )


def test_protections_are_reported(pool, caplog):
    assert set(pool.protections) >= {"user_namespace", "pid_namespace", "landlock", "seccomp"}
    assert pool.protections["audit_hook"], "the forbidden-act policy is on by default"
    weak_config = SandboxConfig(landlock=False, seccomp=False)
    with (
        caplog.at_level(logging.WARNING, logger="reft.answers.execute"),
        ProgramPool(1, weak_config) as weak,
    ):
        assert weak.protections["landlock"] is False and weak.protections["seccomp"] is False
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "PROTECTION MISSING: landlock" in messages and "PROTECTION MISSING: seccomp" in messages


# ----------------------------------------------------------------------------------------------
# Each layer alone: namespaces without seccomp (or the audit hook, which would end these programs
# at their first act) must still kill what a program left behind.
# ----------------------------------------------------------------------------------------------

DAEMONS = {
    "fork_then_act": (
        "import os, time\ndef solution():\n    if os.fork() == 0:\n        time.sleep(0.3)\n"
        "        open('/scratch/{marker}', 'w').write('late')\n        os._exit(0)\n    return 1"
    ),
    "double_fork_setsid_daemon": (
        "import os, time\ndef solution():\n    if os.fork() == 0:\n        os.setsid()\n"
        "        if os.fork() == 0:\n            time.sleep(0.3)\n"
        "            open('/scratch/{marker}', 'w').write('late')\n        os._exit(0)\n    return 1"
    ),
    "thread_after_return": (
        "import threading, time\ndef solution():\n    def late():\n        time.sleep(0.3)\n"
        "        open('/scratch/{marker}', 'w').write('late')\n"
        "    threading.Thread(target=late).start()\n    return 1"
    ),
}


@pytest.fixture(scope="module")
def namespace_pool():
    config = SandboxConfig(timeout_s=TIMEOUT, seccomp=False, audit_hook=False)
    with ProgramPool(workers=1, config=config) as pool:
        if not (pool.protections.get("pid_namespace") and pool.protections.get("filesystem_view")):
            pytest.skip(
                f"no PID namespace / minimal root here: {missing_protections(pool.protections)}"
            )
        yield pool


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_namespace_kills_leftovers(namespace_pool, name):
    marker = f"evidence_{name}"
    result = namespace_pool.run(DAEMONS[name].format(marker=marker))
    assert result.value == "1", result
    assert namespace_members(namespace_pool.worker_pids[0]) == 1, "a process outlived the call"
    time.sleep(0.6)  # the leftover would have acted by now
    check = (
        f"import os\ndef solution():\n    return 42 if os.path.exists('/scratch/{marker}') else 0"
    )
    assert namespace_pool.run(check).value == "0", "a leftover process acted after the call"


def test_scratch_is_private_per_call(namespace_pool):
    writer = (
        "import os\ndef solution():\n    open('/scratch/left_behind', 'w').write('42')\n"
        "    open('here.txt', 'w').write('42')\n    return 1"
    )
    reader = (
        "import os\ndef solution():\n    seen = os.listdir('/scratch') + os.listdir('.')\n"
        "    return 42 if any(name in seen for name in ('left_behind', 'here.txt')) else 0"
    )
    results = namespace_pool.run_many([writer, reader])
    assert [r.value for r in results] == ["1", "0"], "a file left by one program reached the next"


# ----------------------------------------------------------------------------------------------
# No kernel features at all (nor the audit hook): rlimits, timeouts, the subreaper and healing
# still work.
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def bare_pool():
    config = SandboxConfig(
        timeout_s=TIMEOUT,
        grace_s=0.5,
        namespaces=False,
        landlock=False,
        seccomp=False,
        audit_hook=False,
    )
    with ProgramPool(workers=1, config=config) as pool:
        yield pool


def test_bare_pool_reports_and_limits(bare_pool):
    assert not any(bare_pool.protections[name] for name in ("pid_namespace", "landlock", "seccomp"))
    assert set(missing_protections(bare_pool.protections)) >= {
        "network_namespace",
        "landlock",
        "seccomp",
    }
    results = bare_pool.run_many(
        [
            "def solution():\n    while True:\n        pass",
            "def solution():\n    return bytearray(10 ** 11)",
        ]
    )
    assert [r.error for r in results] == [E.timeout, E.memory]


def test_bare_pool_subreaper_kills_daemons(bare_pool, tmp_path):
    late = tmp_path / "late.txt"
    program = DAEMONS["double_fork_setsid_daemon"].replace("/scratch/{marker}", str(late))
    assert bare_pool.run(program).value == "1"
    time.sleep(0.6)
    assert not late.exists(), "a double-forked daemon outlived the call"
    zygote = bare_pool.worker_pids[0]
    assert Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split() == []


def test_pool_heals_when_a_program_kills_its_worker(bare_pool):
    before = bare_pool.worker_pids
    result = bare_pool.run(
        "import os, signal\ndef solution():\n    os.kill(os.getppid(), signal.SIGKILL)"
    )
    assert result.error is E.crashed, result
    assert bare_pool.worker_pids != before
    assert_benign_pass(bare_pool)


def test_pool_kills_a_stuck_worker(bare_pool):
    """Every wait has a timeout: a worker that stops answering is killed and replaced."""
    zygote = bare_pool.worker_pids[0]
    os.kill(zygote, signal.SIGSTOP)
    started = time.perf_counter()
    result = bare_pool.run("def solution():\n    return 1")
    assert result.error is E.timeout and "did not answer" in result.detail
    assert time.perf_counter() - started < TIMEOUT + 0.5 + 3.0
    assert zygote not in bare_pool.worker_pids
    assert bare_pool.run("def solution():\n    return 1").value == "1"
