"""Dev-split evaluation during training: greedy top-1 accuracy on the dev set (never the test set)."""

from __future__ import annotations

from collections.abc import Callable

from reft.data.loaders import load_dataset
from reft.evaluate.predict import answered_rate, mean_response_tokens, predict, top1_accuracy
from reft.generation import SamplingConfig
from reft.grader import Grader
from reft.train.loop import TrainingRun


def make_dev_evaluator(run: TrainingRun) -> Callable[[], dict[str, float]] | None:
    """A no-argument function that evaluates the run's current model on its dev set (None: no dev set).

    The grader uses the training reward's strict rule, so dev accuracy and train reward agree.
    """
    config = run.config
    if not config.dev_data:
        return None
    examples = load_dataset(config.dev_data, strip_calculator=config.strip_calculator)
    if config.dev_limit:
        examples = examples[: config.dev_limit]
    sampling = SamplingConfig(
        do_sample=False,
        max_new_tokens=config.eval_max_new_tokens,
        batch_size=config.eval_batch_size,
    )
    grader = Grader(examples[0].answer_kind, config.cot, strict=True)

    def evaluate() -> dict[str, float]:
        results = predict(
            run.policy, run.tokenizer, examples, config.cot, sampling, grader,
            seed=config.seed, progress=f"{run.stage} dev",
        )  # fmt: skip
        return {
            "accuracy": top1_accuracy(results),
            "answered": answered_rate(results),
            "response_tokens": mean_response_tokens(results),
        }

    return evaluate
