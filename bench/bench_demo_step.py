"""The demo's own PPO step, timed part by part, against the same step of another revision of reft.

    python bench/bench_demo_step.py --model WARMUP_DIR --data DATA_DIR [--baseline REV] [--beside]

What is timed: `reft train` exactly as `reft demo` runs its ReFT stage (the shipped recipe's `reft`
and `common` sections: micro-llama, 256 rollouts of up to 64 tokens, separate critic, two update
passes, one thread), from `--model` (the demo's warm-up, e.g. runs/demo/seed_0/warmup/final) on
`--data` (the demo's data directory). `reft.train.loop.TrainingRun.train` is replaced by a loop that
runs `--warmup` untimed (by default the recipe's 5 critic-only steps) then `--steps` timed PPO steps, so the step is built by the revision's own
`run_ppo`, whatever its internals. Each step is split by timing wrappers, installed only where the
revision has the function: rollout (the decode loop), scoring, reference forward, the policy+critic
forward of update pass 1 (fused with the rollout forward), each update pass's backward, the later
passes' forwards, optimizer steps, metrics, and a checkpoint save (timed once, after the steps).

`--baseline REV`: the same measurement for git revision REV (a temporary worktree, imported through
PYTHONPATH), one process per side per round, sides alternating, so both see the same machine load.
`--beside`: a second torch process (SFT steps of the same model at one thread) runs throughout, as
the demo runs two stages at once on two cores; `--pin` keeps each of the two on its own CPU. Prints a markdown table of medians and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("rollout", "scoring", "reference", "forward_pass1", "backward_pass1", "forward_pass2",
         "backward_pass2", "optimizer", "other")  # fmt: skip
"""Columns of the table; "other" is the step's wall time minus every timed part."""


def _timed(owner: object, name: str, record: dict[str, float], key) -> None:
    """Wrap `owner.name` so that its wall time is added to record[key()] (key() picks the column)."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            part = key()
            record[part] = record.get(part, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def _instrument(record: dict[str, float], state: dict[str, int]) -> None:
    """Timing wrappers around the parts of a PPO step (class and module attributes, so every caller
    sees them). A pass is counted at each `_loss_and_backward` (one micro-batch per pass here)."""
    import reft.train.ppo as ppo
    import reft.train.rollout as rollout
    from reft.models.value import FrozenReference
    from reft.train.loop import TrainingRun

    _timed(rollout, "score_responses", record, lambda: "scoring")
    _timed(rollout.LocalBackend, "generate", record, lambda: "rollout")
    _timed(FrozenReference, "logprobs", record, lambda: "reference")
    _timed(ppo.PPOUpdate, "_forward", record, lambda: f"forward_pass{min(state['pass'] + 1, 2)}")
    _timed(ppo.PPOUpdate, "_loss_and_backward", record,
           lambda: f"backward_pass{min(state['pass'], 2)}")  # fmt: skip
    timed = ppo.PPOUpdate._loss_and_backward

    def counted(*args, **kwargs):
        state["pass"] += 1
        return timed(*args, **kwargs)

    ppo.PPOUpdate._loss_and_backward = counted
    _timed(TrainingRun, "clip_and_step", record, lambda: "optimizer")


def worker(args: argparse.Namespace) -> None:
    """One side of one round: build the demo's PPO stage and time its steps; JSON lines to stdout."""
    import torch

    torch.set_num_threads(1)
    from reft.config import load_config
    from reft.demo.config import DemoConfig
    from reft.demo.stages import as_overrides
    from reft.train import loop
    from reft.train.config import PPOConfig
    from reft.train.ppo import run_ppo

    demo = load_config(DemoConfig, DemoConfig().recipe_files())
    settings = {"train_data": f"{args.data}/train.json", "dev_data": f"{args.data}/dev.json",
                "cot": "nl", "seed": 0, **demo.common, "model": args.model, **demo.reft,
                "out_dir": args.out_dir}  # fmt: skip
    config = load_config(PPOConfig, overrides=as_overrides(settings))
    record: dict[str, float] = {}
    state = {"pass": 0}
    _instrument(record, state)

    def timed_train(run, step_fn, eval_fn):
        for index in range(args.warmup + args.steps):
            record.clear()
            state["pass"] = 0
            started = time.perf_counter()
            metrics = step_fn(index)
            total = time.perf_counter() - started
            if index >= args.warmup:
                parts = {part: record.get(part, 0.0) for part in PARTS[:-1]}
                line = {"total": total, **parts, "other": total - sum(parts.values()),
                        "response_length": metrics["response_length"]}  # fmt: skip
                print(json.dumps(line), flush=True)
        run.state.step = args.warmup + args.steps
        started = time.perf_counter()
        run.save(None)
        print(json.dumps({"checkpoint": time.perf_counter() - started}), flush=True)
        return run.state

    loop.TrainingRun.train = timed_train
    run_ppo(config)


