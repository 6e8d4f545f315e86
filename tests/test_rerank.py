"""Reranking: the choice rule (argmax among answered candidates, ties to the earliest, None when no
candidate has an answer), rerank@K accounting, the within-question AUC against its plain loop, the
solution text the reward model reads, and the eval config's rerank checks."""

from __future__ import annotations

import json
import math
import random

import pytest

from reft.config import ConfigError, load_config
from reft.data.example import CotKind
from reft.data.prompts import program_header, render_target, solution_text
from reft.data.synthetic import SynthConfig, generate_examples
from reft.evaluate.config import EvalConfig
from reft.evaluate.predict import GradedCompletion, QuestionResult
from reft.evaluate.rerank import (
    pick_best,
    rerank_accuracy,
    rerank_picks,
    within_question_auc,
    within_question_pairs,
    write_rerank,
)

PICK_CASES = [
    # (scores, extracted answers, expected index, why)
    ([0.1, 0.9, 0.5], ["1", "2", "3"], 1, "the highest score wins"),
    ([0.1, 0.9, 0.5], ["1", None, "3"], 2, "the best-scored candidate has no answer: skipped"),
    ([0.7, 0.7, 0.2], ["1", "2", "3"], 0, "tie: the earliest candidate"),
    ([0.2, 0.7, 0.7], [None, "2", "3"], 1, "tie among answered candidates: the earliest of them"),
    ([0.9, 0.1], [None, "0"], 1, "a low score with an answer beats a high one without"),
    ([0.3, 0.1], ["0", "1"], 0, "the answer '0' is an answer (not falsy)"),
    ([-2.0, -1.0], ["5", "6"], 1, "works for raw logits below zero too"),
    ([0.5, 0.9], [None, None], None, "no candidate has an answer"),
    ([], [], None, "no candidates at all"),
]


@pytest.mark.parametrize(("scores", "answers", "expected", "why"), PICK_CASES)
def test_pick_best(scores, answers, expected, why):
    assert pick_best(scores, answers) == expected, why


def test_pick_best_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 scores but 1 candidates"):
        pick_best([0.1, 0.2], ["1"])


WITHIN_AUC_CASES = [
    # (scores per question, labels per question, expected, why)
    ([[0.9, 0.1]], [[1, 0]], 1.0, "the correct one scores higher"),
    ([[0.1, 0.9]], [[1, 0]], 0.0, "the wrong one scores higher"),
    ([[0.5, 0.5]], [[1, 0]], 0.5, "a tie counts 1/2"),
    ([[0.9, 0.8], [0.2, 0.1]], [[0, 0], [1, 1]], math.nan,
     "easy and hard questions told apart, but no question has both labels: no pair"),
    ([[0.9, 0.8, 0.1], [0.3, 0.7]], [[1, 1, 0], [1, 0]], 2 / 3,
     "pairs pooled: 2 of 2 won, 0 of 1 won -> 2/3, not the mean of the questions' 1 and 0"),
    ([[0.8, 0.9], [0.1, 0.2]], [[1, 0], [1, 0]], 0.0,
     "the easy question scores high for both samples: pooled AUC 1/4, every within pair lost"),
    ([[0.7], [], [0.2, 0.2, 0.9]], [[1], [], [0, 0, 1]], 1.0, "one-sample and empty questions add no pair"),
]  # fmt: skip


def _within_question_loop(scores, labels) -> float:
    """The docstring's plain loop, the oracle."""
    wins = pairs = 0
    for s, y in zip(scores, labels, strict=True):
        for i in range(len(s)):
            for j in range(len(s)):
                if y[i] and not y[j]:
                    wins += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
                    pairs += 1
    return wins / pairs if pairs else math.nan


@pytest.mark.parametrize(("scores", "labels", "expected", "why"), WITHIN_AUC_CASES)
def test_within_question_auc_table(scores, labels, expected, why):
    result = within_question_auc(scores, labels)
    assert result == pytest.approx(expected, nan_ok=True), why
    assert result == pytest.approx(_within_question_loop(scores, labels), nan_ok=True), why


