"""Answer checkers side by side (reft.answers.checkers) and `reft grade --audit`: each checker's edge
cases with the reason it behaves so, the audit's counts, and an audit without the optional extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import reft.answers.audit as audit_module
import reft.answers.checkers as checkers
from reft.answers.audit import agreement_matrix, disagreement_classes, disagreements, run_checkers
from reft.answers.checkers import Verdict, harness_verdicts, math_verify_verdicts, reft_verdicts
from reft.cli import main
from reft.data.example import AnswerKind

NUMERIC = AnswerKind.numeric
T = "\nTherefore, the answer is: "  # the paper's trigger, the strict rule's anchor

# (case, completion, gold, {checker: expected correctness}, reason)
EDGE_CASES = [
    ("hashes", "12 + 6 = 18\n#### 18", "18",
     {"reft-strict": False, "reft-lenient": True, "harness-strict": True, "harness-flexible": True},
     "GSM8K's own format: every checker but the paper's trigger rule reads it"),
    ("trigger", f"12 + 6 = 18{T}18", "18",
     {"reft-strict": True, "reft-lenient": True, "harness-strict": False, "harness-flexible": True},
     "the paper's format has no '####': harness strict-match finds nothing"),
    ("comma", "#### 1,000", "1000",
     {"reft-lenient": True, "harness-strict": True, "harness-flexible": True},
     "thousands separators are dropped by every checker"),
    ("currency", "She pays $18.\n#### $18", "18",
     {"reft-lenient": True, "harness-strict": False, "harness-flexible": True},
     "strict-match's regex does not allow '$' after '#### '; flexible keeps it, then ignores it"),
    ("trailing period", f"So 18.{T}18.", "18",
     {"reft-strict": True, "harness-flexible": True},
     "the paper's float() parse and the harness's '\\.$' both drop a final period"),
    ("decimal vs integer", "#### 18.0", "18",
     {"reft-lenient": True, "harness-strict": False, "harness-flexible": False},
     "the harness compares strings exactly: '18.0' is not '18'; reft compares numbers"),
    ("negative", "The change is -5.\n#### -5", "-5",
     {"reft-lenient": True, "harness-strict": True, "harness-flexible": True},
     "a leading minus belongs to the number in every checker"),
    ("fraction", "Each gets \\boxed{\\frac{3}{4}}", "0.75",
     {"reft-lenient": True, "harness-strict": False, "harness-flexible": False},
     "reft evaluates a LaTeX fraction; the harness's last number is the denominator 4"),
    ("answer is", "The answer is 18 apples.", "18",
     {"reft-strict": False, "reft-lenient": True, "harness-flexible": True},
     "'The answer is' is a lenient form; the harness's flexible filter takes the last number"),
    ("number after the answer", "The answer is 18. That took 2 steps.", "18",
     {"reft-lenient": True, "harness-flexible": False},
     "flexible-extract takes the LAST number in the text, here the step count"),
    ("first of two hashes", "#### 17\nWait, 18.\n#### 18", "18",
     {"reft-lenient": True, "harness-strict": False},
     "strict-match takes the FIRST '####'; reft's lenient rule takes the last"),
    ("boxed", "so the total is \\boxed{42}.", "42",
     {"reft-lenient": True, "harness-strict": False, "harness-flexible": True},
     "\\boxed{} is a lenient form; flexible finds '42' as its last number"),
    ("nothing", "I do not know.", "5",
     {"reft-strict": False, "reft-lenient": False, "harness-strict": False, "harness-flexible": False},
     "no number, no answer"),
]  # fmt: skip


def _verdicts(completion: str, gold: str) -> dict[str, Verdict]:
    names = ["reft-strict", "reft-lenient", "harness-strict", "harness-flexible"]
    return {
        name: items[0] for name, items in run_checkers(names, [completion], [gold], NUMERIC).items()
    }


@pytest.mark.parametrize("case, completion, gold, expected, reason", EDGE_CASES,
                         ids=[case[0] for case in EDGE_CASES])  # fmt: skip
def test_checker_edge_cases(case, completion, gold, expected, reason):
    verdicts = _verdicts(completion, gold)
    for name, correct in expected.items():
        assert verdicts[name].correct is correct, f"{name} on {case}: {reason} ({verdicts[name]})"


def test_harness_filters_follow_the_task_yaml():
    """strict-match: first '#### N'; flexible-extract: last number-like run; '[invalid]' -> None."""
    completions = ["#### 3\n#### 4", "a 1 b 2,500 c", "none"]
    strict = harness_verdicts(completions, ["3", "2500", "1"], flexible=False)
    flexible = harness_verdicts(completions, ["4", "2500", "1"], flexible=True)
    assert [v.extracted for v in strict] == ["3", None, None]
    assert [v.extracted for v in flexible] == ["4", "2,500", None]
    assert [v.correct for v in strict] == [True, False, False]
    assert [v.correct for v in flexible] == [True, True, False]


def test_reft_rules_compare_numbers_within_the_papers_tolerance():
    verdicts = reft_verdicts([f"x{T}18.004", f"x{T}18.02"], ["18", "18"], NUMERIC, strict=True)
    assert [v.correct for v in verdicts] == [True, False]


def test_agreement_matrix_and_disagreements_count_every_pair():
    verdicts = {
        "a": [Verdict("1", True), Verdict("2", True), Verdict(None, False)],
        "b": [Verdict("1", True), Verdict(None, False), Verdict("3", True)],
        "c": [Verdict("1", True), Verdict("2", True), Verdict(None, False)],
    }
    matrix = agreement_matrix(verdicts)
    assert vars(matrix["a", "b"]) == {"both": 1, "only_a": 1, "only_b": 1, "neither": 0}
    assert matrix["a", "c"].agree == 1.0 and matrix["a", "b"].agree == pytest.approx(1 / 3)
    rows = disagreements(verdicts, ["x", "y", "z"], ["1", "2", "3"], ["i0", "i1", "i2"])
    assert [(row["id"], row["right"], row["wrong"]) for row in rows] == [
        ("i1", ["a", "c"], ["b"]), ("i2", ["b"], ["a", "c"])
    ]  # fmt: skip
    assert rows[0]["checkers"]["b"] == {"extracted": None, "correct": False, "note": None}
    assert disagreement_classes(rows) == {"a + c": 1, "b": 1}


SLOW_WORKER = """
import json, sys, time
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    completion, gold = json.loads(line)
    if completion == "hang":
        time.sleep(60)
    print(json.dumps([completion, completion == gold, None]), flush=True)
