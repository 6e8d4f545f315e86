"""Tokenisation for SFT: prompt masked, EOS appended and kept in the loss, over-length counted."""

from __future__ import annotations

import torch

from reft.data.collate import pad_prompts_left, pad_sft_batch
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.prompts import render_prompt, render_target
from reft.data.tokenize import IGNORE_INDEX, OverlengthPolicy, SFTFeatures, tokenize_sft

EXAMPLE = Example(
    "synth_0", "Mia has 3 dollars. How many?", "3", AnswerKind.numeric, "synth", "Mia has 3."
)


def test_prompt_tokens_are_masked_and_eos_is_the_last_label(tiny_tokenizer):
    [features], report = tokenize_sft([EXAMPLE], tiny_tokenizer, CotKind.nl, max_length=512)
    prompt_ids = tiny_tokenizer.encode(render_prompt(EXAMPLE.question), add_special_tokens=True)
    target_ids = tiny_tokenizer.encode(render_target(EXAMPLE, CotKind.nl), add_special_tokens=False)
    assert features.input_ids == prompt_ids + target_ids + [tiny_tokenizer.eos_token_id]
    assert features.labels == [IGNORE_INDEX] * len(prompt_ids) + target_ids + [
        tiny_tokenizer.eos_token_id
    ]
    assert tiny_tokenizer.decode(features.input_ids, skip_special_tokens=True) == (
        render_prompt(EXAMPLE.question) + render_target(EXAMPLE, CotKind.nl)
    )
    assert (report.total, report.kept, report.skipped_overlength, report.truncated) == (1, 1, 0, 0)


def test_eos_stays_in_the_loss_when_pad_is_eos(tiny_tokenizer):
    """With pad == eos (Llama/SmolLM style) the final EOS is a label, padding after it is not."""
    short = Example("a", "q", "1", AnswerKind.numeric, "synth", "x")
    features, _ = tokenize_sft([EXAMPLE, short], tiny_tokenizer, CotKind.nl, max_length=512)
    eos = tiny_tokenizer.eos_token_id
    batch = pad_sft_batch(features, pad_token_id=eos)
    row = batch["labels"][1]
    length = len(features[1].input_ids)
    assert row[length - 1].item() == eos
    assert (row[length:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][1].sum().item() == length


def test_overlength_examples_are_skipped_or_truncated_and_counted(tiny_tokenizer):
    long = Example("long", "q " * 50, "1", AnswerKind.numeric, "synth", "step " * 50)
    features, report = tokenize_sft([EXAMPLE, long], tiny_tokenizer, CotKind.nl, max_length=60)
    assert [f.example_id for f in features] == ["synth_0"]
    assert (report.kept, report.skipped_overlength, report.truncated) == (1, 1, 0)
    assert "1 skipped as over-length" in report.summary()

    prompt_len = len(tiny_tokenizer.encode(render_prompt(long.question)))
    features, report = tokenize_sft(
        [long],
        tiny_tokenizer,
        CotKind.nl,
        max_length=prompt_len + 5,
        overlength=OverlengthPolicy.truncate,
    )
    assert (report.kept, report.truncated) == (1, 1)
    assert len(features[0].input_ids) == prompt_len + 5
    assert features[0].labels[-1] != tiny_tokenizer.eos_token_id


def test_prompt_longer_than_max_length_is_skipped_even_when_truncating(tiny_tokenizer):
    long = Example("long", "q " * 100, "1", AnswerKind.numeric, "synth", "x")
    _, report = tokenize_sft([long], tiny_tokenizer, CotKind.nl, 20, OverlengthPolicy.truncate)
    assert (report.kept, report.skipped_overlength) == (0, 1)


def test_padding_directions():
    features = [SFTFeatures("a", [5, 6, 7], [-100, 6, 7]), SFTFeatures("b", [8], [8])]
    batch = pad_sft_batch(features, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    prompts = pad_prompts_left([[1, 2, 3], [4]], pad_token_id=9)
    assert torch.equal(prompts["input_ids"], torch.tensor([[1, 2, 3], [9, 9, 4]]))
    assert prompts["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
