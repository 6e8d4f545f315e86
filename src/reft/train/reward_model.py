"""The outcome reward model behind rerank@K (`reft rm train`; reference: train_reward_model.py).

Data:
    1. sample `num_samples` solutions per TRAINING question from `sample_model` (reference: 100 at
       temperature 1 from the warm-up) and grade them with the training reward's strict rule;
       label 1 = correct, 0 = wrong or no answer;
    2. de-duplicate per question (whitespace-normalised text; the reference compares exact text),
       keeping all distinct solutions (or the first `max_unique_per_question`);
    3. the dev split is built the same way from the DEV questions (dev_data, or dev_holdout training
       questions held out), so no question is in both splits;
    4. every record, its label and split, and the counts go to out_dir/rm_data.json first;
    5. or, with `records_from`, steps 1-3 are skipped: another run's rm_data.json is copied (with a
       `records_from` note), so several reward models can train on one set of samples.

Model: `AutoModelForSequenceClassification` with 2 labels, its trunk from the causal-LM checkpoint
`model` (reference: the SFT model), its head random, pooled at the solution's last token (see
reft.evaluate.rerank for the input format and the padding rule). Saved by the run scaffold with
`save_pretrained`, so `best/` loads with `AutoModelForSequenceClassification.from_pretrained`.

Training (`loss`, chosen once by RM_STEPS): pointwise, cross-entropy averaged over a global batch
of solutions (the reference); or listwise, a global batch of whole questions (`question_groups`) and
per question with both labels -log of the softmax mass on its correct solutions
(`listwise_loss_sum`), plus `pointwise_weight` x cross-entropy. The pointwise loss ranks solutions
of different questions too, which rerank never needs; the listwise one compares only solutions of
one question.

Dev: classification accuracy (label 1 iff P(correct) > 0.5), ROC AUC of P(correct) over all
solutions (`auc`) and over pairs of one question's solutions (`auc_within`), log-loss, and the rerank
and oracle accuracy over each dev question's distinct solutions; `select_metric` (default auc)
selects best/.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reft.config import config_to_dict
from reft.data.errors import DataError
from reft.data.example import CotKind, Example
from reft.data.prompts import solution_text
from reft.data.tokenize import OverlengthPolicy, TokenizationReport
from reft.evaluate.predict import QuestionResult
from reft.evaluate.rerank import pick_best, roc_auc, within_question_auc
from reft.files import write_json_atomic
from reft.models.load import load_tokenizer
from reft.models.reward_model import load_reward_model, rm_input_ids, score_solutions
from reft.train.config import RewardModelConfig
from reft.train.data import load_train_and_dev
from reft.train.loop import RunState, TrainingRun
from reft.train.reward_model_steps import RM_STEPS, RMFeatures
from reft.train.solution_sampling import first_unique, sample_training_solutions, sampling_settings

if TYPE_CHECKING:
    import torch

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


def rm_dev_metrics(records: list[RMRecord], scores: Sequence[float]) -> dict[str, float]:
    """Classification accuracy, pooled and within-question AUC, log-loss, and rerank / oracle
    accuracy over the dev questions (records grouped by question id)."""
    labels = [record.label for record in records]
    eps = 1e-7
    by_question: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_question.setdefault(record.id, []).append(index)
    reranked, oracle = [], []
    rows_of = list(by_question.values())
    for rows in rows_of:
        pick = pick_best([scores[i] for i in rows], [records[i].answer for i in rows])
        reranked.append(pick is not None and labels[rows[pick]] == 1)
        oracle.append(any(labels[i] for i in rows))
    log_loss = [-math.log(max(s if y else 1 - s, eps)) for s, y in zip(scores, labels, strict=True)]
    return {
        "accuracy": sum((s > 0.5) == bool(y) for s, y in zip(scores, labels, strict=True))
        / len(labels),
        "auc": roc_auc(scores, labels),
        "auc_within": within_question_auc(
            [[scores[i] for i in rows] for rows in rows_of],
            [[labels[i] for i in rows] for rows in rows_of],
        ),
        "log_loss": sum(log_loss) / len(labels),
        "positive_rate": sum(labels) / len(labels),
        "rerank": sum(reranked) / len(reranked),
        "oracle": sum(oracle) / len(oracle),
    }


def rm_data_source(records_from: str) -> Path:
    """The rm_data.json that `records_from` names (a run's out_dir or the file itself); raises
    DataError naming the path when there is none."""
    path = Path(records_from)
    source = path / RM_DATA if path.is_dir() else path
    if not source.is_file():
        raise DataError(
            f"records_from={records_from}: no {RM_DATA} there (give the out_dir of a "
            f"`reft rm train` run or its {RM_DATA})"
        )
    return source


def rm_records(
    run: TrainingRun, examples: list[Example], dev_examples: list[Example] | None
) -> tuple[list[RMRecord], list[RMRecord]]:
    """(train, dev) records: sampled (or, with records_from, copied) and written to RM_DATA by the
    main process (a resumed run reuses the file it wrote before); every process then reads it."""
    config: RewardModelConfig = run.config
    path = run.out_dir / RM_DATA
    if run.is_main and not (run.resume_from is not None and path.is_file()):
        if config.records_from:
            source = rm_data_source(config.records_from)
            payload = {**json.loads(source.read_text()), "records_from": str(source)}
        else:
            payload = _sampled_payload(run, examples, dev_examples)
        write_json_atomic(path, payload, indent=1)
        logger.info("reward-model data in %s: %s", path, json.dumps(payload["counts"]))
    run.accelerator.wait_for_everyone()
    stored = json.loads(path.read_text())["records"]
    return [RMRecord(**r) for r in stored["train"]], [RMRecord(**r) for r in stored["dev"]]


def _sampled_payload(
    run: TrainingRun, examples: list[Example], dev_examples: list[Example] | None
) -> dict[str, Any]:
    """RM_DATA's content: records sampled from the train and dev questions, with their counts."""
    config: RewardModelConfig = run.config
    records = {
        split: _sample_records(run, questions, split)
        for split, questions in (("train", examples), ("dev", dev_examples or []))
    }
    return {
        "counts": {split: record_counts(items) for split, items in records.items()},
        "sample_model": config.sample_model or config.model,
        "sampling": config_to_dict(sampling_settings(config, config.num_samples)),
        "records": {split: [asdict(r) for r in items] for split, items in records.items()},
    }


def _sample_records(run: TrainingRun, questions: list[Example], split: str) -> list[RMRecord]:
    if not questions:
        return []
    config: RewardModelConfig = run.config
    results = sample_training_solutions(config, questions, run.device, f"rm {split} sampling")
    return build_rm_records(results, config.cot, config.max_unique_per_question)


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
        features.append(RMFeatures(ids, record.label, record.id))
    report.kept = len(features)
    return features, report


def make_rm_evaluator(
    run: TrainingRun, records: list[RMRecord]
) -> Callable[[torch.nn.Module], dict[str, float]] | None:
    """Dev metrics on `records` of the classifier it is given (the run's current one) (None: no
    dev records)."""
    if not records:
        return None
    pairs = [(record.question, record.solution) for record in records]

    def evaluate(classifier: torch.nn.Module) -> dict[str, float]:
        scores = score_solutions(classifier, run.tokenizer, pairs, run.config.eval_batch_size)
        return rm_dev_metrics(records, scores)

    return evaluate


def run_reward_model(config: RewardModelConfig) -> RunState:
    """Build the labelled data, then train the classifier; returns the final state."""
    own_copy = Path(config.out_dir) / RM_DATA
    if config.records_from and not (config.resume and own_copy.is_file()):
        rm_data_source(config.records_from)  # fails before anything is written
    run = TrainingRun(config, stage="rm", dev_metric=config.select_metric.value)
    examples, dev_examples = ([], None) if config.records_from else load_train_and_dev(config)
    train_records, dev_records = rm_records(run, examples, dev_examples)
    source = run.model_source()
    tokenizer = load_tokenizer(source)
    model = load_reward_model(source, tokenizer, dtype=config.dtype, device=str(run.device))
    features, report = tokenize_rm(train_records, tokenizer, config.max_length, config.overlength)
    logger.info("tokenised the reward-model data: %s", report.summary())
    if len({f.label for f in features}) < 2:
        logger.warning("the reward-model training data has a single label: %s", _labels(features))
    step = RM_STEPS[config.loss](run, features)
    steps_per_epoch, total = step.step_counts()
    run.prepare(model, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch)
    run.accumulation_steps()  # fails early when the batch does not split over processes
    return run.train(step, make_rm_evaluator(run, dev_records))


def _labels(features: list[RMFeatures]) -> dict[int, int]:
    return {label: sum(f.label == label for f in features) for label in (0, 1)}


def read_rm_counts(out_dir: str | Path) -> dict[str, Any]:
    """The counts a reward-model run wrote with its data."""
    return json.loads((Path(out_dir) / RM_DATA).read_text())["counts"]
