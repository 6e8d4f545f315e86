"""`Grader`: the reward function bound to one task, with its program pool kept alive between calls.

Training (rollout scoring), evaluation and sampling all grade through this one object, so they use the
same rule: `answers.rewards.grade_completions` (strict N-CoT extraction or sandboxed P-CoT execution, then the
1 / partial / 0 reward).
"""

from __future__ import annotations

from collections.abc import Sequence

from reft.answers.execute import ProgramPool, SandboxConfig
from reft.answers.rewards import DEFAULT_PARTIAL_REWARD, GradeResult, grade_completions
from reft.data.example import AnswerKind, CotKind


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
