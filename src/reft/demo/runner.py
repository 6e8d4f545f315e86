"""Runs the demo's stages as `reft` processes (reft.demo.launch), several at once, with a live progress
display.

Small models on a CPU are bound by per-step overhead, not FLOPs, so two single-threaded stages side by
side do nearly twice the work of one stage with two threads (measured on a 2-core VM; two processes
of 2 threads each ran up to 17x slower per step): the runner starts
every stage whose inputs are ready, up to `workers` at a time, each with cores / workers threads.

A finished stage leaves `<out_dir>.done.json` (its wall-clock seconds and command), so an interrupted
demo resumes: finished stages are skipped and unfinished training stages resume from their checkpoints.

Ctrl-C reaches only the runner (each stage has its own process group, reft.demo.launch). It forwards
one SIGINT to every running stage, the same as a Ctrl-C in a stage's own terminal: a training stage
finishes its step, writes a checkpoint and exits 130. The runner waits for them (at most
`INTERRUPT_WAIT_SECONDS`; a second Ctrl-C stops them at once), marks none of them done, and raises
KeyboardInterrupt. Any other error (a failed stage) terminates the stages still running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reft.demo.launch import StageProcess, launch_stage
from reft.demo.stages import Stage
from reft.files import write_json_atomic

POLL_SECONDS = 1.0
PLAIN_REPORT_SECONDS = 30.0
"""Without a terminal, one progress line per running stage this often."""
INTERRUPT_WAIT_SECONDS = 120.0
"""After a Ctrl-C, how long the running stages get to finish their step and write a checkpoint
before they are terminated (a step plus a save of the demo's models takes seconds)."""
TERMINATE_WAIT_SECONDS = 10.0
"""After SIGTERM, how long a stage gets to exit before SIGKILL."""
STOP_POLL_SECONDS = 0.1
"""How often the runner checks on stages it is stopping (the demo's exit waits on it)."""
_TQDM = re.compile(r"(?:([^\r\n]*?): *)?\d+%\|[^\r\n]*?(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
"""A tqdm bar: (description, step, total, elapsed, eta)."""
_SUB_BAR = re.compile(r" dev$|^(Loading|Writing|Fetching) ")
"""Bars in a stage's log that are not the stage's own progress: the training loop's dev evaluation
("sft dev", reft.train.dev) and transformers' or the hub's ("Loading weights", "Writing model
shards", "Fetching 3 files"). Their "40/40" or "1/1" would stand for the stage's step."""
_LOG_TAIL_BYTES = 16384
"""How much of a stage's log the progress line reads: enough to reach back past the dev evaluation's
and the checkpoint's bars to the stage's own."""
_COMMAND_LINE = re.compile(r"^\$ ", re.MULTILINE)
"""Start of the line `_launch` writes before each run of a stage."""


class StageFailed(RuntimeError):
    """A stage's command exited with an error; the message holds the end of its log."""


@dataclass
class StageRecord:
    """What the report needs from a finished stage."""

    name: str
    seconds: float
    started: float
    """Seconds since the demo started when this stage started."""


def done_marker(stage: Stage) -> Path:
    return stage.out_dir.with_name(stage.out_dir.name + ".done.json")


class StageRunner:
    """Runs `stages` (respecting `needs`) with up to `workers` processes at a time."""

    def __init__(self, stages: list[Stage], logs_dir: Path, workers: int, label: str = "",
                 stream: TextIO = sys.stdout, clock: Callable[[], float] = time.time,
                 threads: int | None = None) -> None:  # fmt: skip
        """`threads`: torch threads per stage (default: the machine's cores / workers). Pass it to
        make results independent of the machine: a float sum's order can depend on it."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.stages, self.logs_dir, self.workers = stages, logs_dir, workers
        self.label, self.stream, self.clock = label, stream, clock
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.records: dict[str, StageRecord] = {}
        self._live_lines = 0
        self._last_plain = 0.0

    def run(self) -> dict[str, StageRecord]:
        """Run every unfinished stage; returns the records of all stages (finished earlier or now)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        start = self.clock()
        pending = []
        for stage in self.stages:
            marker = done_marker(stage)
            if marker.exists():
                self.records[stage.name] = StageRecord(**json.loads(marker.read_text())["record"])
            else:
                pending.append(stage)
        running: dict[str, tuple[Stage, StageProcess, float, TextIO]] = {}
        with _exit_on_signals():
            try:
                while pending or running:
                    self._advance(pending, running, start)
                    self._display(running, start)
                    time.sleep(POLL_SECONDS)
            except KeyboardInterrupt:
                self._interrupt(running)
                raise
            except BaseException:
                self._stop(running)
                raise
            finally:
                self._clear_live()
        return self.records

    def _advance(self, pending: list[Stage], running: dict, start: float) -> None:
        """Record the stages that ended (a failure raises StageFailed), start those now ready."""
        for name, (stage, process, started, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[name]
            if process.returncode != 0:
                raise StageFailed(self._failure(stage, process.returncode))
            self._finish(stage, started, start)
        ready = [s for s in pending if all(n in self.records for n in s.needs)]
        for stage in ready[: self.workers - len(running)]:
            pending.remove(stage)
            running[stage.name] = (stage, *self._launch(stage))
        if pending and not running:
            missing = {n for s in pending for n in s.needs} - set(self.records)
            raise StageFailed(f"stages {[s.name for s in pending]} wait on {sorted(missing)}")

    def _interrupt(self, running: dict) -> None:
        """Ctrl-C: one SIGINT to each running stage, then wait for them to checkpoint and exit (at
        most INTERRUPT_WAIT_SECONDS). A second Ctrl-C, or the time limit, terminates the rest."""
        if not running:
            return
        for _, process, _, _ in running.values():
            process.send_signal(signal.SIGINT)
        self._print(f"{self.label}interrupted: waiting up to {INTERRUPT_WAIT_SECONDS:.0f} s for "
                    f"{', '.join(running)} to write a checkpoint and stop "
                    "(Ctrl-C again to stop at once)")  # fmt: skip
        try:
            self._wait(running, INTERRUPT_WAIT_SECONDS)
            if running:
                self._print(f"{self.label}{', '.join(running)}: still running; terminating")
        except KeyboardInterrupt:
            self._print(f"{self.label}stopping {', '.join(running)} at once")
            raise
        finally:
            self._stop(running)  # none left, unless the wait ran out or was cut short

    def _stop(self, running: dict) -> None:
        """Terminate the running stages (SIGTERM; SIGKILL after TERMINATE_WAIT_SECONDS)."""
        for _, process, _, _ in running.values():
            process.terminate()
        try:
            self._wait(running, TERMINATE_WAIT_SECONDS)
        finally:  # also when a further Ctrl-C cuts the wait short
            for _, process, _, log in running.values():
                process.kill()
                process.wait()
                log.close()
            running.clear()

    def _wait(self, running: dict, seconds: float) -> None:
        """Wait up to `seconds` for the running stages to exit, removing each that does. None is
        marked done: these are stages being stopped."""
        deadline = time.monotonic() + seconds
        while running and time.monotonic() < deadline:
            for name, (_, process, _, log) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    del running[name]
                    self._print(f"{self.label}{name}: stopped (exit {process.returncode})")
            time.sleep(STOP_POLL_SECONDS)

    def _launch(self, stage: Stage) -> tuple[StageProcess, float, TextIO]:
        argv = list(stage.argv)
        if stage.trains and stage.out_dir.exists():
            argv.append("resume=true")  # an interrupted run continues from its last checkpoint
        path = self.logs_dir / f"{stage.name}.log"
        log = path.open("a")
        log.write(f"$ {stage.command_line()}\n")
        log.flush()
        return launch_stage(argv, path, self.threads), self.clock(), log

    def _finish(self, stage: Stage, started: float, demo_start: float) -> None:
        record = StageRecord(stage.name, self.clock() - started, started - demo_start)
        self.records[stage.name] = record
        write_json_atomic(done_marker(stage), {"record": record.__dict__,
                                               "command": stage.command_line()}, indent=None)  # fmt: skip
        self._print(f"{self.label}{stage.name}: done in {record.seconds:.0f} s")

    def _failure(self, stage: Stage, returncode: int) -> str:
        log = self.logs_dir / f"{stage.name}.log"
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
        return (f"stage {stage.name} failed (exit {returncode}); command:\n  "
                f"{stage.command_line()}\nlast lines of {log}:\n" + "\n".join(tail))  # fmt: skip

    # --- progress display -------------------------------------------------------------------

    def _display(self, running: dict, start: float) -> None:
        now = self.clock()
        lines = [f"{self.label}{self.progress_line(stage, now - started)}"
                 for stage, _, started, _ in running.values()]  # fmt: skip
        done = len(self.records)
        lines.append(f"{self.label}{done}/{len(self.stages)} stages done, "
                     f"{_clock(now - start)} elapsed")  # fmt: skip
        if self.stream.isatty():
            self._clear_live()
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
            self._live_lines = len(lines)
        elif now - self._last_plain >= PLAIN_REPORT_SECONDS:
            self._last_plain = now
            self._print("\n".join(lines))

    def progress_line(self, stage: Stage, elapsed: float) -> str:
        """`name  step/total  key metrics  elapsed<ETA` from the stage's log and metrics file."""
        parts = [f"{stage.name:<28}"]
        bar = _last_progress(self.logs_dir / f"{stage.name}.log")
        if bar:
            step, total, _, _ = bar
            parts.append(f"{step}/{total}")
        metrics = _last_metrics(stage.out_dir / "metrics.jsonl")
        for key in ("loss", "reward", "accuracy", "kl"):
            if key in metrics.get("train", {}):
                parts.append(f"{key} {metrics['train'][key]:.3g}")
        if "accuracy" in metrics.get("dev", {}):
            parts.append(f"dev {metrics['dev']['accuracy']:.3f}")
        eta = _seconds(bar[3]) if bar else None
        budget = float(stage.settings.get("max_seconds") or 0)
        if budget > 0:  # the stage stops at its time budget even if steps remain
            eta = min(eta if eta is not None else budget, max(0.0, budget - elapsed))
        parts.append(_clock(elapsed) + (f" ETA {_clock(eta)}" if eta is not None else ""))
        return "  ".join(parts)

    def _clear_live(self) -> None:
        if self._live_lines and self.stream.isatty():
            self.stream.write(f"\x1b[{self._live_lines}F\x1b[J")
        self._live_lines = 0

    def _print(self, text: str) -> None:
        self._clear_live()
        print(text, file=self.stream, flush=True)


def _last_progress(log: Path) -> tuple[int, int, str, str] | None:
    """The last bar of the stage's own in the log's latest run: (step, total, elapsed, eta).

    Each launch appends "$ <command>" to the stage's log, so a resumed stage's log still holds the
    interrupted run's bars: only what follows the last command line counts. Bars of a dev
    evaluation or of loading and writing weights are skipped (`_SUB_BAR`).
    """
    try:
        with log.open("rb") as handle:
            start = max(0, log.stat().st_size - _LOG_TAIL_BYTES)
            handle.seek(start)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    if start:  # the first line read is a part, its description cut ("ng weights")
        text = re.split(r"[\r\n]", text, maxsplit=1)[-1]
    bars = _TQDM.findall(_COMMAND_LINE.split(text)[-1])
    own = [bar for bar in bars if not _SUB_BAR.search(bar[0].strip())]
    if not own:
        return None
    _, step, total, elapsed, eta = own[-1]
    return int(step), int(total), elapsed, eta


@contextmanager
def _exit_on_signals() -> Iterator[None]:
    """While the stages run, SIGTERM and SIGHUP (a closed terminal) raise SystemExit, so the runner
    terminates its stages before it ends: in their own process groups, they do not get the signal.
    A signal already handled or ignored (nohup's SIGHUP) is left so; so is every signal outside
    the main thread, where Python cannot set handlers."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)  # Windows has no SIGHUP
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _raise_exit)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the shell's status for a process ended by the signal


def _last_metrics(path: Path) -> dict[str, dict[str, float]]:
    """The last record of each split in a metrics.jsonl file."""
    last: dict[str, dict[str, float]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return last
    for line in lines[-50:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        last[record.get("split", "train")] = record
    return last


def _seconds(clock: str) -> float | None:
    """tqdm's "MM:SS" or "H:MM:SS" as seconds ("?" -> None)."""
    try:
        total = 0
        for part in clock.split(":"):
            total = total * 60 + int(part)
    except ValueError:
        return None
    return float(total)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
