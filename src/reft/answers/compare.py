"""Is an extracted answer correct? One small function per answer kind, chosen via a table. Pure.

- numeric: |prediction - gold| <= 1e-2, both parsed with the paper's float parse (commas dropped):
  "72" vs gold "72.0" -> True; "0.33" vs "0.333" -> True (0.003 apart); "72.02" vs "72" -> False.
- multiple choice: the letters are equal, case-insensitively: "c" vs gold "C" -> True.

A prediction of None (nothing extracted) is never correct. A gold answer that is not of its kind
("abc" for a numeric task) raises ValueError: that is a data error, not a wrong prediction.
"""

from __future__ import annotations

from collections.abc import Callable

from reft.answers.extract import parse_number
from reft.data.example import AnswerKind

NUMERIC_TOLERANCE = 1e-2
"""Largest |prediction - gold| still counted correct (the paper's code uses 1e-2)."""
CHOICES = "abcde"
"""MathQA's option letters."""


def parse_gold(gold: str, kind: AnswerKind) -> float | str:
    """The gold answer as a number or a letter; ValueError when it is not of its kind."""
    if kind is AnswerKind.numeric:
        value = parse_number(gold)
        if value is None:
            raise ValueError(f"gold answer {gold!r} is not a number")
        return value
    letter = gold.strip().lower()
    if len(letter) != 1 or letter not in CHOICES:
        raise ValueError(f"gold answer {gold!r} is not an option letter a-e")
    return letter


def numeric_correct(prediction: str, gold: str) -> bool:
    """|prediction - gold| <= NUMERIC_TOLERANCE; a prediction that is not a number is wrong."""
    expected = parse_gold(gold, AnswerKind.numeric)
    value = parse_number(prediction)
    return value is not None and abs(value - expected) <= NUMERIC_TOLERANCE


def choice_correct(prediction: str, gold: str) -> bool:
    """The same option letter, ignoring case and surrounding spaces."""
    return prediction.strip().lower() == parse_gold(gold, AnswerKind.multiple_choice)


COMPARATORS: dict[AnswerKind, Callable[[str, str], bool]] = {
    AnswerKind.numeric: numeric_correct,
    AnswerKind.multiple_choice: choice_correct,
}


def is_correct(prediction: str | None, gold: str, kind: AnswerKind) -> bool:
    """Whether an extracted answer (None = nothing extracted) matches the gold answer."""
    if prediction is None:
        parse_gold(gold, kind)  # a bad gold answer is an error even when nothing was extracted
        return False
    return COMPARATORS[kind](prediction, gold)
