"""The outcome reward model behind rerank@K (`reft rm train`; reference: train_reward_model.py).

Data:
    1. sample `num_samples` solutions per TRAINING question from `sample_model` (reference: 100 at
       temperature 1 from the warm-up) and grade them with the training reward's strict rule;
       label 1 = correct, 0 = wrong or no answer;
    2. de-duplicate per question (whitespace-normalised text; the reference compares exact text),
       keeping all distinct solutions (or the first `max_unique_per_question`);
    3. the dev split is built the same way from the DEV questions (dev_data, or dev_holdout training
       questions held out), so no question is in both splits;
    4. every record, its label and split, and the counts go to out_dir/rm_data.json first.

Model: `AutoModelForSequenceClassification` with 2 labels, its trunk from the causal-LM checkpoint
`model` (reference: the SFT model), its head random, pooled at the solution's last token (see
reft.evaluate.rerank for the input format and the padding rule). Saved by the run scaffold with
`save_pretrained`, so `best/` loads with `AutoModelForSequenceClassification.from_pretrained`.

Training: cross-entropy averaged over the global batch. Dev: classification accuracy (label 1 iff
P(correct) > 0.5; this "accuracy" selects best/), ROC AUC of P(correct), log-loss, and the rerank and
oracle accuracy over each dev question's distinct solutions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reft.config import config_to_dict
from reft.data.example import CotKind, Example
from reft.data.prompts import solution_text
from reft.data.tokenize import OverlengthPolicy, TokenizationReport
from reft.evaluate.predict import QuestionResult
from reft.evaluate.rerank import pick_best
from reft.files import write_json_atomic
from reft.models.load import load_tokenizer
from reft.models.reward_model import load_reward_model, pad_right, rm_input_ids, score_solutions
from reft.train.batching import global_batch, shard, step_counts
from reft.train.config import RewardModelConfig
from reft.train.data import load_train_and_dev
from reft.train.loop import RunState, TrainingRun
from reft.train.sft import backward_micro_batches
from reft.train.solution_sampling import first_unique, sample_training_solutions, sampling_settings

logger = logging.getLogger(__name__)

RM_DATA = "rm_data.json"
"""File in out_dir with every reward-model record (label, split) and the counts."""


@dataclass(frozen=True)
class RMRecord:
    """One labelled solution."""

    id: str
    """Id of the question it answers."""
    question: str
    solution: str
    """The solution as written after the plain prompt (P-CoT: the full program)."""
    label: int
    """1 if its answer is correct, else 0."""
    answer: str | None
    """The extracted answer (None: none), used by the rerank rule."""


def build_rm_records(
    results: list[QuestionResult], cot: CotKind, max_unique_per_question: int = 0
) -> list[RMRecord]:
    """Labelled records of each question's distinct sampled solutions, in sampling order."""
    records = []
    for result in results:
        solutions = [solution_text(result.question, c.text, cot) for c in result.completions]
        for index in first_unique(solutions, max_unique_per_question):
            graded = result.completions[index]
            label = int(graded.correct)
            records.append(
                RMRecord(result.id, result.question, solutions[index], label, graded.extracted)
            )
    return records


def record_counts(records: list[RMRecord]) -> dict[str, int]:
    """Questions, records and label counts of one split."""
    positives = sum(record.label for record in records)
    return {
        "questions": len({record.id for record in records}),
        "records": len(records),
        "positives": positives,
        "negatives": len(records) - positives,
    }


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


def rm_dev_metrics(records: list[RMRecord], scores: Sequence[float]) -> dict[str, float]:
    """Classification accuracy, AUC, log-loss, and rerank / oracle accuracy over the dev questions."""
    labels = [record.label for record in records]
    eps = 1e-7
    by_question: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_question.setdefault(record.id, []).append(index)
    reranked, oracle = [], []
    for rows in by_question.values():
        pick = pick_best([scores[i] for i in rows], [records[i].answer for i in rows])
        reranked.append(pick is not None and labels[rows[pick]] == 1)
        oracle.append(any(labels[i] for i in rows))
    log_loss = [-math.log(max(s if y else 1 - s, eps)) for s, y in zip(scores, labels, strict=True)]
    return {
        "accuracy": sum((s > 0.5) == bool(y) for s, y in zip(scores, labels, strict=True))
        / len(labels),
        "auc": roc_auc(scores, labels),
        "log_loss": sum(log_loss) / len(labels),
        "positive_rate": sum(labels) / len(labels),
        "rerank": sum(reranked) / len(reranked),
        "oracle": sum(oracle) / len(oracle),
    }


