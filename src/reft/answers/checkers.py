"""Answer checkers as the field uses them, side by side: reft's own rules, lm-evaluation-harness's
GSM8K filters and (an optional extra) math-verify. `reft grade --audit` runs them on the same
completions to show where they disagree (reft.answers.audit).

Each checker maps (completions, gold answers) to one `Verdict` per completion: what it extracted and
whether it counts it correct.

- reft-strict: the paper's rule, the training reward (reft.answers.extract.extract_strict), then
  |prediction - gold| <= 1e-2.
- reft-lenient: any common final-answer form (extract_lenient), same comparison.
- harness-strict / harness-flexible: lm-evaluation-harness's gsm8k task (version 3.0,
  lm_eval/tasks/gsm8k/gsm8k.yaml): the filter's regex ("strict-match": the first "#### N";
  "flexible-extract": the last number-like run), then `exact_match` after its regexes_to_ignore
  (",", "$", everything up to "#### ", a final ".") and lower-casing, applied to both sides: an
  exact STRING comparison, so "18.0" is not "18".
- math-verify: `math_verify.parse` + `verify` (Hugging Face), run in worker processes with a real
  per-item timeout (math-verify's own timeout uses signals, which do not work outside the main
  thread); a timed-out item counts wrong and is marked.
"""

from __future__ import annotations

import importlib.util
import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from reft.answers.compare import is_correct
from reft.answers.extract import extract_nl_answer
from reft.data.example import AnswerKind

HARNESS_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
"""lm-eval gsm8k "strict-match": regex, first match."""
HARNESS_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
"""lm-eval gsm8k "flexible-extract": regex with group_select -1 (the last match)."""
HARNESS_IGNORED = [re.compile(pattern) for pattern in (",", r"\$", r"(?s).*#### ", r"\.$")]
"""lm-eval gsm8k exact_match regexes_to_ignore, removed from prediction and reference."""
HARNESS_FALLBACK = "[invalid]"
MATH_VERIFY_TIMEOUT_S = 5.0
WORKER_COMMAND = [sys.executable, "-m", "reft.answers._math_verify_worker"]
"""The math-verify worker process (JSON lines on stdin and stdout)."""


@dataclass(frozen=True)
class Verdict:
    """One checker's reading of one completion."""

    extracted: str | None
    correct: bool
    note: str | None = None
    """Why the checker could not decide (e.g. "timeout"); None when it did."""


def reft_verdicts(
    completions: Sequence[str], golds: Sequence[str], kind: AnswerKind, strict: bool
) -> list[Verdict]:
    """reft's strict (training reward) or lenient rule."""
    verdicts = []
    for completion, gold in zip(completions, golds, strict=True):
        extracted = extract_nl_answer(completion, kind, strict=strict)
        verdicts.append(Verdict(extracted, is_correct(extracted, gold, kind)))
    return verdicts


def harness_extract(completion: str, flexible: bool) -> str:
    """The harness filter's output: the matched text, or "[invalid]"."""
    matches = (HARNESS_FLEXIBLE_RE if flexible else HARNESS_STRICT_RE).findall(completion)
    if not matches:
        return HARNESS_FALLBACK
    match = matches[-1] if flexible else matches[0]
    if isinstance(match, tuple):  # several groups: the first non-empty one
        match = next((group for group in match if group), HARNESS_FALLBACK)
    return match.strip()


def harness_normalize(text: str) -> str:
    """exact_match's view of a string: ignored regexes removed, lower-cased."""
    for pattern in HARNESS_IGNORED:
        text = pattern.sub("", text)
    return text.lower()


def harness_verdicts(
    completions: Sequence[str], golds: Sequence[str], flexible: bool
) -> list[Verdict]:
    """lm-evaluation-harness's gsm8k "strict-match" or "flexible-extract" score."""
    verdicts = []
    for completion, gold in zip(completions, golds, strict=True):
        extracted = harness_extract(completion, flexible)
        correct = harness_normalize(extracted) == harness_normalize(gold)
        verdicts.append(Verdict(None if extracted == HARNESS_FALLBACK else extracted, correct))
    return verdicts


def math_verify_available() -> bool:
    return importlib.util.find_spec("math_verify") is not None


class _VerifyWorker:
    """One worker process running reft.answers._math_verify_worker, one item at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.job: int | None = None
        self.deadline = 0.0
        self.started = False

    def send(self, job: int, completion: str, gold: str, timeout_s: float) -> None:
        if not self.started:  # wait for the import to finish before the clock starts
            ready = self.process.stdout.readline()
            if json.loads(ready or "null") != "ready":
                raise RuntimeError("a math-verify worker did not start (is math-verify installed?)")
            self.started = True
        self.job, self.deadline = job, time.monotonic() + timeout_s
        self.process.stdin.write(json.dumps([completion, gold]) + "\n")
        self.process.stdin.flush()

    def result(self) -> Verdict:
        line = self.process.stdout.readline()
        self.job = None
        if not line:  # the worker died (a crash inside sympy, the OOM killer...)
            return Verdict(None, False, "error: worker died")
        return Verdict(*json.loads(line))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


def math_verify_verdicts(
    completions: Sequence[str],
    golds: Sequence[str],
    timeout_s: float = MATH_VERIFY_TIMEOUT_S,
    workers: int = 2,
) -> list[Verdict]:
    """math-verify's judgement of each completion, `workers` processes, `timeout_s` per item."""
    pending = list(range(len(completions)))[::-1]
    verdicts: list[Verdict | None] = [None] * len(completions)
    pool = [_VerifyWorker() for _ in range(max(1, min(workers, len(completions))))]
    try:
        while pending or any(worker.job is not None for worker in pool):
            for worker in pool:
                if worker.job is None and pending:
                    job = pending.pop()
                    worker.send(job, completions[job], golds[job], timeout_s)
            busy = {worker.process.stdout: worker for worker in pool if worker.job is not None}
            ready, _, _ = select.select(list(busy), [], [], 0.05)
            for index, worker in enumerate(pool):
                if worker.job is None:
                    continue
                if worker.process.stdout in ready:
                    job = worker.job
                    verdicts[job] = worker.result()
                elif time.monotonic() > worker.deadline:
                    verdicts[worker.job] = Verdict(None, False, "timeout")
                    worker.stop()
                    pool[index] = _VerifyWorker()
    finally:
        for worker in pool:
            worker.stop()
    return verdicts  # type: ignore[return-value]
