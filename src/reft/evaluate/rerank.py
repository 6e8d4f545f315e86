"""Reward-model reranking (rerank@K): score each of a question's K sampled solutions with an outcome
reward model (`reft.models.reward_model`, trained by `reft rm train`) and keep the best one.

Choice rule (`pick_best`, as the reference's evaluate_rerank): among the candidates with an extracted
answer, the highest score wins; ties go to the earliest candidate; no answered candidate -> None, and
the question counts as wrong.

Yardstick (`within_question_auc`): rerank@K only compares solutions of ONE question, so a reward
model is judged by how often it orders a correct solution above a wrong one of the same question. A
pooled AUC over all solutions also rewards telling easy questions from hard ones, which no pick uses.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reft.data.example import CotKind
from reft.data.prompts import solution_text
from reft.files import write_jsonl_atomic
from reft.models.reward_model import load_reward_model, score_solutions

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from reft.evaluate.predict import QuestionResult


def pick_best(scores: Sequence[float], answers: Sequence[str | None]) -> int | None:
    """Index of the highest-scoring candidate with an answer (ties: the earliest); None if none has one."""
    if len(scores) != len(answers):
        raise ValueError(f"{len(scores)} scores but {len(answers)} candidates")
    best: int | None = None
    for index, (score, answer) in enumerate(zip(scores, answers, strict=True)):
        if answer is not None and (best is None or score > scores[best]):
            best = index
    return best


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties
    counting 1/2 (Mann-Whitney U over average ranks). NaN when a class is missing.

    Plain loop it equals: mean over (p, n) pairs of 1 if p > n, 0.5 if p == n, else 0.
    """
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return math.nan
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1  # average 1-based rank of the tie group
        start = end + 1
    positive_rank_sum = sum(rank for rank, label in zip(ranks, labels, strict=True) if label)
    return (positive_rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def within_question_pairs(labels: Sequence[Sequence[int]]) -> int:
    """Number of (correct, wrong) pairs of solutions of the same question: sum of P_q x N_q."""
    return sum(sum(1 for y in row if y) * sum(1 for y in row if not y) for row in labels)


def within_question_auc(
    scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]]
) -> float:
    """AUC over the pairs (correct, wrong) of solutions of the SAME question, pooled over questions:
    the chance that the reward model orders such a pair right. NaN when no question has both labels.

    scores[q][k], labels[q][k]: question q's k-th solution (labels 1 = correct, 0 = wrong).
    Plain loop it equals (each pair counts once, so a question weighs P_q x N_q):
        wins = pairs = 0
        for s, y in zip(scores, labels):
            for i in range(len(s)):
                for j in range(len(s)):
                    if y[i] and not y[j]:
                        wins += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
                        pairs += 1
        return wins / pairs
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} questions of scores but {len(labels)} of labels")
    wins, pairs = 0.0, 0
    for row_scores, row_labels in zip(scores, labels, strict=True):
        wrong = sorted(s for s, y in zip(row_scores, row_labels, strict=True) if not y)
        for score, label in zip(row_scores, row_labels, strict=True):
            if label:
                below, tied_or_below = bisect_left(wrong, score), bisect_right(wrong, score)
                wins += below + 0.5 * (tied_or_below - below)
                pairs += len(wrong)
    return wins / pairs if pairs else math.nan


def score_results(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    results: list[QuestionResult],
    cot: CotKind,
    batch_size: int = 64,
) -> list[list[float]]:
    """The reward-model score of every completion of every question: scores[i][k]."""
    pairs = [
        (r.question, solution_text(r.question, c.text, cot)) for r in results for c in r.completions
    ]
    flat = score_solutions(model, tokenizer, pairs, batch_size)
    scores, position = [], 0
    for result in results:
        scores.append(flat[position : position + len(result.completions)])
        position += len(result.completions)
    return scores


def rerank_picks(results: list[QuestionResult], scores: list[list[float]]) -> list[int | None]:
    """The chosen completion of each question (None: no completion has an answer)."""
    return [
        pick_best(question_scores, [c.extracted for c in result.completions])
        for result, question_scores in zip(results, scores, strict=True)
    ]


def rerank_accuracy(results: list[QuestionResult], picks: list[int | None]) -> float:
    """Fraction of questions whose chosen completion is correct (no choice counts as wrong)."""
    if not results:
        return 0.0
    correct = [
        pick is not None and result.completions[pick].correct
        for result, pick in zip(results, picks, strict=True)
    ]
    return sum(correct) / len(results)


def rerank_with_model(
    path: str,
    results: list[QuestionResult],
    cot: CotKind,
    *,
    dtype: str = "float32",
    device: str = "auto",
    batch_size: int = 64,
) -> tuple[list[list[float]], list[int | None]]:
    """Load the reward model at `path` (with its own tokenizer), score every completion of
    `results` and choose one per question: (scores[i][k], picks[i])."""
    from reft.models.load import load_tokenizer

    tokenizer = load_tokenizer(path)
    model = load_reward_model(path, tokenizer, dtype=dtype, device=device)
    scores = score_results(model, tokenizer, results, cot, batch_size)
    return scores, rerank_picks(results, scores)


def write_rerank(
    path: Path, results: list[QuestionResult], scores: list[list[float]], picks: list[int | None]
) -> None:
    """One JSON line per question: its id, every candidate's score, the chosen index and whether the
    chosen completion is correct."""
    rows = (
        {"id": result.id, "scores": question_scores, "pick": pick,
         "correct": pick is not None and result.completions[pick].correct}
        for result, question_scores, pick in zip(results, scores, picks, strict=True)
    )  # fmt: skip
    write_jsonl_atomic(path, rows)