def test_within_question_auc_matches_the_plain_loop_on_random_questions():
    rng = random.Random(0)
    for _ in range(50):
        sizes = [rng.randint(0, 8) for _ in range(rng.randint(1, 6))]
        # few distinct values make many ties; float64 throughout
        scores = [
            [rng.choice([-1.5, 0.0, 0.25, 0.25 + 1e-12, 3.0]) for _ in range(n)] for n in sizes
        ]
        labels = [[rng.randint(0, 1) for _ in range(n)] for n in sizes]
        oracle = _within_question_loop(scores, labels)
        assert within_question_auc(scores, labels) == pytest.approx(oracle, nan_ok=True)
        pairs = sum(sum(y) * (len(y) - sum(y)) for y in labels)
        assert within_question_pairs(labels) == pairs
        assert math.isnan(oracle) == (pairs == 0)


def test_within_question_auc_rejects_mismatched_questions():
    with pytest.raises(ValueError, match="2 questions of scores but 1 of labels"):
        within_question_auc([[0.1], [0.2]], [[1]])


def _completion(extracted: str | None, correct: bool) -> GradedCompletion:
    return GradedCompletion(f"... {extracted}", extracted, correct, float(correct), None, 5, True)


def _question(qid: str, *graded: tuple[str | None, bool]) -> QuestionResult:
    return QuestionResult(qid, f"question {qid}", "7", [_completion(*g) for g in graded])


def test_rerank_accuracy_counts_the_chosen_completion_and_no_choice_as_wrong(tmp_path):
    results = [
        _question("a", ("3", False), ("7", True)),  # scores pick the correct one
        _question("b", ("7", True), ("3", False)),  # scores pick the wrong one
        _question("c", (None, False), (None, False)),  # nothing answered: wrong
        _question("d", ("7", True), (None, False)),  # tie with an unanswered one
    ]
    scores = [[0.2, 0.8], [0.4, 0.6], [0.9, 0.9], [0.5, 0.5]]
    picks = rerank_picks(results, scores)
    assert picks == [1, 1, None, 0]
    assert rerank_accuracy(results, picks) == pytest.approx(2 / 4)
    assert rerank_accuracy([], []) == 0.0

    path = tmp_path / "rerank.jsonl"
    write_rerank(path, results, scores, picks)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["pick"], r["correct"]) for r in lines] == [
        ("a", 1, True), ("b", 1, False), ("c", None, False), ("d", 0, True),
    ]  # fmt: skip
    assert lines[0]["scores"] == [0.2, 0.8]


def test_solution_text_puts_the_program_header_back_for_pcot():
    example = generate_examples(SynthConfig(), "train", 1, cot=CotKind.python)[0]
    program = render_target(example, CotKind.python)
    header = program_header(example.question)
    assert program.startswith(header)
    body = program[len(header) :]  # what a P-CoT model generates after the generation prompt
    assert solution_text(example.question, body + "\n", CotKind.python) == program
    nl = "Tom has 3.\nTom has 3 + 4 = 7.\nTherefore, the answer is: 7.0"
    assert solution_text("q", f"  {nl}\n", CotKind.nl) == nl, "N-CoT is kept verbatim (stripped)"


def test_eval_config_rerank_needs_k():
    with pytest.raises(ConfigError, match="set k > 0"):
        load_config(EvalConfig, None, ["model=m", "rerank=runs/rm/best"])
    config = load_config(EvalConfig, None, ["model=m", "rerank=runs/rm/best", "k=4"])
    assert config.rerank == "runs/rm/best" and config.k == 4
    assert load_config(EvalConfig, None, ["model=m"]).rerank is None


def test_eval_table_puts_runs_side_by_side(tmp_path, capsys):
    from reft.cli import main

    runs = {
        "sft": {"questions": 10, "top1": 0.5, "answered": 1.0, "voting@4": 0.6, "rerank@4": 0.7,
                "pass@4": 0.9},
        "reft": {"questions": 10, "top1": 0.625},
    }  # fmt: skip
    for name, metrics in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"metrics": metrics}))
    assert main(["eval-table", f"SFT={tmp_path / 'sft'}", str(tmp_path / "reft")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| run | questions | top1 | voting@4 | rerank@4 | pass@4 |",
        "|---|---:|---:|---:|---:|---:|",
        "| SFT | 10 | 50.0 | 60.0 | 70.0 | 90.0 |",
        "| reft | 10 | 62.5 | - | - | - |",
    ]
    assert main(["eval-table", f"x={tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
