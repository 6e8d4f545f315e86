"""Reward model: data building and labelling, AUC against a pairwise loop, dev metrics (pooled and
within-question AUC), the listwise loss against its plain loop and its question batches, which token
the classifier pools (padding must not change a score, also with pad == eos), `reft rm train` on
another run's records (pointwise and listwise), and `reft rm train` then `reft eval --rerank` through
the CLI."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from reft.cli import main
from reft.config import ConfigError, load_config
from reft.data.errors import DataError
from reft.data.example import CotKind
from reft.data.prompts import program_header
from reft.evaluate.predict import GradedCompletion, QuestionResult
from reft.evaluate.rerank import roc_auc
from reft.metrics import read_metrics
from reft.models.reward_model import load_reward_model, pad_right, rm_input_ids, score_solutions
from reft.train.batching import shard
from reft.train.config import RewardModelConfig, RMLoss, RMSelectMetric
from reft.train.reward_model import (
    RM_DATA,
    RMRecord,
    build_rm_records,
    record_counts,
    rm_data_source,
    rm_dev_metrics,
)
from reft.train.reward_model_steps import (
    RM_STEPS,
    ListwiseRewardModelStep,
    RMFeatures,
    pack_groups,
    question_groups,
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
    assert metrics["auc_within"] == pytest.approx(0.5)  # a: 0.7 > 0.2 won; b: 0.4 < 0.9 lost


def test_within_question_auc_sees_what_pooled_auc_hides():
    """Easy questions score high for every sample, hard ones low: pooled AUC is high, yet within each
    question the wrong solution scores higher, so rerank picks it."""
    records, scores = [], []
    for question, base in (("easy1", 0.8), ("easy2", 0.8), ("hard1", 0.1), ("hard2", 0.1)):
        labels = (1,) * 7 + (0,) if question.startswith("easy") else (1,) + (0,) * 7
        for k, label in enumerate(labels):
            records.append(RMRecord(question, question, f"s{k}", label, str(k)))
            scores.append(base + (0.1 if not label else 0.01 * k))  # the wrong ones a bit higher
    metrics = rm_dev_metrics(records, scores)
    assert metrics["auc"] == pytest.approx(14 * 14 / 16**2)  # easy correct beat hard wrong
    assert metrics["auc_within"] == 0.0 and metrics["rerank"] == 0.0


def test_select_metrics_and_losses_are_what_the_trainer_offers():
    records = [RMRecord("a", "A", "s1", 0, "3"), RMRecord("a", "A", "s2", 1, "7")]
    keys = set(rm_dev_metrics(records, [0.2, 0.7]))
    assert {member.value for member in RMSelectMetric} <= keys
    assert set(RM_STEPS) == set(RMLoss)


def test_reward_model_config_checks_and_recipe():
    with pytest.raises(ConfigError, match="not a preset"):
        load_config(RewardModelConfig, None, ["model=preset:micro-llama"])
    default = load_config(RewardModelConfig, None, [])
    assert default.num_samples == 100
    assert (default.loss, default.select_metric) == (RMLoss.pointwise, RMSelectMetric.auc)
    assert default.pointwise_weight == 0.0 and default.records_from is None
    with pytest.raises(ConfigError, match="only for loss=listwise"):
        load_config(RewardModelConfig, None, ["pointwise_weight=0.5"])
    with pytest.raises(ConfigError, match="pointwise_weight"):
        load_config(RewardModelConfig, None, ["loss=listwise", "pointwise_weight=-1"])
    with pytest.raises(ConfigError, match="select_metric"):
        load_config(RewardModelConfig, None, ["select_metric=accuracy"])
    config = load_config(RewardModelConfig, None, ["loss=listwise", "pointwise_weight=0.5",
                                                   "select_metric=auc_within", "records_from=x"])  # fmt: skip
    assert config.loss is RMLoss.listwise and config.select_metric is RMSelectMetric.auc_within
    recipe = Path(__file__).resolve().parents[1] / "configs" / "synth" / "reward_model.yaml"
    assert load_config(RewardModelConfig, recipe).sample_model == "runs/synth/warmup/final"


# ---- the listwise loss and its question batches ------------------------------------------------


def _features(sizes: dict[str, int]) -> list[RMFeatures]:
    return [RMFeatures([k], k % 2, question) for question, n in sizes.items() for k in range(n)]


def test_question_groups_split_large_questions_and_packs_keep_groups_whole():
    features = _features({"a": 3, "b": 5, "c": 1})
    groups = question_groups(features, max_size=2)
    assert [[(f.id, f.input_ids[0]) for f in g] for g in groups] == [
        [("a", 0), ("a", 1)], [("a", 2)], [("b", 0), ("b", 1)], [("b", 2), ("b", 3)], [("b", 4)],
        [("c", 0)],
    ]  # fmt: skip
    packs = pack_groups(question_groups(features, max_size=4), max_size=4)
    assert [[len(g) for g in pack] for pack in packs] == [[3], [4], [1, 1]]
    assert pack_groups([], 4) == []


def _fake_run(num_processes: int = 1, **overrides) -> SimpleNamespace:
    config = load_config(RewardModelConfig, None, ["loss=listwise", *overrides.pop("args", [])])
    return SimpleNamespace(config=config, num_processes=num_processes, **overrides)


def test_listwise_batches_hold_whole_questions_about_batch_size_solutions_by_seed_and_step():
    features = _features({f"q{i}": 2 + i % 5 for i in range(40)})  # 160 solutions
    run = _fake_run(args=["batch_size=16", "micro_batch_size=8", "seed=3", "epochs=2"])
    step = ListwiseRewardModelStep(run, features)
    assert step.groups_per_step == 4 and step.step_counts() == (10, 20)
    epoch = [step.batch(s) for s in range(10)]
    ids = [g[0].id for batch in epoch for g in batch]
    assert sorted(ids) == sorted({f.id for f in features}), "an epoch sees each question once"
    assert all(len({f.id for f in g}) == 1 for batch in epoch for g in batch)
    assert sum(len(g) for b in epoch for g in b) / 10 == pytest.approx(16)
    again = ListwiseRewardModelStep(_fake_run(args=["batch_size=16", "micro_batch_size=8",
                                                    "seed=3"]), features)  # fmt: skip
    assert [g[0].id for g in again.batch(4)] == [g[0].id for g in epoch[4]]
    assert [g[0].id for g in step.batch(10)] != [g[0].id for g in epoch[0]], "next epoch reshuffles"
    ranks = [shard(epoch[0], rank, 2) for rank in range(2)]
    assert sorted(g[0].id for r in ranks for g in r) == sorted(g[0].id for g in epoch[0])
    with pytest.raises(ValueError, match="fewer than the 8 processes"):
        ListwiseRewardModelStep(_fake_run(8, args=["batch_size=4", "micro_batch_size=2"]), features)


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


# ---- records_from: train on another run's samples -------------------------------------------------


def _write_rm_data(out_dir: Path) -> Path:
    """An rm_data.json as a sampling run writes it: 8 train and 4 dev questions of 4 solutions,
    a solution correct iff it answers 7."""
    out_dir.mkdir(parents=True)
    records = {}
    for split, count in (("train", 8), ("dev", 4)):
        records[split] = [
            RMRecord(f"{split}{i}", f"Pick a digit for game {i}.",
                     f"I pick one.\nTherefore, the answer is: {d}", int(d == "7"), d)
            for i in range(count) for d in ("7", str(i % 7), "9", "7" if i % 2 else "3")
        ]  # fmt: skip
    payload = {
        "counts": {split: record_counts(items) for split, items in records.items()},
        "sample_model": "the warm-up",
        "sampling": {},
        "records": {split: [r.__dict__ for r in items] for split, items in records.items()},
    }
    (out_dir / RM_DATA).write_text(json.dumps(payload))
    return out_dir / RM_DATA


@pytest.mark.parametrize("loss", ["pointwise", "listwise"])
def test_rm_train_on_another_runs_records_samples_nothing(tmp_path, classifier_dir, loss):
    source = _write_rm_data(tmp_path / "first")
    out = tmp_path / "rm"
    nowhere = tmp_path / "nowhere"  # neither loaded nor read: records_from replaces sampling
    not_a_model = tmp_path / "not_a_model.bin"  # passes the CLI's path check, fails any load
    not_a_model.write_text("garbage")
    args = ["rm", "train", f"model={classifier_dir}", f"sample_model={not_a_model}",
            f"train_data={nowhere}.json", f"records_from={source.parent}", f"loss={loss}",
            "select_metric=auc_within", f"out_dir={out}", "batch_size=8", "micro_batch_size=4",
            "max_steps=4", "eval_every=2", "log_every=1", "lr=1e-3"]  # fmt: skip
    if loss == "listwise":
        args.append("pointwise_weight=0.5")
    assert main(args) == 0

    copied = json.loads((out / RM_DATA).read_text())
    original = json.loads(source.read_text())
    assert copied["records_from"] == str(source)
    assert copied["records"] == original["records"] and copied["counts"] == original["counts"]
    train, dev = read_metrics(out, "train"), read_metrics(out, "dev")
    assert len(train) == 4 and len(dev) == 2
    expected = (
        {"listwise", "cross_entropy", "mixed_groups", "solutions"} if loss == "listwise" else set()
    )
    assert {"loss", "accuracy", "grad_norm"} | expected <= set(train[-1])
    assert all(math.isfinite(row["loss"]) for row in train)
    assert {"auc", "auc_within", "rerank", "oracle"} <= set(dev[-1])
    best_step = max(dev, key=lambda row: row["auc_within"])["step"]
    meta = json.loads((out / "best" / "reft_meta.json").read_text())
    assert meta["step"] == best_step, "select_metric=auc_within picks best/"


def test_records_from_a_missing_path_fails_naming_it(tmp_path, capsys):
    source = _write_rm_data(tmp_path / "first")
    assert rm_data_source(str(source.parent)) == rm_data_source(str(source)) == source
    missing, out = tmp_path / "no_such_run", tmp_path / "rm"
    model = tmp_path / "model.bin"  # passes the CLI's path check; never reached
    model.write_text("garbage")
    assert main(["rm", "train", f"model={model}", f"records_from={missing}",
                 f"out_dir={out}"]) == 2  # fmt: skip
    assert f"records_from={missing}: no {RM_DATA} there" in capsys.readouterr().err
    assert not out.exists(), "nothing is written before the check"
    with pytest.raises(DataError, match=r"records_from=.*first/model: no rm_data\.json"):
        rm_data_source(str(tmp_path / "first" / "model"))


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