"""


def test_math_verify_pool_kills_an_item_past_its_timeout(tmp_path, monkeypatch):
    """A real timeout: the stuck worker is killed and replaced; the other items are still judged."""
    worker = tmp_path / "worker.py"
    worker.write_text(SLOW_WORKER)
    monkeypatch.setattr(checkers, "WORKER_COMMAND", [sys.executable, str(worker)])
    verdicts = math_verify_verdicts(["7", "hang", "8", "9"], ["7", "1", "0", "9"], timeout_s=1.0)
    assert verdicts == [Verdict("7", True), Verdict(None, False, "timeout"), Verdict("8", False),
                        Verdict("9", True)]  # fmt: skip


def test_math_verify_reads_latex_and_numbers():
    pytest.importorskip("math_verify")
    completions = ["so \\boxed{\\frac{3}{4}}", "#### 1,000", "no idea"]
    verdicts = math_verify_verdicts(completions, ["0.75", "1000", "5"], workers=2)
    assert [v.correct for v in verdicts] == [True, True, False]


def _completions(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "completion": c, "answer": a}) + "\n"
                            for i, (c, a) in enumerate(rows)))  # fmt: skip
    return path


def test_audit_cli_writes_disagreements_and_summary(tmp_path, capsys):
    inp = _completions(tmp_path / "in.jsonl", [("#### 18", "18"), (f"x{T}18", "18"),
                                               ("#### 18.0", "18"), ("nothing", "3")])  # fmt: skip
    out = tmp_path / "disagreements.jsonl"
    assert main(["grade", "--audit", "--cot", "nl", "--input", str(inp), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy each checker would report" in printed and "harness-strict" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3]  # every row but "nothing", which all reject
    summary = json.loads((tmp_path / "disagreements.summary.json").read_text())
    assert summary["completions"] == 4 and summary["disagreements"] == 3
    assert (
        summary["accuracy"]["reft-lenient"] == 0.75
        and summary["accuracy"]["harness-strict"] == 0.25
    )


def test_audit_without_math_verify_names_it_and_runs_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(audit_module, "math_verify_available", lambda: False)
    inp = _completions(tmp_path / "in.jsonl", [("#### 18", "18")])
    out = tmp_path / "d.jsonl"
    assert main(["grade", "--audit", "--cot", "nl", "--input", str(inp), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out: math-verify" in printed and "not installed" in printed
    assert "math-verify" not in json.loads((tmp_path / "d.summary.json").read_text())["accuracy"]


def test_audit_is_for_natural_language_answers(tmp_path, capsys):
    inp = _completions(tmp_path / "in.jsonl", [("return 3", "3")])
    argv = [
        "grade",
        "--audit",
        "--cot",
        "python",
        "--input",
        str(inp),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "--cot nl" in capsys.readouterr().err


def test_eval_reports_the_harness_scores_of_its_greedy_outputs():
    from reft.evaluate.predict import GradedCompletion, QuestionResult, harness_accuracy

    def result(text: str, answer: str) -> QuestionResult:
        graded = GradedCompletion(text, None, False, 0.0, None, 3, True)
        return QuestionResult("q", "question", answer, [graded])

    results = [result(f"x{T}18", "18"), result("#### 7", "7"), result("#### 7.0", "7")]
    assert harness_accuracy(results, flexible=False) == pytest.approx(1 / 3)
    assert harness_accuracy(results, flexible=True) == pytest.approx(2 / 3)
