"""Reward model: data building and labelling, AUC against a pairwise loop, dev metrics, which token the
classifier pools (padding must not change a score, also with pad == eos), and `reft rm train` then
`reft eval --rerank` through the CLI."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch

from reft.cli import main
from reft.config import ConfigError, load_config
from reft.data.example import CotKind
from reft.data.prompts import program_header
from reft.evaluate.predict import GradedCompletion, QuestionResult
from reft.metrics import read_metrics
from reft.models.reward_model import load_reward_model, pad_right, rm_input_ids, score_solutions
from reft.train.config import RewardModelConfig
from reft.train.reward_model import (
    RM_DATA,
    RMRecord,
    build_rm_records,
    rm_dev_metrics,
    roc_auc,
)


def _graded(text: str, extracted: str | None, correct: bool) -> GradedCompletion:
    return GradedCompletion(text, extracted, correct, float(correct), None, 5, True)


def test_records_are_labelled_by_grading_and_deduplicated_per_question():
    results = [
        QuestionResult("q1", "Q one", "7", [
            _graded("a\nTherefore, the answer is: 7", "7", True),
            _graded("b\nTherefore, the answer is: 8", "8", False),
            _graded("a \nTherefore, the answer is: 7", "7", True),  # whitespace duplicate
            _graded("no answer here", None, False),
        ]),
        QuestionResult("q2", "Q two", "3", [_graded("a\nTherefore, the answer is: 7", "7", False)]),
    ]  # fmt: skip
    records = build_rm_records(results, CotKind.nl)
    assert records == [
        RMRecord("q1", "Q one", "a\nTherefore, the answer is: 7", 1, "7"),
        RMRecord("q1", "Q one", "b\nTherefore, the answer is: 8", 0, "8"),
        RMRecord("q1", "Q one", "no answer here", 0, None),
        RMRecord(
            "q2", "Q two", "a\nTherefore, the answer is: 7", 0, "7"
        ),  # same text, other question
    ]
    assert len(build_rm_records(results, CotKind.nl, max_unique_per_question=1)) == 2


def test_pcot_records_hold_the_full_program():
    body = "    return 3 + 4\n"
    results = [QuestionResult("q", "Q", "7", [_graded(body, "7", True)])]
    (record,) = build_rm_records(results, CotKind.python)
    assert record.solution == program_header("Q") + body.rstrip()


AUC_CASES = [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0, "perfect ranking"),
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0, "reversed ranking"),
    ([0.5, 0.5, 0.5], [0, 1, 1], 0.5, "all tied"),
    ([0.1, 0.4, 0.4, 0.9], [0, 0, 1, 1], 0.875, "one tied pair counts 1/2: (4 - 0.5) / 4"),
]


@pytest.mark.parametrize(("scores", "labels", "expected", "why"), AUC_CASES)
def test_roc_auc_table(scores, labels, expected, why):
    assert roc_auc(scores, labels) == pytest.approx(expected), why


def test_roc_auc_matches_the_pairwise_loop_and_is_nan_for_one_class():
    rng = random.Random(0)
    for _ in range(20):
        scores = [round(rng.random(), 1) for _ in range(30)]  # rounding makes many ties
        labels = [rng.randint(0, 1) for _ in range(30)]
        positives = [s for s, y in zip(scores, labels, strict=True) if y]
        negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
        pairs = [(p, n) for p in positives for n in negatives]
        oracle = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
        assert roc_auc(scores, labels) == pytest.approx(oracle)
    assert roc_auc([0.2, 0.3], [1, 1]) != roc_auc([0.2, 0.3], [1, 1])  # NaN


def test_dev_metrics_classify_rank_and_rerank_by_question():
    records = [
        RMRecord("a", "A", "s1", 0, "3"),
        RMRecord("a", "A", "s2", 1, "7"),
        RMRecord("b", "B", "s3", 1, "7"),
        RMRecord("b", "B", "s4", 0, None),
    ]
    scores = [0.2, 0.7, 0.4, 0.9]  # b's best score has no answer: rerank picks s3
    metrics = rm_dev_metrics(records, scores)
    assert metrics["accuracy"] == pytest.approx(2 / 4)  # s1 and s2 right, s3 and s4 wrong
    assert metrics["auc"] == pytest.approx(0.5)
    assert metrics["rerank"] == 1.0 and metrics["oracle"] == 1.0
    assert metrics["positive_rate"] == 0.5


def test_reward_model_config_checks_and_recipe():
    with pytest.raises(ConfigError, match="not a preset"):
        load_config(RewardModelConfig, None, ["model=preset:micro-llama"])
    assert load_config(RewardModelConfig, None, []).num_samples == 100
    recipe = Path(__file__).resolve().parents[1] / "configs" / "synth" / "reward_model.yaml"
    assert load_config(RewardModelConfig, recipe).sample_model == "runs/synth/warmup/final"


# ---- which token the classifier pools ------------------------------------------------------------


@pytest.fixture
def classifier_dir(tiny_tokenizer, tmp_path) -> Path:
    """A micro-llama causal LM (weights redrawn at std 0.5 so every token matters) saved as an
    ordinary checkpoint: the reward model starts from one."""
    from reft.models.presets import build_tiny_model

    model = build_tiny_model("micro-llama", tiny_tokenizer, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.save_pretrained(tmp_path / "lm")
    tiny_tokenizer.save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


PAIRS = [
    ("Tom has 3 apples. He eats 1. How many are left?", "Tom has 3 - 1 = 2.\nTherefore, the answer is: 2"),
    ("Ann has 5.", "5"),
    ("Bo has 12 pens and buys 30 more. How many pens now?", "12 + 30 = 42\nTherefore, the answer is: 42"),
]  # fmt: skip


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_padding_does_not_change_scores_and_the_last_token_is_pooled(
    tiny_tokenizer, classifier_dir, pad_is_eos
):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    if pad_is_eos:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_reward_model(str(classifier_dir), tokenizer, device="cpu")
    assert model.config.pad_token_id == tokenizer.pad_token_id
    alone = [score_solutions(model, tokenizer, [pair])[0] for pair in PAIRS]
    batched = score_solutions(model, tokenizer, PAIRS, batch_size=3)
    assert batched == pytest.approx(alone, abs=1e-5)
    assert max(alone) - min(alone) > 1e-3, "the scores should depend on the text"

    ids = [rm_input_ids(tokenizer, q, s) for q, s in PAIRS]
    batch = pad_right(ids, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.model(**batch).last_hidden_state
        last = torch.tensor([len(row) - 1 for row in ids])
        expected = model.score(hidden[torch.arange(len(ids)), last])
    torch.testing.assert_close(logits, expected)


def test_a_pad_id_inside_the_text_is_dropped(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    ids = rm_input_ids(tokenizer, "Q", f"text {tokenizer.eos_token} more")
    assert tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids).endswith("text  more")


# ---- end to end through the CLI on a toy task ----------------------------------------------------


@pytest.mark.slow
def test_rm_train_then_rerank_through_the_cli(tmp_path, digit_game):
    """SFT picks a random digit; the RM data's gold is always 7, so a solution is correct iff it
    answers 7: a reward model can learn that, and then rerank@K finds the 7 among K samples."""
    rng = random.Random(0)
    sft_data = digit_game(tmp_path / "sft.json", [str(rng.randint(0, 9)) for _ in range(256)])
    warmup = tmp_path / "warmup"
    assert main(["sft", "model=preset:micro-llama", f"train_data={sft_data}", "dev_data=null",
                 f"out_dir={warmup}", "batch_size=32", "micro_batch_size=32", "lr=3e-3",
                 "max_steps=120", "preset_vocab_size=300", "seed=0"]) == 0  # fmt: skip
    train = digit_game(tmp_path / "train.json", ["7"] * 64)
    out = tmp_path / "rm"
    assert main(["rm", "train", f"model={warmup / 'final'}", f"train_data={train}", "dev_data=null",
                 "dev_holdout=16", f"out_dir={out}", "num_samples=8", "max_new_tokens=16",
                 "batch_size=16", "micro_batch_size=16", "lr=3e-3", "epochs=4", "warmup_ratio=0",
                 "log_every=1"]) == 0  # fmt: skip

    data = json.loads((out / RM_DATA).read_text())
    assert data["counts"]["train"]["questions"] == 48 and data["counts"]["dev"]["questions"] == 16
    train_ids = {r["id"] for r in data["records"]["train"]}
    assert not train_ids & {r["id"] for r in data["records"]["dev"]}, "no question in both splits"
    for record in data["records"]["train"] + data["records"]["dev"]:
        assert record["label"] == int(record["answer"] == "7")
    dev = read_metrics(out, "dev")
    assert {"accuracy", "auc", "log_loss", "rerank", "oracle", "positive_rate"} <= set(dev[-1])
    assert dev[-1]["auc"] > 0.9, dev[-1]

    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(out / "best")
    assert saved.config.num_labels == 2 and saved.config.architectures == [
        "LlamaForSequenceClassification"
    ]

    test = digit_game(tmp_path / "test.json", ["7"] * 32)
    evaluation = tmp_path / "eval"
    assert main(["eval", f"model={warmup / 'final'}", f"dataset={test}", f"out_dir={evaluation}",
                 "max_new_tokens=16", "--k", "4", "--rerank", str(out / "best")]) == 0  # fmt: skip
    metrics = json.loads((evaluation / "results.json").read_text())["metrics"]
    assert list(metrics).index("rerank@4") == list(metrics).index("voting@4") + 1
    assert metrics["pass@4"] > metrics["top1"], "K samples find 7 more often than greedy"
    assert metrics["rerank@4"] >= metrics["pass@4"] - 0.1, metrics
    assert 0 <= metrics["top1_harness_flexible"] <= 1 and "top1_harness_strict" in metrics
    lines = (evaluation / "rerank_k4.jsonl").read_text().splitlines()
    assert len(lines) == 32 and len(json.loads(lines[0])["scores"]) == 4
