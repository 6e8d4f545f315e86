"""Reward-model reranking (rerank@K): score each of a question's K sampled solutions with an outcome
reward model (`reft.models.reward_model`, trained by `reft rm train`) and keep the best one.

Choice rule (`pick_best`, as the reference's evaluate_rerank): among the candidates with an extracted
answer, the highest score wins; ties go to the earliest candidate; no answered candidate -> None, and
the question counts as wrong.
"""

from __future__ import annotations

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
