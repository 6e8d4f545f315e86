"""`Grader`: the reward function bound to one task, with its program pool kept alive between calls.

Training (rollout scoring), evaluation and sampling all grade through this one object, so they use the
same rule: `answers.rewards.grade_completions` (strict N-CoT extraction or sandboxed P-CoT execution, then the
1 / partial / 0 reward).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reft.answers.execute import DEFAULT_TIMEOUT_S, ProgramPool, SandboxConfig
from reft.answers.rewards import DEFAULT_PARTIAL_REWARD, GradeResult, grade_completions
from reft.config import check_ranges
from reft.data.example import AnswerKind, CotKind

GRADING_ALIASES = {name: f"grading.{name}" for name in ("partial_reward", "timeout_s")}
"""The flat spellings of a command's `grading` section (`partial_reward=0` is
`grading.partial_reward=0`)."""


@dataclass
class GradingSettings:
    """The `grading` section of every command that grades generated solutions: its settings and
    their defaults, defined once, with their ranges checked when the config is built."""

    partial_reward: float = DEFAULT_PARTIAL_REWARD
    """Reward of an extracted but wrong answer (the reference: 0.1; 0 disables, the ablation)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Per-program time limit when running P-CoT programs (the reference: 10 s)."""

    def __post_init__(self) -> None:
        check_ranges(self, {"partial_reward": "in [0, 1]", "timeout_s": "> 0"})


class Grader:
    """Grades completions of one task; for P-CoT it owns a ProgramPool (started on first use)."""

    def __init__(
        self,
        answer_kind: AnswerKind,
        cot: CotKind,
        *,
        strict: bool = True,
        partial_reward: float = DEFAULT_PARTIAL_REWARD,
        timeout_s: float | None = None,
        workers: int | None = None,
    ) -> None:
        self.answer_kind = answer_kind
        self.cot = cot
        self.strict = strict
        self.partial_reward = partial_reward
        self.timeout_s = timeout_s
        self.workers = workers
        self._pool: ProgramPool | None = None

    @classmethod
    def of(
        cls, answer_kind: AnswerKind, cot: CotKind, grading: GradingSettings, *, strict: bool = True
    ) -> Grader:
        """The grader a command's `grading` section describes (training always extracts strictly,
        the paper's rule)."""
        return cls(answer_kind, cot, strict=strict, partial_reward=grading.partial_reward,
                   timeout_s=grading.timeout_s)  # fmt: skip

    def grade(self, completions: Sequence[str], golds: Sequence[str]) -> list[GradeResult]:
        """One GradeResult per completion, in order."""
        if self.cot is CotKind.python and self._pool is None:
            config = (
                SandboxConfig()
                if self.timeout_s is None
                else SandboxConfig(timeout_s=self.timeout_s)
            )
            self._pool = ProgramPool(workers=self.workers, config=config)
        return grade_completions(
            completions,
            golds,
            self.answer_kind,
            self.cot,
            strict=self.strict,
            partial_reward=self.partial_reward,
            executor=self._pool,
            timeout_s=self.timeout_s,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
