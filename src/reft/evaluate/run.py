"""The work behind `reft sample` and `reft eval`: load, generate, grade, write, summarise."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from reft.answers.grader import Grader
from reft.answers.hacking import tracks_hacking
from reft.config import config_to_dict, save_config, save_run_config
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.loaders import load_dataset
from reft.evaluate.config import EvalConfig, InferenceConfig, SampleConfig
from reft.evaluate.predict import (
    QuestionResult,
    answered_rate,
    first_k,
    harness_accuracy,
    mean_response_tokens,
    pass_at_k,
    predict,
    top1_accuracy,
    top1_error_shares,
    top1_hacking_rates,
    voting_accuracy,
)
from reft.evaluate.rerank import (
    rerank_accuracy,
    rerank_picks,
    rerank_with_model,
    roc_auc,
    within_question_auc,
    within_question_pairs,
    write_rerank,
)
from reft.files import check_output_dir, check_output_file, write_json_atomic, write_jsonl_atomic
from reft.model_card import add_evaluation
from reft.models.load import load_causal_lm, load_tokenizer
from reft.run_lock import RunLock

logger = logging.getLogger(__name__)

CURVE_KS = (1, 2, 4, 8, 16, 32)
"""The sample counts of results.json's `curves` (those up to K, and K itself): the paper's K axis."""


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
    results.json and predictions.

    results.json: {"model", "dataset", "metrics": {name: number}, "curves" (k > 0 only; see
    `accuracy_curves`), "generation"}. The curves sit beside `metrics`, not in it, so `metrics` stays
    one number per name (`reft eval-table` reads every entry as an accuracy but those it skips:
    `answered`, `response_tokens`, and `top1_error_<kind>`, the share of greedy completions that
    ended in each error kind). Multiple-choice N-CoT data with option values in its questions also
    gets `top1_hacked_reward_rate`, `top1_no_number_rate` and `top1_reasoning_accuracy`
    (reft.answers.hacking)."""
    out_dir = check_output_dir(config.out_dir)
    with RunLock(out_dir):  # before anything is written there
        return _evaluate(config, out_dir)


def _evaluate(config: EvalConfig, out_dir: Path) -> dict[str, Any]:
    model, tokenizer, examples, grader = load_inference_inputs(config)
    save_run_config(config, out_dir)
    metrics: dict[str, Any] = {"questions": len(examples)}
    curves = reranker = None
    with grader:
        greedy = predict(model, tokenizer, examples, config.cot, config.greedy_sampling(), grader,
                         seed=config.seed, progress="greedy")  # fmt: skip
        write_jsonl(out_dir / "predictions_greedy.jsonl", greedy)
        metrics |= {"top1": top1_accuracy(greedy), "answered": answered_rate(greedy),
                    "response_tokens": mean_response_tokens(greedy)}  # fmt: skip
        metrics |= {f"top1_{k}": v for k, v in top1_error_shares(greedy, config.cot).items()}
        if tracks_hacking(examples, config.cot):  # option letters whose values are known
            metrics |= {f"top1_{k}": v for k, v in top1_hacking_rates(greedy, examples).items()}
        if config.cot is CotKind.nl and examples[0].answer_kind is AnswerKind.numeric:
            # The same greedy outputs as lm-evaluation-harness's GSM8K filters would score them.
            metrics["top1_harness_strict"] = harness_accuracy(greedy, flexible=False)
            metrics["top1_harness_flexible"] = harness_accuracy(greedy, flexible=True)
        if config.k:
            sampled = predict(model, tokenizer, examples, config.cot, config.k_sampling(), grader,
                              seed=config.seed, progress=f"{config.k} samples")  # fmt: skip
            write_jsonl(out_dir / f"predictions_k{config.k}.jsonl", sampled)
            scores = None
            if config.rerank:  # rerank@K: the reward model's choice among the same K samples
                scores, picks = rerank_with_model(
                    config.rerank, sampled, config.cot, dtype=config.dtype, device=config.device,
                    batch_size=config.sampling.batch_size,
                )  # fmt: skip
                write_rerank(out_dir / f"rerank_k{config.k}.jsonl", sampled, scores, picks)
                reranker = reranker_quality(sampled, scores)
            curves = accuracy_curves(sampled, examples, scores)
            metrics |= headline_metrics(curves)
    results = {"model": config.model, "dataset": config.dataset, "metrics": metrics,
               **({"curves": curves} if curves else {}),
               **({"reranker": reranker} if reranker else {}),
               "generation": {"greedy": config_to_dict(config.greedy_sampling()),
                              "sampled": config_to_dict(config.k_sampling()) if config.k else None}}  # fmt: skip
    write_json_atomic(out_dir / "results.json", results)
    if Path(config.model).is_dir():  # a reft checkpoint's card gains these results
        add_evaluation(config.model, config.dataset, metrics)
    return results


def reranker_quality(results: list[QuestionResult], scores: list[list[float]]) -> dict[str, float]:
    """How well the reward model's scores order this eval's samples: pooled ROC AUC over every
    sample, and the within-question AUC over (right, wrong) pairs of samples of one question (what a
    rerank pick depends on), with the number of such pairs."""
    labels = [[int(c.correct) for c in result.completions] for result in results]
    return {
        "auc": roc_auc([s for row in scores for s in row], [y for row in labels for y in row]),
        "auc_within": within_question_auc(scores, labels),
        "pairs_within": within_question_pairs(labels),
    }


def curve_ks(k: int) -> list[int]:
    """The sample counts of a K-sample curve: each of `CURVE_KS` up to K, then K itself."""
    return sorted({n for n in CURVE_KS if n <= k} | {k})


def accuracy_curves(
    results: list[QuestionResult],
    examples: list[Example],
    scores: list[list[float]] | None = None,
) -> dict[str, list[float]]:
    """voting@k, pass@k and, given reward-model scores[i][j], rerank@k for each k of `curve_ks`,
    each computed on the FIRST k samples of every question.

    The K samples of a question are drawn independently from one distribution, so their first k are
    k i.i.d. samples: an unbiased one-draw estimate of what an eval with K = k would report (not the
    average over every k-subset). The last point is the K-sample headline figure itself.
    Returns {"k": [...], "voting": [...], "pass": [...]} plus "rerank" with scores; JSON-ready.
    """
    ks = curve_ks(min(len(result.completions) for result in results)) if results else []
    curves: dict[str, list[float]] = {"k": ks, "voting": [], "pass": []}
    for k in ks:
        prefix = first_k(results, k)
        curves["voting"].append(voting_accuracy(prefix, examples))
        curves["pass"].append(pass_at_k(prefix))
        if scores is not None:
            picks = rerank_picks(prefix, [question_scores[:k] for question_scores in scores])
            curves.setdefault("rerank", []).append(rerank_accuracy(prefix, picks))
    return curves


def headline_metrics(curves: dict[str, list[float]]) -> dict[str, float]:
    """voting@K, rerank@K (when reranked) and pass@K: the last point of each curve."""
    if not curves["k"]:
        return {}
    k = curves["k"][-1]
    return {
        f"{name}@{k}": curves[name][-1] for name in ("voting", "rerank", "pass") if name in curves
    }


def format_table(metrics: dict[str, Any]) -> str:
    """A two-column text table of the accuracy figures."""
    rows = [(name, value) for name, value in metrics.items() if isinstance(value, float)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)
