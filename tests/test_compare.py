"""Answer comparison per answer kind: numeric within 1e-2, multiple choice by letter."""

from __future__ import annotations

import pytest

from reft.answers.compare import COMPARATORS, NUMERIC_TOLERANCE, is_correct, parse_gold
from reft.data.example import AnswerKind

NUM, MC = AnswerKind.numeric, AnswerKind.multiple_choice


@pytest.mark.parametrize(
    ("prediction", "gold", "kind", "expected", "reason"),
    [
        ("72", "72", NUM, True, "identical"),
        ("72", "72.0", NUM, True, "gold written as float"),
        ("203", "203.0", NUM, True, "SVAMP's gold format"),
        ("1000", "1,000", NUM, True, "GSM8K gold with thousands comma"),
        ("0.33", "0.333", NUM, True, "0.003 apart: within the paper's 1e-2"),
        ("0.01", "0", NUM, True, "exactly 1e-2 apart is still correct (<=)"),
        ("72.02", "72", NUM, False, "0.02 apart: beyond 1e-2"),
        ("-5", "5", NUM, False, "sign matters"),
        ("73", "72", NUM, False, "off by one"),
        ("1e-3", "0", NUM, True, "tiny values round to zero"),
        ("seventy-two", "72", NUM, False, "a prediction that is not a number is wrong"),
        (None, "72", NUM, False, "nothing extracted is never correct"),
        ("c", "c", MC, True, "same letter"),
        ("c", "C", MC, True, "case-insensitive gold"),
        (" C ", "c", MC, True, "case and spaces in the prediction"),
        ("b", "c", MC, False, "different letter"),
        (None, "a", MC, False, "nothing extracted"),
    ],
)
def test_is_correct(prediction, gold, kind, expected, reason):
    assert is_correct(prediction, gold, kind) is expected, reason


@pytest.mark.parametrize(
    ("gold", "kind", "reason"),
    [
        ("abc", NUM, "a numeric task's gold must be a number"),
        ("", NUM, "empty gold"),
        ("nan", NUM, "non-finite gold"),
        ("f", MC, "only a-e are options"),
        ("ab", MC, "one letter"),
        ("12", MC, "a number is not an option"),
    ],
)
def test_bad_gold_raises(gold, kind, reason):
    with pytest.raises(ValueError):
        parse_gold(gold, kind)
    with pytest.raises(ValueError):
        is_correct(None, gold, kind)  # a data error even when nothing was extracted


def test_one_comparator_per_kind():
    assert set(COMPARATORS) == set(AnswerKind)
    assert NUMERIC_TOLERANCE == 1e-2  # the paper's tolerance
