"""Length buckets: the plan against its plain loop, and a bucketed PPO forward against the padded one
in float64 (outputs on response tokens, zeros past each bucket, and gradients), for the shared
trunk, the separate critic, GPT-2's absolute positions and the reference."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from reft.models.length_buckets import MIN_BUCKET_ROWS, plan_buckets, run_bucketed
from reft.models.presets import build_tiny_model
from reft.models.value import VALUE_MODELS, reference_logprobs

ROWS = 4 * MIN_BUCKET_ROWS + 5  # several buckets, one of them longer than the others


def _random_batch(rows: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """[prompt left-padded to P | response right-padded to T] of random lengths."""
    generator = torch.Generator().manual_seed(seed)
    prompt_len, response_len = 9, 7
    prompts = torch.randint(1, prompt_len + 1, (rows,), generator=generator)
    responses = torch.randint(1, response_len + 1, (rows,), generator=generator)
    ids = torch.randint(3, vocab, (rows, prompt_len + response_len), generator=generator)
    columns = torch.arange(prompt_len + response_len)
    mask = (columns >= prompt_len - prompts[:, None]) & (columns < prompt_len + responses[:, None])
    return ids.masked_fill(~mask, 0), mask.long(), response_len


def test_plan_follows_its_plain_loop():
    _, mask, length = _random_batch(ROWS, 50)
    prompt_len = mask.shape[1] - length
    prompt = mask[:, :prompt_len].sum(1).tolist()
    response = mask[:, prompt_len:].sum(1).tolist()
    buckets = plan_buckets(mask, length, max_buckets=8)
    assert len(buckets) == ROWS // MIN_BUCKET_ROWS
    order = sorted(range(ROWS), key=lambda i: (response[i], prompt[i]))
    assert torch.cat([b.rows for b in buckets]).tolist() == order
    for bucket in buckets:
        rows = bucket.rows.tolist()
        assert bucket.start == prompt_len - max(prompt[i] for i in rows)
        assert bucket.response_length == max(response[i] for i in rows)


@pytest.mark.parametrize("rows, max_buckets", [(ROWS, 1), (2 * MIN_BUCKET_ROWS - 1, 8)])
def test_one_bucket_is_the_batch_as_given(rows, max_buckets):
    _, mask, length = _random_batch(rows, 50)
    (bucket,) = plan_buckets(mask, length, max_buckets)
    assert bucket.rows.tolist() == list(range(rows))
    assert (bucket.start, bucket.response_length) == (0, length)
    calls = []
    run_bucketed(lambda *args: calls.append(args) or (None,), mask, mask, length, max_buckets)
    assert calls[0][0] is mask and calls[0][2] == length


def _gpt2(tokenizer):
    config = AutoConfig.for_model(
        "gpt2", vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize(
    "arch, kind",
    [("llama", "shared_trunk"), ("llama", "separate_critic"), ("gpt2", "shared_trunk")],
)
def test_bucketed_forward_equals_the_padded_one(tiny_tokenizer, arch, kind):
    """Float64: log-probs, values and entropies on every response token within 1e-12, exactly 0
    past a bucket's longest response, and the gradient of a masked loss within 1e-10."""
    policy = build_tiny_model("micro-llama", tiny_tokenizer) if arch == "llama" else _gpt2(
        tiny_tokenizer
    )  # fmt: skip
    model = VALUE_MODELS[kind](policy.double(), 0).double()
    ids, mask, length = _random_batch(ROWS, len(tiny_tokenizer))
    response_mask = mask[:, -length:].bool()
    results = []
    for buckets in (1, 8):
        model.zero_grad()
        out = model(ids, mask, length, with_entropy=True, buckets=buckets)
        loss = ((out.logprobs + out.values.square()) * response_mask).sum()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out, grads))
    (padded, padded_grads), (bucketed, bucketed_grads) = results
    for name in ("logprobs", "values", "entropy"):
        a, b = getattr(padded, name), getattr(bucketed, name)
        assert torch.allclose(a[response_mask], b[response_mask], rtol=0, atol=1e-12), name
    past = torch.zeros_like(response_mask)
    for bucket in plan_buckets(mask, length, 8):
        past[bucket.rows, bucket.response_length :] = True
    assert past.any() and torch.all(bucketed.logprobs[past] == 0)
    assert len(padded_grads) == len(bucketed_grads)
    for a, b in zip(padded_grads, bucketed_grads, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_bucketed_reference_equals_the_padded_one(tiny_tokenizer):
    model = build_tiny_model("micro-llama", tiny_tokenizer).double()
    ids, mask, length = _random_batch(ROWS, len(tiny_tokenizer), seed=1)
    response_mask = mask[:, -length:].bool()
    padded = reference_logprobs(model, ids, mask, length)
    bucketed = reference_logprobs(model, ids, mask, length, buckets=8)
    assert torch.allclose(padded[response_mask], bucketed[response_mask], rtol=0, atol=1e-12)
    assert not bucketed.requires_grad
