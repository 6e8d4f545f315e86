"""Self-training: the filtering and de-duplication rules, verbatim targets, the online loss mixing (its
value, its no-correct-sample case, and the micro-batched gradients), and both modes through the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from reft.cli import main
from reft.config import ConfigError, load_config
from reft.data.collate import pad_sft_batch
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.prompts import program_header, render_prompt
from reft.data.tokenize import IGNORE_INDEX, OverlengthPolicy, SFTFeatures
from reft.evaluate.predict import GradedCompletion, QuestionResult
from reft.generation.engine import GeneratedBatch
from reft.metrics import read_metrics
from reft.train.config import SelfTrainConfig
from reft.train.self_train import (
    SELF_TRAINING_DATA,
    SelfTrainingRecord,
    mixed_nll,
    mixed_nll_scales,
    sample_features,
    select_self_training_data,
    tokenize_records,
)
from reft.train.solution_sampling import dedup_key, first_unique

GOLD_COT = "Tom has 3.\nTom has 3 + 4 = 7."


def _graded(text: str, correct: bool) -> GradedCompletion:
    return GradedCompletion(text, "7" if correct else "8", correct, float(correct), None, 9, True)


def _config(**overrides) -> SelfTrainConfig:
    items = [f"{key}={value}" for key, value in overrides.items()]
    return load_config(SelfTrainConfig, None, items)


def test_first_unique_collapses_whitespace_keeps_order_and_limit():
    texts = ["a  b", "c", "a b", " a\nb ", "d", "c", "e"]
    assert dedup_key("  x \n\t y ") == "x y"
    assert first_unique(texts) == [0, 1, 4, 6]
    assert first_unique(texts, limit=2) == [0, 1]
    assert first_unique([]) == []


def test_offline_keeps_correct_unique_samples_capped_plus_gold_unless_already_sampled():
    examples = [
        Example("q1", "Tom has 3. He gets 4. How many?", "7", AnswerKind.numeric, "t", GOLD_COT),
        Example("q2", "Ann has 5. She gets 2. How many?", "7", AnswerKind.numeric, "t", "Ann..."),
        Example("q3", "Bo has 1. He gets 6. How many?", "7", AnswerKind.numeric, "t", "Bo..."),
    ]
    gold_q1 = f"{GOLD_COT}\nTherefore, the answer is: 7"
    results = [
        QuestionResult("q1", examples[0].question, "7", [
            _graded("A\nTherefore, the answer is: 7.0", True),
            _graded("wrong\nTherefore, the answer is: 8", False),
            _graded("A \nTherefore, the answer is: 7.0", True),  # whitespace duplicate of the first
            _graded(f" {gold_q1}\n", True),  # the gold text itself: gold is not added again
            _graded("B\nTherefore, the answer is: 7", True),  # over the cap of 2
        ]),
        QuestionResult("q2", examples[1].question, "7", [_graded("x", False)] * 3),
        QuestionResult("q3", examples[2].question, "7", [_graded("C\nTherefore, the answer is: 7", True)]),
    ]  # fmt: skip
    records, counts = select_self_training_data(
        results, examples, _config(max_unique_per_question=2)
    )
    assert [(r.id, r.target, r.source) for r in records] == [
        ("q1", "A\nTherefore, the answer is: 7.0", "sample"),  # verbatim: the model's "7.0" stays
        ("q1", gold_q1, "sample"),
        ("q2", "Ann...\nTherefore, the answer is: 7", "gold"),
        ("q3", "C\nTherefore, the answer is: 7", "sample"),
        ("q3", "Bo...\nTherefore, the answer is: 7", "gold"),
    ]
    assert counts == {
        "questions": 3, "sampled": 9, "correct": 5, "unique_correct": 4, "kept_samples": 3,
        "gold_added": 2, "records": 5, "questions_with_kept_samples": 2,
        "kept_samples_per_question": {"0": 1, "1": 1, "2": 1},
    }  # fmt: skip

    no_gold, _ = select_self_training_data(results, examples, _config(keep_gold=False))
    assert [r.source for r in no_gold] == ["sample"] * 4, "no cap with 10: A, gold text, B, C"


def test_offline_pcot_targets_are_full_programs():
    question = "Tom has 3. He gets 4. How many?"
    gold = program_header(question) + "    return 3 + 4"
    example = Example("q", question, "7", AnswerKind.numeric, "t", gold)
    body = "    total = 3 + 4\n    return total\n"
    results = [QuestionResult("q", question, "7", [_graded(body, True)])]
    records, _ = select_self_training_data(results, [example], _config(cot="python"))
    assert [r.target for r in records] == [program_header(question) + body.rstrip(), gold]


def test_records_are_tokenised_as_prompt_then_verbatim_target_and_eos(tiny_tokenizer):
    record = SelfTrainingRecord(
        "q", "Tom has 3.", "Tom has 3.\nTherefore, the answer is: 3.0", "sample"
    )
    features, report = tokenize_records(
        [record], tiny_tokenizer, CotKind.nl, 512, OverlengthPolicy.skip
    )
    (feature,) = features
    prompt_len = len(tiny_tokenizer.encode(render_prompt(record.question)))
    assert feature.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    target = feature.labels[prompt_len:]
    assert target[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(target[:-1]) == record.target
    assert report.kept == 1
    short, report = tokenize_records(
        [record], tiny_tokenizer, CotKind.nl, prompt_len + 2, OverlengthPolicy.skip
    )
    assert short == [] and report.skipped_overlength == 1


def test_mixed_nll_values_and_the_step_without_correct_samples():
    assert mixed_nll(6.0, 3, 10.0, 5) == pytest.approx(0.5 * 2 + 0.5 * 2)
    assert mixed_nll(6.0, 3, 10.0, 5, own_weight=0.25, gold_weight=1.0) == pytest.approx(2.5)
    # No correct sample: only the gold half, NOT renormalised (the reference adds gold NLL / 2).
    assert mixed_nll(0.0, 0, 10.0, 5) == pytest.approx(1.0)
    assert mixed_nll_scales(0, 5) == (0.0, 0.1)
    # Linear in the sums: micro-batch shares add up to the step's loss.
    parts = [mixed_nll(a, 3, b, 5) for a, b in [(1.0, 4.0), (5.0, 6.0)]]
    assert sum(parts) == pytest.approx(mixed_nll(6.0, 3, 10.0, 5))


def test_online_features_are_the_exact_sampled_ids():
    pad, eos = 0, 9
    generated = GeneratedBatch(
        prompt_ids=torch.tensor([[pad, 5, 6], [pad, 5, 6], [7, 8, 6], [7, 8, 6]]),
        prompt_mask=torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]]),
        response_ids=torch.tensor([[1, eos, pad], [2, 3, 4], [3, eos, pad], [4, 4, eos]]),
        response_mask=torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]]).bool(),
        finished=torch.tensor([True, False, True, True]),
        num_samples=2,
    )
    features = sample_features(generated, [0, 1, 3], ["a", "b"])
    assert features == [
        SFTFeatures("a", [5, 6, 1, eos], [IGNORE_INDEX] * 2 + [1, eos]),
        SFTFeatures("a", [5, 6, 2, 3, 4], [IGNORE_INDEX] * 2 + [2, 3, 4]),  # cut: no EOS
        SFTFeatures("b", [7, 8, 6, 4, 4, eos], [IGNORE_INDEX] * 3 + [4, 4, eos]),
    ]


def test_micro_batched_online_update_has_the_gradient_of_mixed_nll(tiny_tokenizer, tmp_path):
    """Own samples then gold, one sequence per micro-batch, with mixed_nll_scales: the same gradient as
    autograd through mixed_nll of the whole batch."""
    from reft.models.presets import build_tiny_model
    from reft.train.loop import TrainingRun
    from reft.train.sft import backward_micro_batches, sft_nll_fn, token_nll_sum

    config = _config(mode="online", out_dir=str(tmp_path), micro_batch_size=1, batch_size=4)
    run = TrainingRun(config, stage="test")
    model = build_tiny_model("micro-llama", tiny_tokenizer, seed=0)
    run.prepare(model, tiny_tokenizer, total_steps=1, steps_per_epoch=1)
    rng = random.Random(0)

    def feature(prompt: int, target: int) -> SFTFeatures:
        ids = [rng.randrange(3, 300) for _ in range(prompt + target)]
        return SFTFeatures("x", ids, [IGNORE_INDEX] * prompt + ids[prompt:])

    own = [feature(4, 3), feature(2, 6)]
    gold = [feature(5, 2), feature(3, 5), feature(3, 1)]
    own_tokens, gold_tokens = 9, 8
    own_scale, gold_scale = mixed_nll_scales(own_tokens, gold_tokens, 0.3, 0.7)
    backward_micro_batches(run, own, sft_nll_fn(run), own_scale, sync=False)
    backward_micro_batches(run, gold, sft_nll_fn(run), gold_scale)
    micro = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    own_sum, counted_own = token_nll_sum(model, pad_sft_batch(own, tiny_tokenizer.pad_token_id))
    gold_sum, counted_gold = token_nll_sum(model, pad_sft_batch(gold, tiny_tokenizer.pad_token_id))
    assert (counted_own, counted_gold) == (own_tokens, gold_tokens)
    mixed_nll(own_sum, own_tokens, gold_sum, gold_tokens, 0.3, 0.7).backward()
    for got, want in zip(micro, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sample_model": "null", "model": "preset:micro-llama"}, "untrained preset"),
        ({"own_weight": -1}, "own_weight"),
        ({"own_weight": 0, "gold_weight": 0}, "must be > 0"),
        ({"mode": "sometimes"}, "offline, online"),
        ({"mode": "online", "sample_model": "runs/warmup"}, "unset sample_model"),
    ],
)
def test_invalid_self_train_configs_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SelfTrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_synth_recipes_load(mode):
    recipe = (
        Path(__file__).resolve().parents[1] / "configs" / "synth" / f"{mode}_self_training.yaml"
    )
    config = load_config(SelfTrainConfig, recipe)
    assert config.mode.value == mode and config.train_data == "synth:train"


# ---- end to end through the CLI on a toy task ----------------------------------------------------

GOLD_DIGIT = "7"


@pytest.fixture(scope="module")
def toy(tmp_path_factory, digit_game) -> dict[str, Path]:
    """SFT teaches "pick a random digit"; the self-training data's gold answer is always 7, so about
    one sample in ten is correct."""
    root = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    sft_data = digit_game(root / "sft.json", [str(rng.randint(0, 9)) for _ in range(256)])
    warmup = root / "warmup"
    assert main(["sft", "model=preset:micro-llama", f"train_data={sft_data}", "dev_data=null",
                 f"out_dir={warmup}", "batch_size=32", "micro_batch_size=32", "lr=3e-3",
                 "max_steps=120", "preset_vocab_size=300", "seed=0"]) == 0  # fmt: skip
    return {
        "train": digit_game(root / "train.json", [GOLD_DIGIT] * 64),
        "sft": sft_data,
        "warmup": warmup / "final",
    }


TOY = ["batch_size=16", "micro_batch_size=16", "max_new_tokens=16", "eval_max_new_tokens=16",
       "preset_vocab_size=300", "log_every=1"]  # fmt: skip


@pytest.mark.slow
def test_offline_self_training_writes_filtered_data_then_trains(toy, tmp_path):
    out = tmp_path / "offline"
    assert main(["self-train", "--mode", "offline", f"model={toy['warmup']}", f"train_data={toy['train']}",
                 "dev_data=null", "dev_holdout=16", f"out_dir={out}", "num_samples=8", "lr=1e-3",
                 "epochs=1", *TOY]) == 0  # fmt: skip
    data = json.loads((out / SELF_TRAINING_DATA).read_text())
    counts = data["counts"]
    assert counts["questions"] == 48 and counts["sampled"] == 48 * 8
    assert 0 < counts["correct"] < counts["sampled"], "about one sample in ten picks 7"
    gold = "I pick one.\nTherefore, the answer is: 7"
    by_question: dict[str, list[dict]] = {}
    for record in data["records"]:
        by_question.setdefault(record["id"], []).append(record)
    for records in by_question.values():
        samples = [dedup_key(r["target"]) for r in records if r["source"] == "sample"]
        assert all(key.endswith("the answer is: 7") for key in samples), "only correct samples"
        assert len(set(samples)) == len(samples), "no duplicates within a question"
        has_gold = any(r["source"] == "gold" for r in records)
        assert has_gold == (dedup_key(gold) not in samples), "gold added unless already sampled"
    sources = [r["source"] for r in data["records"]]
    assert (sources.count("sample"), sources.count("gold")) == (
        counts["kept_samples"], counts["gold_added"]
    )  # fmt: skip
    assert sum(counts["kept_samples_per_question"].values()) == 48
    train = read_metrics(out, "train")
    assert len(train) == counts["records"] // 16
    assert (out / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_online_self_training_learns_from_its_correct_samples(toy, tmp_path):
    out = tmp_path / "online"
    assert main(["self-train", "--mode", "online", f"model={toy['warmup']}", f"train_data={toy['train']}",
                 "dev_data=null", f"out_dir={out}", "max_steps=12", "lr=2e-3", *TOY]) == 0  # fmt: skip
    train = read_metrics(out, "train")
    assert [r["step"] for r in train] == list(range(1, 13))
    assert {"loss", "own_nll", "gold_nll", "own_samples", "reward", "accuracy", "grad_norm",
            "response_length", "time_rollout", "time_update"} <= set(train[0])  # fmt: skip
    first = sum(r["accuracy"] for r in train[:3]) / 3
    last = sum(r["accuracy"] for r in train[-3:]) / 3
    assert first < 0.4 and last > first + 0.3, f"accuracy {first:.2f} -> {last:.2f}"
    steps_without_samples = [r for r in train if r["own_samples"] == 0]
    assert all(r["own_nll"] == 0.0 for r in steps_without_samples)
