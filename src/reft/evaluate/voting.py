"""Majority voting over extracted answers (pure; no model, no torch).

Rules (the paper's voting@K, made deterministic):
- Abstentions (completions with no extracted answer, `None`) do not vote. If every completion
  abstains, the vote abstains too (`None`), which counts as wrong.
- Answers are grouped by a canonical key, so "18", "18.0" and "18.00" are one numeric answer, and
  "A" and "a" one multiple-choice answer.
- Ties are broken by the earliest first appearance among the tied answers: the answer that the
  sampling order produced first wins. Example: ["7", "9", "9", "7"] -> "7" (both have 2 votes; "7"
  appeared first).
"""

from __future__ import annotations

from collections.abc import Sequence

from reft.data.example import AnswerKind

NUMERIC_KEY_DECIMALS = 6
"""Numeric answers that agree to this many decimals vote together ("18" and "18.0000001")."""


def answer_key(answer: str, kind: AnswerKind) -> str:
    """The canonical form two answers must share to vote together."""
    if kind is AnswerKind.multiple_choice:
        return answer.strip().lower()
    try:
        value = round(float(answer.replace(",", "")), NUMERIC_KEY_DECIMALS)
    except ValueError:
        return answer.strip()
    return repr(value + 0.0)  # + 0.0 folds -0.0 into 0.0


def majority_vote(answers: Sequence[str | None], kind: AnswerKind) -> str | None:
    """The most common non-None answer (as first written), ties to the earliest; None if all abstain."""
    counts: dict[str, int] = {}
    first_written: dict[str, str] = {}
    for answer in answers:
        if answer is None:
            continue
        key = answer_key(answer, kind)
        counts[key] = counts.get(key, 0) + 1
        first_written.setdefault(key, answer)
    if not counts:
        return None
    best = max(counts.values())
    # dicts keep insertion order, so the first key reaching `best` is the earliest to appear.
    winner = next(key for key, count in counts.items() if count == best)
    return first_written[winner]
