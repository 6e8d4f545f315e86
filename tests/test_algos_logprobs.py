"""Gathered log-probabilities and entropies from logits."""

import math

import pytest
import torch

from reft.algos.logprobs import entropy_from_logits, logprobs_from_logits

F64 = torch.float64


def test_hand_values():
    # logits (0, ln 3) -> softmax (1/4, 3/4)
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]], dtype=F64)
    labels = torch.tensor([[1, 0]])
    torch.testing.assert_close(
        logprobs_from_logits(logits, labels),
        torch.tensor([[math.log(0.75), math.log(0.25)]], dtype=F64),
    )
    # H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446
    assert entropy_from_logits(logits)[0, 0].item() == pytest.approx(0.5623351446, abs=1e-9)


def test_matches_log_softmax_gather_and_shift_invariance():
    gen = torch.Generator().manual_seed(0)
    logits = 4.0 * torch.randn(3, 7, 50, generator=gen, dtype=F64)
    labels = torch.randint(0, 50, (3, 7), generator=gen)
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(
        logprobs_from_logits(logits, labels), expected, rtol=1e-12, atol=1e-12
    )
    shifted = logits + 123.0 * torch.randn(3, 7, 1, generator=gen, dtype=F64)
    torch.testing.assert_close(
        logprobs_from_logits(shifted, labels), expected, rtol=1e-9, atol=1e-9
    )
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(
        entropy_from_logits(logits), -(probs * probs.log()).sum(-1), rtol=1e-12, atol=1e-12
    )


def test_large_logits_stay_finite():
    logits = torch.tensor([[[1000.0, 0.0, -1000.0]]])
    out = logprobs_from_logits(logits, torch.tensor([[1]]))
    assert out.item() == pytest.approx(-1000.0)
    assert entropy_from_logits(logits).item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_bounds():
    uniform = torch.zeros(2, 3, 10)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.full((2, 3), math.log(10.0)))


def test_bfloat16_logits_computed_in_float32():
    gen = torch.Generator().manual_seed(1)
    logits = (3.0 * torch.randn(2, 5, 3000, generator=gen)).to(torch.bfloat16)
    labels = torch.randint(0, 3000, (2, 5), generator=gen)
    out = logprobs_from_logits(logits, labels)
    assert out.dtype == torch.float32
    exact = logprobs_from_logits(logits.to(F64), labels)
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=1e-5)
    assert entropy_from_logits(logits).dtype == torch.float32


def test_gradient_is_onehot_minus_softmax():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 2, 6, generator=gen, dtype=F64, requires_grad=True)
    labels = torch.tensor([[3, 0]])
    logprobs_from_logits(logits, labels).sum().backward()
    expected = torch.nn.functional.one_hot(labels, 6).to(F64) - torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-12, atol=1e-12)