@contextlib.contextmanager
def _source_tree(revision: str | None):
    """The src/ directory of `revision` (a temporary git worktree), or this checkout's."""
    if revision is None:
        yield REPO / "src"
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo_step."))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tmp), revision],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield tmp / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp)],
                       check=False, capture_output=True)  # fmt: skip


def _run_side(src: Path, args: argparse.Namespace, out_dir: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    command = [sys.executable, __file__, "--worker", "--model", args.model, "--data", args.data,
               "--out-dir", str(out_dir), "--warmup", str(args.warmup), "--steps", str(args.steps)]  # fmt: skip
    pin = _pinned(0) if args.pin else None
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          preexec_fn=pin)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"worker failed ({src}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _pinned(cpu: int):
    """A preexec_fn that keeps the child process on one CPU (`--pin`)."""
    return lambda: os.sched_setaffinity(0, {cpu % os.cpu_count()})


@contextlib.contextmanager
def _beside_load(args: argparse.Namespace, root: Path):
    """A concurrent `reft sft` of the same model (one thread), as the demo's second stage."""
    if not args.beside:
        yield
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "reft", "sft", f"model={args.model}", "cot=nl",
               f"train_data={args.data}/train.json", "dev_data=null", f"out_dir={root / 'sft'}",
               "epochs=1000", "batch_size=32", "micro_batch_size=32", "lr=1e-4", "save_every=0",
               "eval_every=0", "log_every=1000"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(20)  # past its start-up
    try:
        yield
    finally:
        process.kill()


def _table(results: dict[str, list[dict]], checkpoints: dict[str, float]) -> str:
    names = list(results)
    lines = ["| revision | s/step (median) | " + " | ".join(PARTS) + " | checkpoint s | response tokens | baseline / this |",
             "|---" * (len(PARTS) + 5) + "|"]  # fmt: skip
    base = statistics.median(r["total"] for r in results[names[0]])
    for name in names:
        rows = results[name]
        median = statistics.median(r["total"] for r in rows)
        parts = " | ".join(f"{statistics.median(r[p] for r in rows):.3f}" for p in PARTS)
        length = statistics.mean(r["response_length"] for r in rows)
        lines.append(f"| {name} | {median:.3f} | {parts} | {checkpoints[name]:.3f} | "
                     f"{length:.1f} | {base / median:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the demo's warm-up checkpoint")
    parser.add_argument("--data", required=True, help="the demo's data directory")
    parser.add_argument("--baseline", help="git revision to compare with (e.g. 507dfd9)")
    parser.add_argument("--beside", action="store_true", help="a concurrent SFT process")
    parser.add_argument("--pin", action="store_true",
                        help="pin the timed process to CPU 0 and the concurrent one to CPU 1")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps (the recipe's critic_warmup_steps: timed steps also "
                        "update the policy)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sides = {"this checkout": None, **({f"baseline {args.baseline}": args.baseline}
                                       if args.baseline else {})}  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name in reversed(list(sides))}
    checkpoints: dict[str, list[float]] = {name: [] for name in results}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        trees = {name: stack.enter_context(_source_tree(rev)) for name, rev in sides.items()}
        stack.enter_context(_beside_load(args, Path(tmp)))
        for index in range(args.rounds):
            order = list(results) if index % 2 == 0 else list(results)[::-1]
            for name in order:
                lines = _run_side(trees[name], args, Path(tmp) / f"{index}-{len(name)}")
                results[name] += [line for line in lines if "total" in line]
                checkpoints[name] += [line["checkpoint"] for line in lines if "checkpoint" in line]
                print(f"round {index + 1}: {name}: "
                      + " ".join(f"{line['total']:.2f}" for line in lines if "total" in line),
                      flush=True)  # fmt: skip
    load = os.getloadavg()[0]
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load average {load:.1f}, "
        f"{'beside a concurrent SFT process' if args.beside else 'alone'}; "
        f"{args.rounds} rounds x {args.steps} timed steps per side after {args.warmup} warm-up\n"
    )
    medians = {name: statistics.median(values) for name, values in checkpoints.items()}
    print(_table(results, medians))


if __name__ == "__main__":
    main()
