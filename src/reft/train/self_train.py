"""The paper's self-training baselines (`reft self-train`), built on the shared SFT, rollout and run code.

Offline (`mode=offline`, the paper's Offline-ST; reference: train_sl_model.py with sampling.py output):
    1. sample `num_samples` solutions per training question from `sample_model` (reference: 100 at
       temperature 1 from the warm-up) and grade them with the training reward's strict rule;
    2. keep the correct ones, de-duplicated per question by whitespace-normalised text (the reference
       compares exact stripped text), at most `max_unique_per_question` (reference: 10) in sampling
       order; add the gold solution unless a kept sample has the same text (`keep_gold`);
    3. write everything with counts to out_dir/self_training_data.json, then run the ordinary SFT
       trainer (`sft.train_on_features`) on it, starting from `model` (reference: the base model).

Online (`mode=online`, the paper's Online-ST; reference: train_rl_sl.py): every step samples
`samples_per_prompt` responses per prompt with the CURRENT policy (the PPO rollout code), keeps those
graded correct (reward exactly 1), and takes `update_epochs` optimizer steps on
`mixed_nll` = own_weight x mean NLL(correct samples) + gold_weight x mean NLL(gold solutions of the
step's questions). No reference model, value head or KL.

Targets. A sampled completion is turned into the text SFT trains on by `reft.data.prompts.solution_text`: for
P-CoT the program header of the generation prompt is put back, so offline targets are full programs,
exactly like gold P-CoT targets, and are tokenised like them (`tokenize_pairs`: the generation prompt
encoded as at sampling time, no loss, then the program body + EOS); N-CoT completions already end with
the answer trigger and the MODEL's answer, and are trained on verbatim after the plain prompt (never
re-rendered with the gold answer). Online samples are trained on the exact token ids that were
sampled, after the exact generation prompt ids (for P-CoT: prompt + header, the header carrying no
loss), as the reference does; the gold half uses the ordinary SFT features, cut the same way.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from reft.answers.grader import Grader
from reft.answers.grading_stats import error_shares, programs_per_second
from reft.config import config_to_dict
from reft.data.example import CotKind, Example
from reft.data.loaders import require_cot
from reft.data.prompts import render_target, solution_text
from reft.data.tokenize import (
    IGNORE_INDEX,
    OverlengthPolicy,
    SFTFeatures,
    TokenizationReport,
    tokenize_pairs,
    tokenize_sft,
)
from reft.evaluate.predict import QuestionResult
from reft.files import write_json_atomic
from reft.generation.engine import GeneratedBatch
from reft.train.batching import global_batch, shard, step_counts
from reft.train.config import SelfTrainConfig, SelfTrainMode
from reft.train.data import load_train_and_dev
from reft.train.dev import make_dev_evaluator
from reft.train.loop import RunState, TrainingRun
from reft.train.model_setup import load_training_model
from reft.train.rollout import rollout_seed, sample_responses, score_responses
from reft.train.sft import backward_micro_batches, sft_nll_fn, train_on_features
from reft.train.solution_sampling import (
    dedup_key,
    first_unique,
    sample_training_solutions,
    sampling_settings,
)

logger = logging.getLogger(__name__)

SELF_TRAINING_DATA = "self_training_data.json"
"""File in out_dir with the offline training set (sampled + gold) and its counts."""


# ---- Offline: sampling, filtering, de-duplication ------------------------------------------------


@dataclass(frozen=True)
class SelfTrainingRecord:
    """One offline training pair: the prompt of `question`, then `target` (+ EOS); a P-CoT target is
    cut after its program header, as at sampling (`reft.data.prompts.split_training_text`)."""

    id: str
    """Id of the question it answers."""
    question: str
    target: str
    """The solution trained on, verbatim (no answer trigger or gold answer is added)."""
    source: str
    """"sample" (a correct self-sampled solution) or "gold" (the dataset's annotation)."""


def select_self_training_data(
    results: list[QuestionResult],
    examples: list[Example],
    config: SelfTrainConfig,
) -> tuple[list[SelfTrainingRecord], dict[str, Any]]:
    """Correct, de-duplicated samples (+ gold) per question, and the counts of each filter stage."""
    by_id = {example.id: example for example in examples}
    records: list[SelfTrainingRecord] = []
    correct_total = unique_total = gold_added = 0
    kept_per_question: Counter[int] = Counter()
    for result in results:
        correct = [
            solution_text(result.question, c.text, config.cot)
            for c in result.completions
            if c.correct
        ]
        kept = [correct[i] for i in first_unique(correct, config.max_unique_per_question)]
        correct_total += len(correct)
        unique_total += len(first_unique(correct))
        kept_per_question[len(kept)] += 1
        records += [SelfTrainingRecord(result.id, result.question, t, "sample") for t in kept]
        gold = render_target(by_id[result.id], config.cot)
        if config.keep_gold and dedup_key(gold) not in {dedup_key(t) for t in kept}:
            records.append(SelfTrainingRecord(result.id, result.question, gold, "gold"))
            gold_added += 1
    counts = {
        "questions": len(results),
        "sampled": sum(len(r.completions) for r in results),
        "correct": correct_total,
        "unique_correct": unique_total,
        "kept_samples": sum(count * n for n, count in kept_per_question.items()),
        "gold_added": gold_added,
        "records": len(records),
        "questions_with_kept_samples": len(results) - kept_per_question[0],
        "kept_samples_per_question": {
            str(n): kept_per_question[n] for n in sorted(kept_per_question)
        },
    }
    return records, counts


def tokenize_records(
    records: list[SelfTrainingRecord],
    tokenizer,
    cot: CotKind,
    max_length: int,
    overlength: OverlengthPolicy,
) -> tuple[list[SFTFeatures], TokenizationReport]:
    """SFT features of (prompt, verbatim target + EOS) pairs, cut and length-checked as tokenize_sft
    cuts gold targets (a P-CoT program after its header, so the ids there match sampling)."""
    pairs = [(record.id, record.question, record.target) for record in records]
    return tokenize_pairs(pairs, tokenizer, cot, max_length, overlength)


def offline_records(run: TrainingRun, examples: list[Example]) -> list[SelfTrainingRecord]:
    """Sample and filter on the main process and write SELF_TRAINING_DATA (a resumed run reuses the
    file it wrote before); every process then reads the file."""
    config: SelfTrainConfig = run.config
    path = run.out_dir / SELF_TRAINING_DATA
    if run.is_main and not (run.resume_from is not None and path.is_file()):
        results = sample_training_solutions(config, examples, run.device, "self-train sampling")
        records, counts = select_self_training_data(results, examples, config)
        sampling = config_to_dict(sampling_settings(config, config.num_samples))
        payload = {"counts": counts, "sample_model": config.sample_model or config.model,
                   "sampling": sampling, "records": [asdict(r) for r in records]}  # fmt: skip
        write_json_atomic(path, payload, indent=1)
        logger.info("offline self-training data in %s: %s", path, json.dumps(counts))
    run.accelerator.wait_for_everyone()
    return [SelfTrainingRecord(**r) for r in json.loads(path.read_text())["records"]]


def run_offline(config: SelfTrainConfig) -> RunState:
    """Offline self-training: sample, filter and de-duplicate, then SFT `model` on samples + gold."""
    run = TrainingRun(config, stage="self-train-offline")
    examples, dev_examples = load_train_and_dev(config)
    require_cot(examples, config.cot, config.train_data)
    records = offline_records(run, examples)
    model, tokenizer = load_training_model(run, examples)
    features, report = tokenize_records(
        records, tokenizer, config.cot, config.max_length, config.overlength
    )
    logger.info("tokenised the self-training data: %s", report.summary())
    return train_on_features(run, model, tokenizer, features, dev_examples)


# ---- Online: the loss mixing and the step ---------------------------------------------------------


def mixed_nll_scales(
    own_tokens: int, gold_tokens: int, own_weight: float = 0.5, gold_weight: float = 0.5
) -> tuple[float, float]:
    """(own scale, gold scale) such that loss = own scale x own NLL sum + gold scale x gold NLL sum.

    A side with no tokens gets scale 0 and the other keeps its weight, NOT renormalised: a step with
    no correct sample optimises gold_weight x gold NLL, as the reference (train_rl_sl.py adds the
    own-sample half only when a sample is correct, the gold half always).
    """
    own = own_weight / own_tokens if own_tokens else 0.0
    gold = gold_weight / gold_tokens if gold_tokens else 0.0
    return own, gold


def mixed_nll(
    own_sum: Any,
    own_tokens: int,
    gold_sum: Any,
    gold_tokens: int,
    own_weight: float = 0.5,
    gold_weight: float = 0.5,
) -> Any:
    """own_weight x own_sum / own_tokens + gold_weight x gold_sum / gold_tokens (floats or tensors).

    The sums are summed token NLLs, the token counts those of the whole step (all processes). Linear
    in the sums: micro-batches may each pass their partial sum with the step's token counts, and
    their shares add up to the step's loss. A side with no tokens contributes 0 (mixed_nll_scales).
    """
    own_scale, gold_scale = mixed_nll_scales(own_tokens, gold_tokens, own_weight, gold_weight)
    return own_scale * own_sum + gold_scale * gold_sum


def sample_features(
    generated: GeneratedBatch, rows: Iterable[int], example_ids: list[str]
) -> list[SFTFeatures]:
    """SFT features of generated rows: the exact prompt ids (no loss) and sampled response ids (loss,
    with the EOS when the row finished). example_ids[i] names prompt i (row // num_samples)."""
    features = []
    for row in rows:
        prompt = generated.prompt_ids[row][generated.prompt_mask[row].bool()].tolist()
        response = generated.response_ids[row][generated.response_mask[row]].tolist()
        example_id = example_ids[row // generated.num_samples]
        labels = [IGNORE_INDEX] * len(prompt) + response
        features.append(SFTFeatures(example_id, prompt + response, labels))
    return features


class OnlineSelfTrainStep:
    """One online self-training step: sample with the current policy, grade, then `update_epochs`
    optimizer steps on mixed_nll(correct samples, gold solutions of the same questions)."""

    def __init__(self, run: TrainingRun, questions: list[Example], gold: dict[str, SFTFeatures],
                 grader: Grader) -> None:  # fmt: skip
        self.run, self.questions, self.gold, self.grader = run, questions, gold, grader
        self.sampling = sampling_settings(run.config, run.config.samples_per_prompt)
        self.nll_sum = sft_nll_fn(run)

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        started = time.perf_counter()
        rank, world = run.accelerator.process_index, run.num_processes
        indices = global_batch(len(self.questions), config.batch_size, config.seed, step)
        local = [self.questions[i] for i in shard(indices, rank, world)]
        seed = rollout_seed(config.seed, step, world, rank)
        with run.generation_policy() as policy:  # under FSDP2 a whole copy, gathered by all ranks
            generated = sample_responses(
                policy, local, run.tokenizer, self.sampling, config.cot, seed
            )
        graded = score_responses(generated, local, run.tokenizer, self.grader)
        own = sample_features(
            generated, graded.correct.nonzero().flatten().tolist(), [e.id for e in local]
        )
        gold = [self.gold[example.id] for example in local]
        rollout_done = time.perf_counter()
        # Every process grades as many responses, so the mean of the shares is the global share.
        shares = error_shares(graded.errors, config.cot)
        counts = self.run.sum_over_processes(
            [_targets(own), _targets(gold), len(own), float(graded.scores.sum()), len(graded.errors),
             float(generated.response_mask.sum()), *shares.values()]
        )  # fmt: skip
        own_tokens, gold_tokens, own_rows, reward_sum, rows, response_tokens = counts[:6]
        own_scale, gold_scale = mixed_nll_scales(
            int(own_tokens), int(gold_tokens), config.own_weight, config.gold_weight
        )
        update = self._update(own, gold, own_scale, gold_scale)
        update |= {
            "own_nll": update["own_nll_sum"] / own_tokens if own_tokens else 0.0,
            "gold_nll": update["gold_nll_sum"] / gold_tokens,
            "reward": reward_sum / rows, "accuracy": own_rows / rows, "own_samples": own_rows,
            "response_length": response_tokens / rows, "time_rollout": rollout_done - started,
            "time_update": time.perf_counter() - rollout_done,
            "tokens_per_s": response_tokens / (time.perf_counter() - started),
            "time_grade": graded.grade_seconds,  # part of time_rollout
        } | {key: total / world for key, total in zip(shares, counts[6:], strict=True)}  # fmt: skip
        if config.cot is CotKind.python:  # all processes' programs / this one's grading seconds
            update["programs_per_s"] = programs_per_second(int(rows), graded.grade_seconds)
        return {k: v for k, v in update.items() if not k.endswith("_nll_sum")}

    def _update(self, own: list[SFTFeatures], gold: list[SFTFeatures], own_scale: float,
                gold_scale: float) -> dict[str, float]:  # fmt: skip
        """`update_epochs` optimizer steps; the first pass's NLL sums (the on-policy loss) are kept."""
        run, world = self.run, self.run.num_processes
        own_chunks = self._own_chunks_everywhere(len(own))
        first: dict[str, float] = {}
        norms = []
        for _ in range(run.config.update_epochs):
            # DDP averages gradients over processes, hence x world; sync only on the last backward.
            own_totals = backward_micro_batches(
                run, own, self.nll_sum, own_scale * world, sync=False,
                min_chunks=own_chunks, filler=gold[: run.config.micro_batch_size],
            )  # fmt: skip
            gold_totals = backward_micro_batches(run, gold, self.nll_sum, gold_scale * world)
            norms.append(run.clip_and_step())
            if not first:
                sums = self.run.sum_over_processes(
                    [own_totals["loss_sum"], gold_totals["loss_sum"]]
                )
                first = {"own_nll_sum": sums[0], "gold_nll_sum": sums[1],
                         "loss": own_scale * sums[0] + gold_scale * sums[1]}  # fmt: skip
        return first | {"grad_norm": sum(norms) / len(norms)}

    def _own_chunks_everywhere(self, own_rows: int) -> int:
        """Under FSDP2 the most own-sample micro-batches any rank has this step (every rank runs as
        many, padding with zero-weight ones: reft.train.sft.backward_micro_batches); else 0. A rank's
        correct samples, hence its micro-batches, differ from the others'."""
        if self.run.sharding is None:
            return 0
        chunks = math.ceil(own_rows / self.run.config.micro_batch_size)
        counts = torch.tensor([chunks], device=self.run.device)
        return int(self.run.accelerator.gather(counts).max())


def _targets(features: list[SFTFeatures]) -> int:
    return sum(label != IGNORE_INDEX for item in features for label in item.labels)


def run_online(config: SelfTrainConfig) -> RunState:
    """Online self-training from `model` (the warm-up) on the questions of `train_data`."""
    run = TrainingRun(config, stage="self-train-online")
    examples, dev_examples = load_train_and_dev(config)
    require_cot(examples, config.cot, config.train_data)
    model, tokenizer = load_training_model(run, examples)
    features, report = tokenize_sft(
        examples, tokenizer, config.cot, config.max_length, config.overlength
    )
    logger.info("tokenised the gold solutions: %s", report.summary())
    gold = {feature.example_id: feature for feature in features}
    questions = [example for example in examples if example.id in gold]  # skipped gold: no question
    steps_per_epoch, total = step_counts(len(questions), config, "training questions")
    if config.batch_size % run.num_processes:
        raise ValueError(
            f"batch_size {config.batch_size} must split over {run.num_processes} processes"
        )
    run.prepare(model, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch,
                optimizer_steps=total * config.update_epochs)  # fmt: skip
    grader = Grader.of(examples[0].answer_kind, config.cot, config.grading)
    with grader:
        step = OnlineSelfTrainStep(run, questions, gold, grader)
        return run.train(step, make_dev_evaluator(run, dev_examples))


RUNNERS = {SelfTrainMode.offline: run_offline, SelfTrainMode.online: run_online}
"""The trainer of each mode, chosen once from the config."""


def run_self_train(config: SelfTrainConfig) -> RunState:
    """Run the self-training baseline `config.mode` names."""
    return RUNNERS[config.mode](config)


def read_self_training_counts(out_dir: str | Path) -> dict[str, Any]:
    """The counts an offline run wrote with its data (sampled, correct, unique kept, ...)."""
    return json.loads((Path(out_dir) / SELF_TRAINING_DATA).read_text())["counts"]
