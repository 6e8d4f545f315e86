"""Supervised fine-tuning: the ReFT warm-up, the SFT baseline and offline self-training's training stage.

The loss is the negative log-likelihood of the target tokens only (prompt tokens carry no loss; the
EOS that ends each target does), averaged over all target tokens of the global batch, so one process
with batch B and N processes with B / N each take the same step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from reft.data.collate import pad_sft_batch
from reft.data.example import Example
from reft.data.loaders import require_cot
from reft.data.tokenize import IGNORE_INDEX, SFTFeatures, tokenize_sft
from reft.train.batching import global_batch, shard, step_counts
from reft.train.config import SFTConfig
from reft.train.data import load_train_and_dev
from reft.train.dev import make_dev_evaluator
from reft.train.loop import RunState, TrainingRun
from reft.train.model_setup import load_training_model

logger = logging.getLogger(__name__)


def token_nll_sum(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """Summed NLL of the labelled tokens of `batch` and their count.

    batch: input_ids, attention_mask, labels, each [B, L]; labels are IGNORE_INDEX where no loss.
    Position t's logits predict token t + 1, so logits[:, :-1] are scored against labels[:, 1:].
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return nll, int((targets != IGNORE_INDEX).sum())


def backward_micro_batches(
    run: TrainingRun,
    items: list,
    loss_sum_fn: Callable[[list], tuple[torch.Tensor, dict[str, float]]],
    scale: float,
    *,
    sync: bool = True,
    min_chunks: int = 0,
    filler: list | None = None,
) -> dict[str, float]:
    """Forward and backward this process's `items`, `micro_batch_size` at a time, adding gradients.

    loss_sum_fn(chunk) -> (loss summed over the chunk, floats to add up over chunks); each chunk
    backpropagates loss x scale. Gradients are synchronised across processes with the last chunk
    only, and only when `sync` (pass sync=False to every call of a step but its last). Returns the
    added-up floats and "loss_sum", the loss summed over all chunks.

    With fewer than `min_chunks` chunks, the `filler` chunk is run in their place with scale 0 and
    left out of the totals: under FSDP2 every forward and backward is a collective, so every rank
    must run the same number of them even when its share of the data is smaller.
    """
    size = run.config.micro_batch_size
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    real = len(chunks)
    if real < min_chunks:
        if not filler:
            raise ValueError("min_chunks needs a non-empty filler chunk")
        chunks += [filler] * (min_chunks - real)
    totals: dict[str, float] = {"loss_sum": 0.0}
    run.model.train()
    for index, chunk in enumerate(chunks):
        with run.micro_batch(last=sync and index == len(chunks) - 1):
            with run.accelerator.autocast():
                loss, stats = loss_sum_fn(chunk)
            run.accelerator.backward(loss * (scale if index < real else 0.0))
        if index >= real:
            continue
        totals["loss_sum"] += loss.item()
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


def sft_nll_fn(run: TrainingRun) -> Callable[[list[SFTFeatures]], tuple[torch.Tensor, dict]]:
    """loss_sum_fn for `backward_micro_batches`: summed target-token NLL of a chunk of SFTFeatures."""
    pad_id = run.tokenizer.pad_token_id

    def nll_sum(chunk: list[SFTFeatures]) -> tuple[torch.Tensor, dict[str, float]]:
        tensors = {k: v.to(run.device) for k, v in pad_sft_batch(chunk, pad_id).items()}
        nll, targets = token_nll_sum(run.model, tensors)
        return nll, {"targets": targets, "tokens": int(tensors["attention_mask"].sum())}

    return nll_sum


class SFTStep:
    """One optimizer step of SFT over a global batch, split into per-process micro-batches."""

    def __init__(self, run: TrainingRun, features: list[SFTFeatures]) -> None:
        self.run = run
        self.features = features
        self.nll_sum = sft_nll_fn(run)

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        started = time.perf_counter()
        indices = global_batch(len(self.features), config.batch_size, config.seed, step)
        batch = [self.features[i] for i in indices]
        # Normalise by the global batch's target tokens; DDP averages gradients over processes.
        total_targets = sum(sum(label != IGNORE_INDEX for label in item.labels) for item in batch)
        local = shard(batch, run.accelerator.process_index, run.num_processes)
        totals = backward_micro_batches(run, local, self.nll_sum, run.num_processes / total_targets)
        grad_norm = run.clip_and_step()
        loss_sum = torch.tensor(totals["loss_sum"], device=run.device)
        loss = run.accelerator.reduce(loss_sum, "sum").item()
        elapsed = time.perf_counter() - started
        return {
            "loss": loss / total_targets,
            "grad_norm": grad_norm,
            "tokens_per_s": totals["tokens"] * run.num_processes / elapsed,
        }


def run_sft(config: SFTConfig) -> RunState:
    """Train `config.model` on the gold solutions of `config.train_data`; returns the final state."""
    run = TrainingRun(config, stage="sft")
    examples, dev_examples = load_train_and_dev(config)
    require_cot(examples, config.cot, config.train_data)
    model, tokenizer = load_training_model(run, examples)
    features, report = tokenize_sft(
        examples, tokenizer, config.cot, config.max_length, config.overlength
    )
    logger.info("tokenised %s: %s", config.train_data, report.summary())
    return train_on_features(run, model, tokenizer, features, dev_examples)


def train_on_features(
    run: TrainingRun,
    model: torch.nn.Module,
    tokenizer,
    features: list[SFTFeatures],
    dev_examples: list[Example] | None,
) -> RunState:
    """SFT of `model` on tokenised `features`, dev-evaluated on `dev_examples` (None: no dev
    evaluation); shared by `reft sft` and offline self-training."""
    config = run.config
    steps_per_epoch, total = step_counts(len(features), config, "training examples left")
    run.prepare(model, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch)
    run.accumulation_steps()  # fails early when the batch does not split over processes
    evaluator = make_dev_evaluator(run, dev_examples)
    return run.train(SFTStep(run, features), evaluator)