def rm_records(
    run: TrainingRun, examples: list[Example], dev_examples: list[Example] | None
) -> tuple[list[RMRecord], list[RMRecord]]:
    """(train, dev) records: sampled and written to RM_DATA by the main process (a resumed run
    reuses the file it wrote before); every process then reads the file."""
    config: RewardModelConfig = run.config
    path = run.out_dir / RM_DATA
    if run.is_main and not (run.resume_from is not None and path.is_file()):
        records = {
            split: _sample_records(run, questions, split)
            for split, questions in (("train", examples), ("dev", dev_examples or []))
        }
        counts = {split: record_counts(items) for split, items in records.items()}
        payload = {
            "counts": counts,
            "sample_model": config.sample_model or config.model,
            "sampling": config_to_dict(sampling_settings(config, config.num_samples)),
            "records": {split: [asdict(r) for r in items] for split, items in records.items()},
        }
        write_json_atomic(path, payload, indent=1)
        logger.info("reward-model data in %s: %s", path, json.dumps(counts))
    run.accelerator.wait_for_everyone()
    stored = json.loads(path.read_text())["records"]
    return [RMRecord(**r) for r in stored["train"]], [RMRecord(**r) for r in stored["dev"]]


def _sample_records(run: TrainingRun, questions: list[Example], split: str) -> list[RMRecord]:
    if not questions:
        return []
    config: RewardModelConfig = run.config
    results = sample_training_solutions(config, questions, run.device, f"rm {split} sampling")
    return build_rm_records(results, config.cot, config.max_unique_per_question)


@dataclass(frozen=True)
class RMFeatures:
    input_ids: list[int]
    label: int


def tokenize_rm(
    records: list[RMRecord], tokenizer, max_length: int, overlength: OverlengthPolicy
) -> tuple[list[RMFeatures], TokenizationReport]:
    """Classifier inputs; longer ones are skipped or keep their first max_length tokens."""
    report = TokenizationReport(total=len(records), max_length=max_length)
    features = []
    for record in records:
        ids = rm_input_ids(tokenizer, record.question, record.solution)
        if len(ids) > max_length:
            if overlength is OverlengthPolicy.skip:
                report.skipped_overlength += 1
                continue
            ids = ids[:max_length]
            report.truncated += 1
        features.append(RMFeatures(ids, record.label))
    report.kept = len(features)
    return features, report


class RewardModelStep:
    """One optimizer step of cross-entropy over a global batch of labelled solutions."""

    def __init__(self, run: TrainingRun, features: list[RMFeatures]) -> None:
        self.run, self.features = run, features

    def loss_sum(self, chunk: list[RMFeatures]) -> tuple[torch.Tensor, dict[str, float]]:
        run = self.run
        batch = pad_right([f.input_ids for f in chunk], run.tokenizer.pad_token_id)
        labels = torch.tensor([f.label for f in chunk], device=run.device)
        logits = run.model(**{k: v.to(run.device) for k, v in batch.items()}).logits.float()
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return loss, {"correct": float((logits.argmax(dim=-1) == labels).sum())}

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        indices = global_batch(len(self.features), config.batch_size, config.seed, step)
        batch = [self.features[i] for i in indices]
        local = shard(batch, run.accelerator.process_index, run.num_processes)
        totals = backward_micro_batches(run, local, self.loss_sum, run.num_processes / len(batch))
        grad_norm = run.clip_and_step()
        sums = torch.tensor([totals["loss_sum"], totals.get("correct", 0.0)], device=run.device)
        loss_sum, correct = run.accelerator.reduce(sums, "sum").tolist()
        return {
            "loss": loss_sum / len(batch),
            "accuracy": correct / len(batch),
            "grad_norm": grad_norm,
        }


def make_rm_evaluator(
    run: TrainingRun, records: list[RMRecord]
) -> Callable[[], dict[str, float]] | None:
    """Dev metrics of the current classifier on `records` (None: no dev records)."""
    if not records:
        return None
    pairs = [(record.question, record.solution) for record in records]

    def evaluate() -> dict[str, float]:
        scores = score_solutions(run.policy, run.tokenizer, pairs, run.config.eval_batch_size)
        return rm_dev_metrics(records, scores)

    return evaluate


def run_reward_model(config: RewardModelConfig) -> RunState:
    """Build the labelled data, then train the classifier; returns the final state."""
    run = TrainingRun(config, stage="rm", dev_metric="auc")
    examples, dev_examples = load_train_and_dev(config)
    train_records, dev_records = rm_records(run, examples, dev_examples)
    source = run.model_source()
    tokenizer = load_tokenizer(source)
    model = load_reward_model(source, tokenizer, dtype=config.dtype, device=str(run.device))
    features, report = tokenize_rm(train_records, tokenizer, config.max_length, config.overlength)
    logger.info("tokenised the reward-model data: %s", report.summary())
    if len({f.label for f in features}) < 2:
        logger.warning("the reward-model training data has a single label: %s", _labels(features))
    steps_per_epoch, total = step_counts(len(features), config, "reward-model examples")
    run.prepare(model, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch)
    run.accumulation_steps()  # fails early when the batch does not split over processes
    return run.train(RewardModelStep(run, features), make_rm_evaluator(run, dev_records))


def _labels(features: list[RMFeatures]) -> dict[int, int]:
    return {label: sum(f.label == label for f in features) for label in (0, 1)}


def read_rm_counts(out_dir: str | Path) -> dict[str, Any]:
    """The counts a reward-model run wrote with its data."""
    return json.loads((Path(out_dir) / RM_DATA).read_text())["counts"]
