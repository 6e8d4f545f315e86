"""Throughput of the program sandbox against a fresh Python process per program, in the same run.

    python bench/bench_execute.py [--workers N] [--programs 3000] [--baseline 150] [--mixed 10000]

Workloads:
- trivial: `def solution(): return i + 1`;
- typical: the SVAMP gold programs of the ReFT authors (../shared/data), or, without them,
  synthetic programs of the same shape (a docstring, 3-6 assignments, arithmetic, a return);
- mixed: N programs, 10% hostile (loops, sleeps, memory bombs, forks, file reads, segfaults, hostile
  return values, ...): throughput and whether every benign program is still graded correct.

The baseline starts `python -I -c HARNESS` per program (no sandbox at all: the cheapest fresh
process), one at a time and with as many concurrent processes as the pool has workers.

The machine may be shared: every method is measured in several interleaved rounds, and the table
shows the best rate of each (the round least disturbed by other load) and the median CPU time per
program (user + system, of every process involved), which other load hardly changes. Ratios are
pool rate / best one-at-a-time fresh-process rate. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reft.answers.execute import ProgramPool, SandboxConfig
from reft.answers.rewards import grade_execution
from reft.data.example import AnswerKind

SVAMP = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "mwp_reft"
    / "svamp_python_sdp.json"
)
HARNESS = (
    "import sys\nnamespace = {}\nexec(sys.argv[1], namespace)\nprint(repr(namespace['solution']()))"
)
HOSTILE = [
    "def solution():\n    while True:\n        pass",
    "import time\ndef solution():\n    time.sleep(60)",
    "def solution():\n    return bytearray(10 ** 11)",
    "import os\ndef solution():\n    os.fork()\n    return 1",
    "def solution():\n    return open('/etc/passwd').read()",
    "import ctypes\ndef solution():\n    ctypes.string_at(0)",
    "import os\ndef solution():\n    os._exit(0)",
    "class X:\n    def __eq__(self, other):\n        return True\ndef solution():\n    return X()",
    "import subprocess\ndef solution():\n    return subprocess.check_output(['id'])",
    "import socket\ndef solution():\n    socket.create_connection(('1.1.1.1', 80), timeout=1)",
    "def solution():\n    return float('nan')",
    "import os, signal\ndef solution():\n    os.kill(os.getppid(), signal.SIGKILL)",
]


def trivial_programs(count: int) -> list[tuple[str, str]]:
    return [(f"def solution():\n    return {i} + 1", str(i + 1)) for i in range(count)]


def typical_programs(count: int) -> tuple[list[tuple[str, str]], str]:
    if SVAMP.is_file():
        items = json.loads(SVAMP.read_text())
        return [(item["answer_cot"], item["answer_value"]) for item in items][:count], "SVAMP gold"
    rng, programs = random.Random(0), []
    for _ in range(count):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        code = (
            f'def solution():\n    """A shop has {a} apples, gets {b} more and packs them in bags of {c}."""\n'
            f"    apples = {a}\n    more = {b}\n    total = apples + more\n"
            f"    bags = total / {c}\n    result = bags\n    return result"
        )
        programs.append((code, repr((a + b) / c)))
    return programs, "synthetic"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and their reaped descendants, plus each one's direct children."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        for member in [pid] + [
            int(c) for c in (children.read_text().split() if children.exists() else [])
        ]:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def fresh_process_rate(programs: list[tuple[str, str]], parallel: int) -> tuple[float, float, int]:
    """Programs/s and CPU ms/program with one `python -I` per program; and how many were right."""

    def run(program: tuple[str, str]) -> bool:
        done = subprocess.run(
            [sys.executable, "-I", "-c", HARNESS, program[0]], capture_output=True, timeout=60
        )
        return abs(float(done.stdout or "nan") - float(program[1])) <= 1e-2

    cpu, started = children_cpu(), time.perf_counter()
    with ThreadPoolExecutor(parallel) as executor:
        correct = sum(executor.map(run, programs))
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    return len(programs) / seconds, cpu / len(programs) * 1e3, correct


def pool_rate(pool: ProgramPool, programs: list[tuple[str, str]]) -> tuple[float, float, int]:
    """Programs/s and CPU ms/program (workers and pool process) through the pool; how many were right."""
    pool.run_many([code for code, _ in programs[:20]])  # warm-up, and any replaced worker started
    pids = pool.worker_pids
    cpu, own, started = tree_cpu(pids), time.process_time(), time.perf_counter()
    results = pool.run_many([code for code, _ in programs])
    seconds = time.perf_counter() - started
    cpu = tree_cpu(pids) - cpu + time.process_time() - own
    correct = sum(
        grade_execution(r, gold, AnswerKind.numeric).correct
        for r, (_, gold) in zip(results, programs, strict=True)
    )
    return len(programs) / seconds, cpu / len(programs) * 1e3, correct


def mixed_run(pool: ProgramPool, total: int, timeout: float) -> dict:
    """`total` programs, 10% hostile, shuffled with a fixed seed."""
    rng = random.Random(0)
    benign = trivial_programs(total - total // 10)
    mixed = [(code, gold, False) for code, gold in benign]
    mixed += [(rng.choice(HOSTILE), "1", True) for _ in range(total // 10)]
    rng.shuffle(mixed)
    started = time.perf_counter()
    results = pool.run_many([code for code, _, _ in mixed], timeout_s=timeout)
    seconds = time.perf_counter() - started
    grades = [
        grade_execution(r, gold, AnswerKind.numeric)
        for r, (_, gold, _) in zip(results, mixed, strict=True)
    ]
    benign_ok = sum(
        g.correct for g, (_, _, hostile) in zip(grades, mixed, strict=True) if not hostile
    )
    hostile_reward = sum(
        g.reward for g, (_, _, hostile) in zip(grades, mixed, strict=True) if hostile
    )
    errors = Counter(g.error for g, (_, _, hostile) in zip(grades, mixed, strict=True) if hostile)
    return {
        "seconds": seconds,
        "rate": total / seconds,
        "benign_ok": benign_ok,
        "benign": len(benign),
    } | {
        "hostile_reward": hostile_reward,
        "errors": dict(errors),
    }


HEADER = (
    "| workload             | method                                   | progs/round | best progs/s | vs fresh, 1 at a time | CPU ms/prog | correct |\n"
    "|----------------------|------------------------------------------|-------------|--------------|-----------------------|-------------|---------|"
)


def compare(
    name: str,
    programs: list[tuple[str, str]],
    pools: dict[str, ProgramPool],
    args: argparse.Namespace,
) -> None:
    """Measure every method on one workload in interleaved rounds; print one row per method."""
    sample = programs[: args.baseline]
    methods = {
        "fresh python -I per program, 1 at a time": (
            lambda: fresh_process_rate(sample, 1),
            len(sample),
        ),
        f"fresh python -I per program, {args.workers} at a time": (
            lambda: fresh_process_rate(sample, args.workers),
            len(sample),
        ),
    }
    for label, pool in pools.items():
        methods[f"pool, {label}, {args.workers} workers"] = (
            lambda pool=pool: pool_rate(pool, programs),
            len(programs),
        )
    measured: dict[str, list[tuple[float, float, int]]] = {label: [] for label in methods}
    for _ in range(args.rounds):
        for label, (measure, _) in methods.items():
            measured[label].append(measure())
    base = max(rate for rate, _, _ in measured["fresh python -I per program, 1 at a time"])
    for label, rounds in measured.items():
        rate = max(r for r, _, _ in rounds)
        cpu = statistics.median(c for _, c, _ in rounds)
        correct = f"{min(ok for _, _, ok in rounds)}/{methods[label][1]}"
        print(
            f"| {name:<20} | {label:<40} | {methods[label][1]:>11} | {rate:>12.1f} "
            f"| {rate / base:>20.1f}x | {cpu:>11.2f} | {correct:>7} |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--programs", type=int, default=2000, help="programs per pool round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per method")
    parser.add_argument(
        "--baseline", type=int, default=100, help="programs per fresh-process round"
    )
    parser.add_argument(
        "--mixed", type=int, default=10000, help="programs in the mixed run (10%% hostile)"
    )
    parser.add_argument(
        "--mixed-timeout", type=float, default=0.2, help="timeout per program in the mixed run"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    typical, typical_name = typical_programs(args.programs)
    workloads = {"trivial": trivial_programs(args.programs), f"typical ({typical_name})": typical}
    print(
        f"{os.cpu_count()} CPUs, {args.workers} workers, load average {os.getloadavg()[0]:.2f} at start\n"
    )
    print(HEADER)
    bare_config = SandboxConfig(namespaces=False, landlock=False, seccomp=False)
    with ProgramPool(args.workers) as pool, ProgramPool(args.workers, bare_config) as bare:
        for name, programs in workloads.items():
            compare(name, programs, {"rlimits only": bare, "all protections": pool}, args)
        on = sorted(name for name, value in pool.protections.items() if value)
        print(f"\nprotections: {', '.join(on)}; Landlock ABI {pool.landlock_abi}")
        mixed = mixed_run(pool, args.mixed, args.mixed_timeout)
    print(
        f"\nmixed: {args.mixed} programs, 10% hostile, timeout {args.mixed_timeout} s: "
        f"{mixed['seconds']:.1f} s, {mixed['rate']:.1f} programs/s; benign graded correct "
        f"{mixed['benign_ok']}/{mixed['benign']}; reward earned by hostile programs "
        f"{mixed['hostile_reward']}; hostile errors {mixed['errors']}"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
