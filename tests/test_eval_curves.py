"""`reft eval`'s accuracy-against-K curves: voting@k, pass@k and rerank@k on the first k samples of
each question, checked against plain loops on hand-made graded samples, and written to results.json
beside the unchanged headline metrics (no model: generation and the reward model are faked)."""

from __future__ import annotations

import json
import random
from contextlib import nullcontext

import pytest

from reft.data.example import AnswerKind, CotKind, Example
from reft.evaluate import run
from reft.evaluate.config import EvalConfig
from reft.evaluate.predict import (
    GradedCompletion,
    QuestionResult,
    first_k,
    pass_at_k,
    top1_accuracy,
    voting_accuracy,
)
from reft.evaluate.rerank import rerank_accuracy, rerank_picks
from reft.evaluate.run import accuracy_curves, curve_ks
from reft.evaluate.voting import majority_vote

K = 12
"""Samples per question: not a power of two, so the curve ends with K itself."""
GOLD = "2"
CHOICES = ("1", "2", "3", None)
"""Each sample's extracted answer (None: no answer); "2" is right."""


def _completion(answer: str | None) -> GradedCompletion:
    return GradedCompletion(text=f"... {answer}", extracted=answer, correct=answer == GOLD,
                            reward=float(answer == GOLD), error=None, num_tokens=3, finished=True)  # fmt: skip


def _questions(count: int = 40, k: int = K, seed: int = 0):
    """(examples, results with k graded samples each, reward-model scores[i][j])."""
    rng = random.Random(seed)
    examples = [Example(f"q{i}", f"question {i}", GOLD, AnswerKind.numeric, "synth")
                for i in range(count)]  # fmt: skip
    results = [QuestionResult(e.id, e.question, e.answer,
                              [_completion(rng.choice(CHOICES)) for _ in range(k)])
               for e in examples]  # fmt: skip
    # Rounded scores, so that ties (broken towards the earliest sample) happen.
    scores = [[round(rng.random(), 1) for _ in range(k)] for _ in results]
    return examples, results, scores


def _loop_curves(results, scores, ks):
    """The oracle: for each k, every question's first k answers, voted, checked and reranked by hand."""
    voting, passing, rerank = [], [], []
    for k in ks:
        votes = passes = reranked = 0
        for result, question_scores in zip(results, scores, strict=True):
            answers = [c.extracted for c in result.completions[:k]]
            votes += majority_vote(answers, AnswerKind.numeric) == GOLD
            passes += GOLD in answers
            best = None
            for j in range(k):
                if answers[j] is not None and (
                    best is None or question_scores[j] > question_scores[best]
                ):
                    best = j
            reranked += best is not None and answers[best] == GOLD
        voting.append(votes / len(results))
        passing.append(passes / len(results))
        rerank.append(reranked / len(results))
    return {"k": list(ks), "voting": voting, "pass": passing, "rerank": rerank}


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, [1]), (2, [1, 2]), (12, [1, 2, 4, 8, 12]), (32, [1, 2, 4, 8, 16, 32]),
     (64, [1, 2, 4, 8, 16, 32, 64])],
)  # fmt: skip
def test_curve_ks_are_powers_of_two_up_to_32_then_k(k, expected):
    assert curve_ks(k) == expected


def test_curves_match_the_plain_loop_and_end_at_the_headline():
    examples, results, scores = _questions()
    curves = accuracy_curves(results, examples, scores)
    expected = _loop_curves(results, scores, [1, 2, 4, 8, 12])
    assert curves.keys() == expected.keys()
    assert curves["k"] == expected["k"]
    for name in ("voting", "pass", "rerank"):
        assert curves[name] == pytest.approx(expected[name]), name
    assert curves["voting"][0] == top1_accuracy(results), "voting@1: the first sample's accuracy"
    assert curves["rerank"][0] == top1_accuracy(results), "rerank@1 has one candidate to pick"
    assert curves["pass"] == sorted(curves["pass"]), "pass@k grows with k"
    # The K point is the headline figure over every sample.
    assert curves["voting"][-1] == voting_accuracy(results, examples)
    assert curves["pass"][-1] == pass_at_k(results)
    assert curves["rerank"][-1] == rerank_accuracy(results, rerank_picks(results, scores))
    json.dumps(curves, allow_nan=False)


def test_curves_without_a_reward_model_have_no_rerank():
    examples, results, _ = _questions(count=5, k=4)
    curves = accuracy_curves(results, examples)
    assert set(curves) == {"k", "voting", "pass"} and curves["k"] == [1, 2, 4]


def test_first_k_keeps_a_prefix_and_leaves_the_results_alone():
    _, results, _ = _questions(count=3, k=4)
    prefix = first_k(results, 2)
    assert [r.completions for r in prefix] == [r.completions[:2] for r in results]
    assert all(len(r.completions) == 4 for r in results)
    with pytest.raises(ValueError, match="fewer than 5 completions"):
        first_k(results, 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        first_k(results, 0)


def test_run_eval_writes_curves_beside_the_headline_metrics(tmp_path, monkeypatch):
    examples, sampled, scores = _questions()
    greedy = [QuestionResult(r.id, r.question, r.answer, r.completions[:1]) for r in sampled]
    monkeypatch.setattr(run, "load_inference_inputs",
                        lambda config: (None, None, examples, nullcontext()))  # fmt: skip
    monkeypatch.setattr(run, "predict", lambda model, tokenizer, examples, cot, sampling, grader,
                        **kw: sampled if sampling.num_samples > 1 else greedy)  # fmt: skip
    monkeypatch.setattr(run, "rerank_with_model",
                        lambda path, results, cot, **kw: (scores, rerank_picks(results, scores)))  # fmt: skip
    config = EvalConfig(model="fake", cot=CotKind.python, out_dir=str(tmp_path / "eval"), k=K,
                        rerank="fake-rm")  # fmt: skip
    run.run_eval(config)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    metrics, curves = results["metrics"], results["curves"]
    assert list(metrics)[-3:] == [f"voting@{K}", f"rerank@{K}", f"pass@{K}"]
    assert all(isinstance(value, (int, float)) for value in metrics.values()), "one number each"
    assert curves == _loop_curves(sampled, scores, [1, 2, 4, 8, 12])
    assert metrics[f"voting@{K}"] == curves["voting"][-1]
    assert metrics[f"rerank@{K}"] == curves["rerank"][-1]
    assert metrics[f"pass@{K}"] == curves["pass"][-1]
