"""The one outcome reward and the batch grading API (N-CoT and P-CoT)."""

from __future__ import annotations

import pytest

from reft.answers.execute import ProgramPool, SandboxConfig
from reft.answers.rewards import (
    DEFAULT_PARTIAL_REWARD,
    NO_ANSWER,
    GradeResult,
    grade_completions,
    outcome_reward,
)
from reft.data.example import AnswerKind, CotKind
from reft.data.prompts import ANSWER_TRIGGER

NUM, MC = AnswerKind.numeric, AnswerKind.multiple_choice
T = ANSWER_TRIGGER


@pytest.mark.parametrize(
    ("extracted", "correct", "partial", "expected", "reason"),
    [
        ("72", True, 0.1, 1.0, "correct answer"),
        ("71", False, 0.1, 0.1, "extracted but wrong: the paper's partial reward"),
        ("71", False, 0.0, 0.0, "partial reward disabled"),
        ("71", False, 0.5, 0.5, "partial reward configurable"),
        (None, False, 0.1, 0.0, "nothing extracted"),
        ("72", True, 0.0, 1.0, "correct stays 1 without partial reward"),
    ],
)
def test_outcome_reward(extracted, correct, partial, expected, reason):
    assert outcome_reward(extracted, correct, partial) == expected, reason


def test_outcome_reward_default_and_range():
    assert DEFAULT_PARTIAL_REWARD == 0.1
    assert outcome_reward("1", False) == 0.1
    with pytest.raises(ValueError):
        outcome_reward("1", False, partial_reward=1.5)


@pytest.mark.parametrize(
    ("completion", "gold", "kind", "strict", "expected", "reason"),
    [
        (f"3+4=7{T}7", "7", NUM, True, GradeResult("7", True, 1.0, None), "correct, strict"),
        (f"3+4=8{T}8", "7", NUM, True, GradeResult("8", False, 0.1, None), "wrong: partial"),
        (
            "so the answer is 7",
            "7",
            NUM,
            True,
            GradeResult(None, False, 0.0, NO_ANSWER),
            "strict misses",
        ),
        ("so the answer is 7", "7", NUM, False, GradeResult("7", True, 1.0, None), "lenient finds"),
        ("no idea", "7", NUM, False, GradeResult(None, False, 0.0, NO_ANSWER), "nothing at all"),
        (f"x{T}B", "b", MC, True, GradeResult("b", True, 1.0, None), "multiple choice"),
        (f"x{T}c", "b", MC, True, GradeResult("c", False, 0.1, None), "wrong letter"),
    ],
)
def test_grade_nl(completion, gold, kind, strict, expected, reason):
    [result] = grade_completions([completion], [gold], kind, CotKind.nl, strict=strict)
    assert result == expected, reason


def test_grade_partial_reward_option():
    [result] = grade_completions([f"x{T}8"], ["7"], NUM, CotKind.nl, partial_reward=0.0)
    assert result.reward == 0.0 and result.extracted == "8"


def test_grade_validates_inputs():
    with pytest.raises(ValueError, match="2 completions but 1"):
        grade_completions(["a", "b"], ["1"], NUM, CotKind.nl)
    with pytest.raises(ValueError, match="not a number"):
        grade_completions(["a"], ["seven"], NUM, CotKind.nl)


@pytest.fixture(scope="module")
def pool():
    with ProgramPool(workers=1, config=SandboxConfig(timeout_s=2.0)) as pool:
        yield pool


@pytest.mark.parametrize(
    ("completion", "gold", "kind", "expected", "reason"),
    [
        (
            "def solution():\n    return 3 + 4",
            "7",
            NUM,
            GradeResult("7", True, 1.0, None),
            "full program",
        ),
        ("    x = 3 + 4\n    return x", "7.0", NUM, GradeResult("7", True, 1.0, None), "body only"),
        (
            "def solution():\n    return 7 / 3",
            "2.33",
            NUM,
            GradeResult("2.3333333333333335", True, 1.0, None),
            "within 1e-2",
        ),
        (
            "def solution():\n    return 8",
            "7",
            NUM,
            GradeResult("8", False, 0.1, None),
            "wrong: partial",
        ),
        (
            "def solution():\n    return 1 / 0",
            "7",
            NUM,
            GradeResult(None, False, 0.0, "exception"),
            "raises",
        ),
        (
            "def solution():\n    return 'seven'",
            "7",
            NUM,
            GradeResult(None, False, 0.0, "no_result"),
            "not a number",
        ),
        (
            "def solution():\n    return None",
            "7",
            NUM,
            GradeResult(None, False, 0.0, "no_result"),
            "None",
        ),
        (
            "x = 1",
            "7",
            NUM,
            GradeResult(None, False, 0.0, "exception"),
            "body that does not compile",
        ),
        (
            "def solution():\n    return 'C'",
            "c",
            MC,
            GradeResult("c", True, 1.0, None),
            "letter returned",
        ),
    ],
)
def test_grade_python(pool, completion, gold, kind, expected, reason):
    [result] = grade_completions([completion], [gold], kind, CotKind.python, executor=pool)
    assert result == expected, reason


def test_grade_python_keeps_order_and_timeout(pool):
    programs = [f"def solution():\n    return {i}" for i in range(20)]
    programs[5] = "def solution():\n    while True:\n        pass"
    golds = [str(i) for i in range(20)]
    results = grade_completions(programs, golds, NUM, CotKind.python, executor=pool, timeout_s=0.5)
    assert [r.correct for r in results] == [i != 5 for i in range(20)]
    assert results[5].error == "timeout" and results[5].reward == 0.0


def test_grade_python_without_pool_starts_one():
    [result] = grade_completions(["def solution():\n    return 2"], ["2"], NUM, CotKind.python)
    assert result == GradeResult("2", True, 1.0, None)
