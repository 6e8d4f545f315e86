"""The work behind `reft sample` and `reft eval`: load, generate, grade, write, summarise."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from reft.answers.grader import Grader
from reft.config import config_to_dict, save_config, save_run_config
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.loaders import load_dataset
from reft.evaluate.config import EvalConfig, InferenceConfig, SampleConfig
from reft.evaluate.predict import (
    QuestionResult,
    answered_rate,
    harness_accuracy,
    mean_response_tokens,
    pass_at_k,
    predict,
    top1_accuracy,
    voting_accuracy,
)
from reft.evaluate.rerank import rerank_accuracy, rerank_with_model, write_rerank
from reft.files import check_output_dir, check_output_file, write_json_atomic, write_jsonl_atomic
from reft.models.load import load_causal_lm, load_tokenizer

logger = logging.getLogger(__name__)


def load_inference_inputs(config: InferenceConfig) -> tuple[Any, Any, list[Example], Grader]:
    """(model, tokenizer, examples, grader) for an inference command."""
    examples = load_dataset(config.dataset)
    if config.limit:
        examples = examples[: config.limit]
    tokenizer = load_tokenizer(config.model)
    model = load_causal_lm(config.model, dtype=config.dtype, device=config.device)
    grader = Grader.of(examples[0].answer_kind, config.cot, config.grading, strict=config.strict)
    return model, tokenizer, examples, grader


def write_jsonl(path: Path, results: list[QuestionResult]) -> None:
    """Write per-question records atomically (a temporary file renamed into place)."""
    write_jsonl_atomic(path, (result.to_json() for result in results))


def run_sample(config: SampleConfig) -> dict[str, float]:
    """Sample, grade and write every completion; returns summary figures."""
    check_output_file(config.out, "out")
    model, tokenizer, examples, grader = load_inference_inputs(config)
    started = time.time()
    with grader:
        results = predict(model, tokenizer, examples, config.cot, config.sampling_config(), grader,
                          seed=config.seed, progress="sample")  # fmt: skip
    write_jsonl(Path(config.out), results)
    save_config(config, Path(config.out).with_suffix(".config.yaml"))
    return {
        "questions": len(results),
        "samples_per_question": config.num_samples,
        "accuracy_first": top1_accuracy(results),
        "pass_at_k": pass_at_k(results),
        "answered": answered_rate(results),
        "seconds": time.time() - started,
    }


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Greedy top-1 and, with k > 0, voting@K, pass@K and (with a reward model) rerank@K; writes
    results.json and predictions."""
    out_dir = check_output_dir(config.out_dir)
    model, tokenizer, examples, grader = load_inference_inputs(config)
    save_run_config(config, out_dir)
    metrics: dict[str, Any] = {"questions": len(examples)}
    with grader:
        greedy = predict(model, tokenizer, examples, config.cot, config.greedy_sampling(), grader,
                         seed=config.seed, progress="greedy")  # fmt: skip
        write_jsonl(out_dir / "predictions_greedy.jsonl", greedy)
        metrics |= {"top1": top1_accuracy(greedy), "answered": answered_rate(greedy),
                    "response_tokens": mean_response_tokens(greedy)}  # fmt: skip
        if config.cot is CotKind.nl and examples[0].answer_kind is AnswerKind.numeric:
            # The same greedy outputs as lm-evaluation-harness's GSM8K filters would score them.
            metrics["top1_harness_strict"] = harness_accuracy(greedy, flexible=False)
            metrics["top1_harness_flexible"] = harness_accuracy(greedy, flexible=True)
        if config.k:
            sampled = predict(model, tokenizer, examples, config.cot, config.k_sampling(), grader,
                              seed=config.seed, progress=f"{config.k} samples")  # fmt: skip
            write_jsonl(out_dir / f"predictions_k{config.k}.jsonl", sampled)
            metrics[f"voting@{config.k}"] = voting_accuracy(sampled, examples)
            if config.rerank:  # rerank@K: the reward model's choice among the same K samples
                scores, picks = rerank_with_model(
                    config.rerank, sampled, config.cot, dtype=config.dtype, device=config.device,
                    batch_size=config.sampling.batch_size,
                )  # fmt: skip
                write_rerank(out_dir / f"rerank_k{config.k}.jsonl", sampled, scores, picks)
                metrics[f"rerank@{config.k}"] = rerank_accuracy(sampled, picks)
            metrics[f"pass@{config.k}"] = pass_at_k(sampled)
    results = {"model": config.model, "dataset": config.dataset, "metrics": metrics,
               "generation": {"greedy": config_to_dict(config.greedy_sampling()),
                              "sampled": config_to_dict(config.k_sampling()) if config.k else None}}  # fmt: skip
    write_json_atomic(out_dir / "results.json", results)
    return results


def format_table(metrics: dict[str, Any]) -> str:
    """A two-column text table of the accuracy figures."""
    rows = [(name, value) for name, value in metrics.items() if isinstance(value, float)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)
