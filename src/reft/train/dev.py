"""Dev-split evaluation during training: greedy top-1 accuracy on the dev set (never the test set),
with the share of each error kind among the greedy completions (`error_<kind>`), and on
multiple-choice N-CoT data with option values the hacking rates (reft.answers.hacking)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reft.answers.grader import Grader
from reft.answers.hacking import tracks_hacking
from reft.data.example import Example
from reft.evaluate.predict import (
    answered_rate,
    mean_response_tokens,
    predict,
    top1_accuracy,
    top1_error_shares,
    top1_hacking_rates,
)
from reft.generation.config import SamplingConfig
from reft.train.loop import TrainingRun

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def make_dev_evaluator(
    run: TrainingRun, examples: list[Example] | None
) -> Callable[[PreTrainedModel], dict[str, float]] | None:
    """A function that evaluates the policy it is given (the run's current one, from
    `TrainingRun.evaluate`) on `examples` (None: no dev).

    The grader uses the training reward's strict rule, so dev accuracy and train reward agree.
    """
    config = run.config
    if not examples:
        return None
    sampling = SamplingConfig(
        do_sample=False,
        max_new_tokens=config.eval_max_new_tokens,
        batch_size=config.eval_batch_size,
    )
    grader = Grader(examples[0].answer_kind, config.cot, strict=True)
    hacking = tracks_hacking(examples, config.cot)

    def evaluate(policy: PreTrainedModel) -> dict[str, float]:
        results = predict(
            policy, run.tokenizer, examples, config.cot, sampling, grader,
            seed=config.seed, progress=f"{run.stage} dev",
        )  # fmt: skip
        metrics = {
            "accuracy": top1_accuracy(results),
            "answered": answered_rate(results),
            "response_tokens": mean_response_tokens(results),
        } | top1_error_shares(results, config.cot)
        return metrics | (top1_hacking_rates(results, examples) if hacking else {})

    return evaluate
