"""`reft grade --audit`: the same completions under every answer checker, and where they disagree.

Published GSM8K numbers come from different checkers (lm-evaluation-harness's strict or flexible
filter, math-verify, a paper's own rule), and the same outputs can score very differently under
them. The audit grades once per checker (reft.answers.checkers) and reports the accuracy each would
publish, a pairwise agreement matrix and every completion on which the checkers disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from reft.answers.checkers import (
    MATH_VERIFY_TIMEOUT_S,
    Verdict,
    harness_verdicts,
    math_verify_available,
    math_verify_verdicts,
    reft_verdicts,
)
from reft.data.example import AnswerKind

CHECKERS = ("reft-strict", "reft-lenient", "harness-strict", "harness-flexible", "math-verify")
NUMERIC_ONLY = {"harness-strict", "harness-flexible", "math-verify"}
"""Checkers written for numeric (GSM8K-style) answers; multiple-choice audits leave them out."""


def usable_checkers(kind: AnswerKind) -> tuple[list[str], dict[str, str]]:
    """(checkers that can run here, {checker left out: why})."""
    missing = {}
    if kind is AnswerKind.multiple_choice:
        missing |= {name: "numeric answers only" for name in sorted(NUMERIC_ONLY)}
    elif not math_verify_available():
        missing["math-verify"] = "not installed: pip install 'reft[audit]' (or math-verify)"
    return [name for name in CHECKERS if name not in missing], missing


def run_checkers(
    names: Sequence[str],
    completions: Sequence[str],
    golds: Sequence[str],
    kind: AnswerKind,
    timeout_s: float = MATH_VERIFY_TIMEOUT_S,
    workers: int = 2,
) -> dict[str, list[Verdict]]:
    """{checker: one Verdict per completion}."""
    runners = {
        "reft-strict": lambda: reft_verdicts(completions, golds, kind, strict=True),
        "reft-lenient": lambda: reft_verdicts(completions, golds, kind, strict=False),
        "harness-strict": lambda: harness_verdicts(completions, golds, flexible=False),
        "harness-flexible": lambda: harness_verdicts(completions, golds, flexible=True),
        "math-verify": lambda: math_verify_verdicts(completions, golds, timeout_s, workers),
    }
    return {name: runners[name]() for name in names}


@dataclass(frozen=True)
class Agreement:
    """How two checkers judged the same completions."""

    both: int
    only_a: int
    only_b: int
    neither: int

    @property
    def agree(self) -> float:
        total = self.both + self.only_a + self.only_b + self.neither
        return (self.both + self.neither) / total if total else 1.0


def agreement_matrix(verdicts: dict[str, list[Verdict]]) -> dict[tuple[str, str], Agreement]:
    """{(a, b): counts of both right / only a / only b / neither} for every pair of checkers."""
    matrix = {}
    for a, b in combinations(verdicts, 2):
        pairs = Counter(
            (x.correct, y.correct) for x, y in zip(verdicts[a], verdicts[b], strict=True)
        )
        matrix[a, b] = Agreement(
            pairs[True, True], pairs[True, False], pairs[False, True], pairs[False, False]
        )
    return matrix


def accuracies(verdicts: dict[str, list[Verdict]]) -> dict[str, float]:
    return {
        name: sum(v.correct for v in items) / max(len(items), 1) for name, items in verdicts.items()
    }


def disagreements(
    verdicts: dict[str, list[Verdict]], completions: Sequence[str], golds: Sequence[str],
    ids: Sequence[Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per completion the checkers do not all judge alike, with every extraction."""
    rows = []
    for index, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        judged = {name: items[index] for name, items in verdicts.items()}
        right = [name for name, verdict in judged.items() if verdict.correct]
        if 0 < len(right) < len(judged):
            rows.append({
                "index": index, "id": ids[index], "answer": gold, "completion": completion,
                "right": right, "wrong": [name for name in judged if name not in right],
                "checkers": {name: {"extracted": v.extracted, "correct": v.correct, "note": v.note}
                             for name, v in judged.items()},
            })  # fmt: skip
    return rows


def disagreement_classes(rows: Sequence[dict[str, Any]]) -> Counter:
    """How many disagreements of each kind: keyed by the checkers that counted the answer right."""
    return Counter(" + ".join(row["right"]) for row in rows)


def audit_summary(
    verdicts: dict[str, list[Verdict]], rows: Sequence[dict[str, Any]], missing: dict[str, str]
) -> dict[str, Any]:
    """The JSON summary: accuracy per checker, the matrix, disagreement classes, missing checkers."""
    return {
        "completions": len(next(iter(verdicts.values()), [])),
        "accuracy": accuracies(verdicts),
        "answered": {
            name: sum(v.extracted is not None for v in items) / max(len(items), 1)
            for name, items in verdicts.items()
        },
        "agreement": {
            f"{a} | {b}": vars(counts) | {"agree": counts.agree}
            for (a, b), counts in agreement_matrix(verdicts).items()
        },
        "disagreements": len(rows),
        "classes": dict(disagreement_classes(rows).most_common()),
        "timeouts": {
            name: sum(v.note == "timeout" for v in items) for name, items in verdicts.items()
        },
        "missing_checkers": missing,
    }


def format_audit(summary: dict[str, Any], rows: Sequence[dict[str, Any]], examples: int = 2) -> str:
    """The printed report: accuracies, agreement matrix, disagreement classes with examples."""
    lines = ["  accuracy each checker would report (and how often it extracts an answer):"]
    lines += [f"    {name:<17} {value:8.2%}   answered {summary['answered'][name]:7.2%}"
              for name, value in summary["accuracy"].items()]  # fmt: skip
    lines += [
        f"    {name:<17} (left out: {why})" for name, why in summary["missing_checkers"].items()
    ]
    lines.append("  agreement (both right / only first / only second / both wrong):")
    for pair, counts in summary["agreement"].items():
        lines.append(f"    {pair:<36} {counts['agree']:7.2%}  {counts['both']:>5} "
                     f"{counts['only_a']:>5} {counts['only_b']:>5} {counts['neither']:>5}")  # fmt: skip
    lines.append(f"  disagreements: {summary['disagreements']} (right according to ...):")
    for name, count in summary["classes"].items():
        lines.append(f"    {count:>5}  {name}")
        for row in [row for row in rows if " + ".join(row["right"]) == name][:examples]:
            extracted = ", ".join(f"{checker}={found['extracted']!r}"
                                  for checker, found in row["checkers"].items())  # fmt: skip
            tail = row["completion"][-100:].replace("\n", "\\n")
            lines.append(f"           id {row['id']!r} gold {row['answer']!r}: {extracted}")
            lines.append(f"           ...{tail}")
    return "\n".join(lines)
