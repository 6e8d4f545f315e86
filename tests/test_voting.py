"""Majority voting: abstentions ignored, canonical grouping, deterministic tie-break."""

from __future__ import annotations

import pytest

from reft.data.example import AnswerKind
from reft.evaluate.voting import answer_key, majority_vote

NUM, MC = AnswerKind.numeric, AnswerKind.multiple_choice

CASES = [
    # (answers, kind, expected, reason)
    (["3", "4", "4"], NUM, "4", "plain majority"),
    (["7", "9", "9", "7"], NUM, "7", "tie: the earliest first appearance wins"),
    (["9", "7", "7", "9"], NUM, "9", "tie-break follows sampling order, not value"),
    ([None, None, "5"], NUM, "5", "abstentions do not vote"),
    ([None, None], NUM, None, "all abstain: the vote abstains"),
    ([], NUM, None, "no samples"),
    (
        ["18", "18.0", "17", "17"],
        NUM,
        "18",
        "18 and 18.0 are one answer (2 votes), tie with 17 broken by order",
    ),
    (["1,000", "1000.00", "999"], NUM, "1,000", "thousands commas and decimals group together"),
    (["-0", "0.0", "1"], NUM, "-0", "negative zero is zero"),
    (["b", "B", "c"], MC, "b", "letters group case-insensitively"),
    (["c", None, "a", "a"], MC, "a", "multiple-choice majority"),
]


@pytest.mark.parametrize(
    ("answers", "kind", "expected", "reason"), CASES, ids=[c[3] for c in CASES]
)
def test_majority_vote(answers, kind, expected, reason):
    assert majority_vote(answers, kind) == expected, reason


def test_answer_key():
    assert answer_key("18", NUM) == answer_key("18.000000", NUM) == "18.0"
    assert answer_key("18", NUM) != answer_key("18.01", NUM)
    assert answer_key(" A ", MC) == "a"
    assert answer_key("not a number", NUM) == "not a number"
