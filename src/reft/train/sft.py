"""Supervised fine-tuning: the ReFT warm-up, the SFT baseline and offline self-training's training stage.

The loss is the negative log-likelihood of the target tokens only (prompt tokens carry no loss; the
EOS that ends each target does), averaged over all target tokens of the global batch, so one process
with batch B and N processes with B / N each take the same step.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from reft.data.collate import pad_sft_batch
from reft.data.loaders import load_dataset, require_cot
from reft.data.tokenize import IGNORE_INDEX, SFTFeatures, tokenize_sft
from reft.evaluate.dev import make_dev_evaluator
from reft.train.batching import global_batch, shard
from reft.train.config import SFTConfig
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


class SFTStep:
    """One optimizer step of SFT over a global batch, split into per-process micro-batches."""

    def __init__(self, run: TrainingRun, features: list[SFTFeatures]) -> None:
        self.run = run
        self.features = features
        self.pad_id = run.tokenizer.pad_token_id

    def __call__(self, step: int) -> dict[str, float]:
        run, config = self.run, self.run.config
        started = time.perf_counter()
        indices = global_batch(len(self.features), config.batch_size, config.seed, step)
        batch = [self.features[i] for i in indices]
        # Normalise by the global batch's target tokens; DDP averages gradients over processes.
        total_targets = sum(sum(label != IGNORE_INDEX for label in item.labels) for item in batch)
        local = shard(batch, run.accelerator.process_index, run.num_processes)
        micro = [
            local[i : i + config.micro_batch_size]
            for i in range(0, len(local), config.micro_batch_size)
        ]
        run.model.train()
        loss_sum, tokens = 0.0, 0
        for index, chunk in enumerate(micro):
            tensors = {k: v.to(run.device) for k, v in pad_sft_batch(chunk, self.pad_id).items()}
            sync = index == len(micro) - 1
            with run.accelerator.no_sync(run.model) if not sync else nullcontext():
                with run.accelerator.autocast():
                    nll, _ = token_nll_sum(run.model, tensors)
                run.accelerator.backward(nll * run.num_processes / total_targets)
            loss_sum += nll.item()
            tokens += int(tensors["attention_mask"].sum())
        grad_norm = run.clip_and_step()
        loss = run.accelerator.reduce(torch.tensor(loss_sum, device=run.device), "sum").item()
        elapsed = time.perf_counter() - started
        return {
            "loss": loss / total_targets,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens * run.num_processes / elapsed,
        }


def run_sft(config: SFTConfig) -> RunState:
    """Train `config.model` on the gold solutions of `config.train_data`; returns the final state."""
    run = TrainingRun(config, stage="sft")
    examples = load_dataset(config.train_data, strip_calculator=config.strip_calculator)
    require_cot(examples, config.cot, config.train_data)
    model, tokenizer = load_training_model(run, examples)
    features, report = tokenize_sft(
        examples, tokenizer, config.cot, config.max_length, config.overlength
    )
    logger.info("tokenised %s: %s", config.train_data, report.summary())
    if len(features) < config.batch_size:
        raise ValueError(
            f"{len(features)} training examples left, fewer than batch_size {config.batch_size}"
        )
    steps_per_epoch = len(features) // config.batch_size
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    run.prepare(model, tokenizer, total_steps=total, steps_per_epoch=steps_per_epoch)
    run.accumulation_steps()  # fails early when the batch does not split over processes
    evaluator = make_dev_evaluator(run)
    return run.train(SFTStep(run, features), evaluator)
