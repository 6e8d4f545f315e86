"""pad == eos (Llama, SmolLM2, Qwen2 ... style) end to end: the EOS that ends a target or a response is
in the loss, the reward placement and the masks; the padding after it, made of the same id, never is.

Each check would fail if a mask were rebuilt from `ids != pad_token_id` (the EOS would leave the loss
and the reward would land one token early) or if padding were left in a mask (the reward would land on
the last padded column).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from reft.data.collate import pad_sft_batch
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.tokenize import IGNORE_INDEX, tokenize_sft
from reft.generation.backends import LocalBackend
from reft.generation.config import GenerationEngine, SamplingSettings
from reft.models.presets import build_tiny_model
from reft.models.value import VALUE_MODELS, FrozenReference
from reft.train.config import PPOConfig, Whitening
from reft.train.rollout import collect_experience
from reft.train.sft import token_nll_sum

STEPS = 12
EOS_STEP = 2
EXAMPLES = [
    Example("long", "Mia has 3 dollars and finds 4 more. How many dollars?", "7", AnswerKind.numeric,
            "synth", "Mia has 3 + 4 = 7 dollars."),
    Example("short", "Bo has 2 cats.", "2", AnswerKind.numeric, "synth", "2."),
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    """The tiny tokenizer with its EOS as pad token."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    return tokenizer


def _model(tokenizer, seed: int):
    """A micro Llama in eval mode, weights redrawn at std 0.5 (a fresh one repeats a single token)."""
    model = build_tiny_model("micro-llama", tokenizer, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


def test_sft_loss_counts_each_target_eos_and_no_padding(tokenizer):
    model = _model(tokenizer, seed=0)
    features, _ = tokenize_sft(EXAMPLES, tokenizer, CotKind.nl, max_length=256)
    assert len(features[0].input_ids) > len(features[1].input_ids), "the short one gets padded"
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        nll, count = token_nll_sum(model, pad_sft_batch(features, pad_token_id=eos))
        alone = [token_nll_sum(model, pad_sft_batch([item], pad_token_id=eos)) for item in features]
    targets = [sum(label != IGNORE_INDEX for label in item.labels) for item in features]
    assert all(item.labels[-1] == eos for item in features)
    assert count == sum(targets) == sum(c for _, c in alone), "every EOS counted, no padding"
    assert nll.item() == pytest.approx(sum(n.item() for n, _ in alone), rel=1e-5)


@dataclass
class FixedGrade:
    reward: float = 1.0
    correct: bool = True
    error: str | None = None


class FixedGrader:
    """Scores every response 1 and keeps the decoded texts it was given."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def grade(self, texts, golds):
        self.texts += texts
        return [FixedGrade() for _ in texts]


def _policy_that_stops_early(tokenizer):
    """A micro model whose argmax answer to the first example is EOS at step EOS_STEP, and to the
    second one never EOS within STEPS: the EOS output row (tied embeddings) becomes 1.1 x the row of
    the token it emitted at that step (the test asserts both outcomes)."""
    from reft.data.prompts import render_prompt
    from reft.data.tokenize import encode_prompt

    model = _model(tokenizer, seed=0)
    ids = encode_prompt(tokenizer, render_prompt(EXAMPLES[0].question))
    with torch.no_grad():
        for _ in range(EOS_STEP + 1):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        embedding = model.get_input_embeddings().weight
        embedding[tokenizer.eos_token_id] = 1.1 * embedding[ids[-1]]
    return model


def test_rollout_keeps_the_eos_in_masks_and_rewards_and_the_padding_out(tokenizer):
    config = PPOConfig(
        batch_size=2, mini_batch_size=2, micro_batch_size=2,
        sampling=SamplingSettings(top_k=1, max_new_tokens=STEPS), kl_coef=0.0, lam=1.0, whitening=Whitening.none,
    )  # fmt: skip  # top_k=1: argmax sampling; lam=1, no KL, no whitening: return = score up to it
    policy = _policy_that_stops_early(tokenizer)
    grader = FixedGrader()
    experience = collect_experience(
        EXAMPLES, actor_critic=VALUE_MODELS[config.value_model.value](policy, 0),
        reference=FrozenReference(_model(tokenizer, seed=1)),
        backend=LocalBackend(policy, GenerationEngine.reft), tokenizer=tokenizer, grader=grader,
        config=config, seed=0,
    )  # fmt: skip
    eos, length = tokenizer.eos_token_id, experience.response_length
    prompt_length = experience.sequences.shape[1] - length
    responses = experience.sequences[:, prompt_length:].tolist()
    ends = [row.index(eos) if eos in row else length - 1 for row in responses]
    assert (length, ends[0]) == (STEPS, EOS_STEP), "the first response stops early ..."
    assert all(token == eos for token in responses[0][EOS_STEP:]), "... and is padded with EOS ids"
    assert eos not in responses[1], "the second is cut at max_new_tokens: its score is on its end"
    for row, end in enumerate(ends):
        inside = torch.arange(length) <= end
        assert experience.response_mask[row].tolist() == inside.tolist()
        assert experience.attention_mask[row, prompt_length:].tolist() == inside.long().tolist()
        # The score sits on the EOS-emitting step: with gamma = lam = 1 and no KL every return
        # up to and including it is the score, and every later one is 0.
        assert torch.allclose(experience.returns[row, inside], torch.ones(end + 1))
        assert not experience.returns[row, ~inside].any()
        assert not experience.advantages[row, ~inside].any()
        assert not experience.kl[row, ~inside].any()
        assert experience.kl[row, inside].abs().sum() > 0, "policy and reference differ"
    assert tokenizer.eos_token not in grader.texts[0]
