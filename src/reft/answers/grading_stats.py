"""What grading says about a policy beyond its reward: the share of each error kind, and how fast
programs are graded.

Every failure earns reward 0, so the reward alone cannot tell a policy that learns to crash, to
loop until the timeout, or to probe the sandbox (`forbidden`) from one that merely answers wrongly.
Training steps and evaluations therefore log the share of responses that ended in each error kind,
every kind every time (0.0 when absent), so each is one continuous curve.

Pure and torch-free: the trainers, `reft eval` and the dev evaluation call it on GradeResult.error.
"""

from __future__ import annotations

from collections.abc import Sequence

from reft.answers.execute import ErrorKind
from reft.answers.rewards import NO_ANSWER
from reft.data.example import CotKind

ERROR_KINDS: dict[CotKind, tuple[str, ...]] = {
    CotKind.nl: (NO_ANSWER,),
    CotKind.python: tuple(kind.value for kind in ErrorKind),
}
"""The GradeResult.error values each kind of chain of thought can give (None, no error, aside):
the one list the logged names come from."""
ERROR_PREFIX = "error_"
"""A share's name is this prefix and the kind (`error_timeout`); evaluations add `top1_`."""


def error_shares(errors: Sequence[str | None], cot: CotKind) -> dict[str, float]:
    """{"error_<kind>": share of `errors` equal to <kind>} for every kind of `cot` (0.0 when absent,
    and for an empty batch); the shares and the error-free share sum to 1.

    `errors`: GradeResult.error of each graded response. Raises ValueError on a kind `cot` cannot
    give (a new failure mode must be added to ERROR_KINDS, not dropped from the logs).
    """
    kinds = ERROR_KINDS[cot]
    unknown = {error for error in errors if error is not None and error not in kinds}
    if unknown:
        raise ValueError(f"error kinds {sorted(unknown)} are not among {cot.value}'s {kinds}")
    total = max(len(errors), 1)
    return {f"{ERROR_PREFIX}{kind}": sum(e == kind for e in errors) / total for kind in kinds}


def programs_per_second(programs: int, seconds: float) -> float:
    """Programs graded per second of grading (0.0 when no time was measured)."""
    return programs / seconds if seconds > 0 else 0.0
