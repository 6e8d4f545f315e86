"""The outcome reward: the one function training, evaluation and `reft grade` all use.

    reward = 1               the answer is correct
           = partial_reward  an answer was extracted / the program returned a value, but it is wrong
           = 0               nothing could be extracted / the program failed

partial_reward is 0.1 in the paper ("partial reward", it makes the reward less sparse); 0 disables
it. `grade_completions` is the batch API: extraction (N-CoT) or sandboxed execution (P-CoT), then
comparison, then this reward, with a typed result per completion.

Torch-free: the trainer calls this, and so does the CPU-only `reft grade`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reft.answers.compare import is_correct, parse_gold
from reft.answers.execute import ExecutionResult, ProgramPool, SandboxConfig, run_programs
from reft.answers.extract import extract_nl_answer, extract_program, parse_program_value
from reft.data.example import AnswerKind, CotKind

DEFAULT_PARTIAL_REWARD = 0.1
"""Reward for a wrong but extracted answer (the paper's code hard-codes 0.1)."""
NO_ANSWER = "no_answer"
"""GradeResult.error of an N-CoT completion from which no answer could be extracted."""


@dataclass(frozen=True)
class GradeResult:
    """The grade of one completion."""

    extracted: str | None
    """The canonical answer ("72", "0.75", "c") or None when nothing was extracted / the program failed."""
    correct: bool
    reward: float
    error: str | None
    """None, "no_answer" (N-CoT), or an execution ErrorKind value (P-CoT): "timeout", "memory",
    "exception", "no_result", "crashed", "forbidden" (always reward 0)."""


def outcome_reward(
    extracted: str | None, correct: bool, partial_reward: float = DEFAULT_PARTIAL_REWARD
) -> float:
    """1 if correct, `partial_reward` if an answer was extracted but is wrong, 0 if none was."""
    if not 0.0 <= partial_reward <= 1.0:
        raise ValueError(f"partial_reward must be in [0, 1], got {partial_reward}")
    if extracted is None:
        return 0.0
    return 1.0 if correct else partial_reward


def grade_nl(
    completion: str,
    gold: str,
    kind: AnswerKind,
    *,
    strict: bool = True,
    partial_reward: float = DEFAULT_PARTIAL_REWARD,
) -> GradeResult:
    """Grade one N-CoT completion (strict = the paper's extraction rule)."""
    extracted = extract_nl_answer(completion, kind, strict=strict)
    correct = is_correct(extracted, gold, kind)
    error = None if extracted is not None else NO_ANSWER
    return GradeResult(
        extracted, correct, outcome_reward(extracted, correct, partial_reward), error
    )


def grade_execution(
    result: ExecutionResult,
    gold: str,
    kind: AnswerKind,
    partial_reward: float = DEFAULT_PARTIAL_REWARD,
) -> GradeResult:
    """Grade one executed P-CoT program. A value that is not of the task's kind counts as no result."""
    extracted = parse_program_value(result.value, kind) if result.value is not None else None
    error = result.error.value if result.error is not None else None
    if result.error is None and extracted is None:
        error = "no_result"
    correct = is_correct(extracted, gold, kind)
    return GradeResult(
        extracted, correct, outcome_reward(extracted, correct, partial_reward), error
    )


def grade_completions(
    completions: Sequence[str],
    golds: Sequence[str],
    answer_kind: AnswerKind,
    cot: CotKind,
    *,
    strict: bool = True,
    partial_reward: float = DEFAULT_PARTIAL_REWARD,
    executor: ProgramPool | None = None,
    timeout_s: float | None = None,
) -> list[GradeResult]:
    """Grade a batch of completions against their gold answers; one result each, in order.

    N-CoT: extraction (strict or lenient) then comparison. P-CoT: each completion's program
    (full, or the body after the paper's header) runs in `executor`, a ProgramPool (a temporary
    one is started when None; pass a pool to avoid its start-up cost); `strict` does not apply.
    Raises ValueError when the lengths differ or a gold answer is not of `answer_kind`.
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    for gold in golds:
        parse_gold(gold, answer_kind)
    if cot is CotKind.nl:
        return [
            grade_nl(text, gold, answer_kind, strict=strict, partial_reward=partial_reward)
            for text, gold in zip(completions, golds, strict=True)
        ]
    programs = [extract_program(text) for text in completions]
    if executor is None:
        config = SandboxConfig() if timeout_s is None else SandboxConfig(timeout_s=timeout_s)
        results = run_programs(programs, config=config)
    else:
        results = executor.run_many(programs, timeout_s)
    return [
        grade_execution(result, gold, answer_kind, partial_reward)
        for result, gold in zip(results, golds, strict=True)
    ]
