"""KL estimators: hand values, sign properties, and Monte-Carlo agreement with the exact KL."""

import math

import pytest
import torch

from reft.algos.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3

LOGP = torch.tensor([[-1.0, -2.0, -0.3]], dtype=torch.float64)
REF = torch.tensor([[-1.5, -1.0, -0.3]], dtype=torch.float64)


def test_hand_values():
    # k1 = logp - ref: -1 + 1.5 = 0.5; -2 + 1 = -1; equal -> 0
    torch.testing.assert_close(
        kl_k1(LOGP, REF), torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    )
    # k2 = (logp - ref)^2 / 2: 0.125, 0.5, 0
    torch.testing.assert_close(
        kl_k2(LOGP, REF), torch.tensor([[0.125, 0.5, 0.0]], dtype=torch.float64)
    )
    # k3 with x = ref - logp: x = -0.5 -> e^-0.5 + 0.5 - 1 = 0.1065306597
    #                         x = 1   -> e^1 - 1 - 1 = 0.7182818285;  x = 0 -> 0
    expected_k3 = [[math.exp(-0.5) + 0.5 - 1.0, math.e - 2.0, 0.0]]
    torch.testing.assert_close(kl_k3(LOGP, REF), torch.tensor(expected_k3, dtype=torch.float64))
    assert kl_k3(LOGP, REF)[0, 0].item() == pytest.approx(0.1065306597, abs=1e-10)


def test_no_coefficient_and_direction():
    # Scaling the log-ratio scales k1 linearly: no hidden coefficient, and the sign follows logp - ref.
    assert kl_k1(torch.tensor([0.0]), torch.tensor([-2.0])).item() == 2.0
    assert kl_k1(torch.tensor([-2.0]), torch.tensor([0.0])).item() == -2.0


def test_k2_k3_nonnegative_k1_signed():
    gen = torch.Generator().manual_seed(0)
    logp = -5.0 * torch.rand(64, 33, generator=gen, dtype=torch.float64)
    ref = -5.0 * torch.rand(64, 33, generator=gen, dtype=torch.float64)
    assert (kl_k3(logp, ref) >= 0).all()
    assert (kl_k2(logp, ref) >= 0).all()
    assert (kl_k1(logp, ref) < 0).any() and (kl_k1(logp, ref) > 0).any()
    for estimator in (kl_k1, kl_k2, kl_k3):
        assert estimator(logp, logp).abs().max().item() == 0.0


def test_k3_precise_near_ratio_one():
    # For tiny x = ref - logp, k3 ~ x^2 / 2; expm1 keeps this where exp(x) - 1 - x would be 0.
    logp = torch.tensor([0.0], dtype=torch.float32)
    ref = torch.tensor([1e-4], dtype=torch.float32)
    assert kl_k3(logp, ref).item() == pytest.approx(0.5e-8, rel=1e-3)


def test_k1_and_k3_unbiased_for_kl_policy_to_reference():
    # Sample tokens from the policy q; the per-token means estimate KL(q || p) = sum q log(q / p).
    gen = torch.Generator().manual_seed(0)
    q_logits = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    p_logits = torch.tensor([0.0, 0.5, 0.0, -1.0], dtype=torch.float64)
    log_q, log_p = torch.log_softmax(q_logits, 0), torch.log_softmax(p_logits, 0)
    exact = (log_q.exp() * (log_q - log_p)).sum().item()
    tokens = torch.multinomial(log_q.exp(), 200_000, replacement=True, generator=gen)
    k1 = kl_k1(log_q[tokens], log_p[tokens]).mean().item()
    k3 = kl_k3(log_q[tokens], log_p[tokens]).mean().item()
    assert k1 == pytest.approx(exact, abs=0.01)
    assert k3 == pytest.approx(exact, abs=0.01)
    # Reversing the arguments estimates a different quantity (sanity check of the direction).
    assert kl_k3(log_p[tokens], log_q[tokens]).mean().item() != pytest.approx(exact, abs=0.05)


def test_registry():
    assert {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3} == KL_ESTIMATORS
