"""Sample completions for questions and grade them: the per-question records every evaluation keeps.

`predict` is shared by `reft sample`, `reft eval`, dev evaluation during training and the
self-training / reward-model data builders. The summary functions turn its records into the paper's
numbers: top-1 (greedy), voting@K, pass@K; `first_k` keeps a prefix of each question's samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from reft.answers.checkers import harness_verdicts
from reft.answers.compare import is_correct
from reft.answers.grader import Grader
from reft.answers.grading_stats import error_shares
from reft.answers.hacking import example_hacking_counts
from reft.data.example import CotKind, Example
from reft.data.prompts import render_generation_prompt
from reft.evaluate.voting import majority_vote
from reft.generation.config import SamplingConfig
from reft.generation.engine import generate_texts

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PROMPTS_PER_CHUNK = 256
"""Questions generated per progress-bar update (each chunk gets its own derived seed)."""


@dataclass
class GradedCompletion:
    text: str
    extracted: str | None
    correct: bool
    reward: float
    error: str | None
    num_tokens: int
    finished: bool


@dataclass
class QuestionResult:
    """One question with its K graded completions, in sampling order."""

    id: str
    question: str
    answer: str
    completions: list[GradedCompletion]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    cot: CotKind,
    sampling: SamplingConfig,
    grader: Grader,
    *,
    seed: int = 0,
    progress: str | None = None,
) -> list[QuestionResult]:
    """Generate `sampling.num_samples` completions per example and grade each one."""
    results: list[QuestionResult] = []
    chunks = range(0, len(examples), PROMPTS_PER_CHUNK)
    bar = tqdm(total=len(examples), desc=progress, disable=progress is None, leave=False)
    for index, start in enumerate(chunks):
        chunk = examples[start : start + PROMPTS_PER_CHUNK]
        prompts = [render_generation_prompt(example.question, cot) for example in chunk]
        samples = generate_texts(model, tokenizer, prompts, sampling, seed=seed * 1_000_003 + index)
        texts = [completion.text for completions in samples for completion in completions]
        golds = [
            example.answer
            for example, completions in zip(chunk, samples, strict=True)
            for _ in completions
        ]
        grades = grader.grade(texts, golds)
        position = 0
        for example, completions in zip(chunk, samples, strict=True):
            mine = grades[position : position + len(completions)]
            position += len(completions)
            graded = [
                GradedCompletion(
                    c.text, g.extracted, g.correct, g.reward, g.error, c.num_tokens, c.finished
                )
                for c, g in zip(completions, mine, strict=True)
            ]
            results.append(QuestionResult(example.id, example.question, example.answer, graded))
        bar.update(len(chunk))
    bar.close()
    return results


def top1_accuracy(results: list[QuestionResult]) -> float:
    """Fraction of questions whose FIRST completion is correct (the greedy one for greedy decoding)."""
    return _mean(result.completions[0].correct for result in results)


def top1_error_shares(results: list[QuestionResult], cot: CotKind) -> dict[str, float]:
    """The share of each error kind among the FIRST completions, `error_<kind>` for every kind of
    `cot` (reft.answers.grading_stats): how often the greedy policy crashes, times out or probes
    the sandbox, which top-1 accuracy alone does not show."""
    return error_shares([result.completions[0].error for result in results], cot)


def top1_hacking_rates(results: list[QuestionResult], examples: list[Example]) -> dict[str, float]:
    """reft.answers.hacking's rates over the FIRST completions: how often a right greedy letter
    comes from reasoning that computes another number (multiple-choice N-CoT data whose questions
    carry option values; see `reft.answers.hacking.tracks_hacking`)."""
    by_id = {example.id: example for example in examples}
    firsts = [result.completions[0] for result in results]
    counts = example_hacking_counts(
        [c.text for c in firsts], [by_id[r.id] for r in results], [c.correct for c in firsts]
    )
    return counts.rates()


def harness_accuracy(results: list[QuestionResult], flexible: bool) -> float:
    """Top-1 accuracy as lm-evaluation-harness's GSM8K task would score the first completions
    ("strict-match" or "flexible-extract"; reft.answers.checkers): comparable with published
    numbers that use it. Numeric N-CoT answers only."""
    completions = [result.completions[0].text for result in results]
    verdicts = harness_verdicts(completions, [result.answer for result in results], flexible)
    return _mean(verdict.correct for verdict in verdicts)


def voting_accuracy(results: list[QuestionResult], examples: list[Example]) -> float:
    """Majority vote over each question's extracted answers (voting@K; abstentions ignored)."""
    by_id = {example.id: example for example in examples}
    correct = []
    for result in results:
        kind = by_id[result.id].answer_kind
        vote = majority_vote([c.extracted for c in result.completions], kind)
        correct.append(is_correct(vote, result.answer, kind))
    return _mean(correct)


def first_k(results: list[QuestionResult], k: int) -> list[QuestionResult]:
    """The same questions with only their first `k` completions (in sampling order)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    short = [result.id for result in results if len(result.completions) < k]
    if short:
        raise ValueError(
            f"{len(short)} questions have fewer than {k} completions (first: {short[0]})"
        )
    return [replace(result, completions=result.completions[:k]) for result in results]


def pass_at_k(results: list[QuestionResult]) -> float:
    """Fraction of questions with at least one correct completion (the oracle upper bound)."""
    return _mean(any(c.correct for c in result.completions) for result in results)


def answered_rate(results: list[QuestionResult]) -> float:
    """Fraction of completions from which an answer was extracted / the program returned a value."""
    return _mean(c.extracted is not None for r in results for c in r.completions)


def mean_response_tokens(results: list[QuestionResult]) -> float:
    return _mean(c.num_tokens for r in results for c in r.completions)


def _mean(values: Any) -> float:
    values = list(values)
    return float(sum(values)) / len(values) if values else 0.0
