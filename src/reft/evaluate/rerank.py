"""Reward-model reranking (rerank@K): score each of a question's K sampled solutions with an outcome
reward model and keep the best one.

The reward model is a 2-class sequence classifier (`AutoModelForSequenceClassification`, label 1 =
"correct") trained by `reft rm train`. Its input is the paper's prompt followed by the solution as it
is written after that prompt (for P-CoT the full program, header included), with no EOS:

    Question:\\n{question}\\nAnswer reasoning:\\n{solution}

The score of a solution is the classifier's probability of label 1. Hugging Face sequence classifiers
pool the logits of the RIGHTMOST token that is not the pad id, so batches are padded on the right
(real tokens keep positions 0..n-1) and a pad id inside the text is dropped before scoring.

Choice rule (`pick_best`, as the reference's evaluate_rerank): among the candidates with an extracted
answer, the highest score wins; ties go to the earliest candidate; no answered candidate -> None, and
the question counts as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from reft.data.example import CotKind
from reft.data.prompts import program_header, render_prompt
from reft.data.tokenize import encode_prompt
from reft.files import write_jsonl_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from reft.evaluate.predict import QuestionResult

CORRECT_LABEL = 1
"""The reward model's class index for "this solution is correct"."""
NUM_LABELS = 2


def solution_text(question: str, completion: str, cot: CotKind) -> str:
    """A sampled completion as the solution written after the plain prompt (what SFT trains on).

    A P-CoT completion continues the program header of the generation prompt, so the header is put
    back; an N-CoT completion is the solution itself. Surrounding whitespace is stripped, as the
    reference strips solutions.
    """
    text = program_header(question) + completion if cot is CotKind.python else completion
    return text.strip()


def rm_input_ids(tokenizer: PreTrainedTokenizerBase, question: str, solution: str) -> list[int]:
    """Token ids the reward model reads: prompt (with the tokenizer's special tokens) + solution.

    Pad ids inside the text are dropped (possible when pad == eos and the text spells the EOS token):
    the classifier pools the last non-pad token, and a pad id there would move the pooled position.
    """
    ids = encode_prompt(tokenizer, render_prompt(question))
    ids += tokenizer.encode(solution, add_special_tokens=False)
    return [token for token in ids if token != tokenizer.pad_token_id]


def pad_right(sequences: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token ids -> input_ids, attention_mask, each [B, L]."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def load_reward_model(
    path: str, tokenizer: PreTrainedTokenizerBase, dtype: str = "float32", device: str = "auto"
) -> PreTrainedModel:
    """A 2-class sequence classifier from `path` (a `reft rm train` checkpoint, or a causal-LM
    checkpoint whose new head starts random), pooling on the tokenizer's pad id, in eval mode."""
    from transformers import AutoModelForSequenceClassification

    from reft.models.load import resolve_device, resolve_dtype

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=NUM_LABELS, dtype=resolve_dtype(dtype), attn_implementation="sdpa"
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(resolve_device(device)).eval()


@torch.no_grad()
def score_solutions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
) -> list[float]:
    """P(correct) of each (question, solution) pair, scored `batch_size` at a time."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = [rm_input_ids(tokenizer, q, s) for q, s in pairs[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in pad_right(chunk, tokenizer.pad_token_id).items()}
        logits = model(**batch).logits.float()
        scores += torch.softmax(logits, dim=-1)[:, CORRECT_LABEL].tolist()
    model.train(was_training)
    return scores


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
