"""Logging diagnostics: approx KL, clip fractions, explained variance."""

import math

import pytest
import torch

from reft.algos.losses import ppo_policy_loss
from reft.algos.stats import (
    approx_kl_k1,
    approx_kl_k3,
    clip_fraction,
    explained_variance,
    explained_variance_over_processes,
    value_clip_fraction,
)

F64 = torch.float64


def test_approx_kl_hand_values():
    old = torch.tensor([[-1.0, -2.0, 5.0]], dtype=F64)
    new = torch.tensor([[-1.5, -1.0, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, False]])
    # k1 = mean(old - new) = mean(0.5, -1.0) = -0.25
    assert approx_kl_k1(new, old, mask).item() == pytest.approx(-0.25)
    # log ratio = new - old = -0.5, 1.0 -> k3 = (e^-0.5 - 1 + 0.5, e - 1 - 1), mean 0.4124062441
    expected_k3 = ((math.exp(-0.5) - 0.5) + (math.e - 2.0)) / 2
    assert approx_kl_k3(new, old, mask).item() == pytest.approx(expected_k3)
    assert approx_kl_k3(new, old, mask).item() == pytest.approx(0.4124062441, abs=1e-9)
    assert approx_kl_k1(old, old, mask).item() == 0.0
    assert approx_kl_k3(old, old, mask).item() == 0.0


def test_clip_fraction_hand_values():
    # Same five tokens as test_algos_losses: tokens 1 and 2 are clipped, 0 ties, 3 and 4 are not.
    logprobs = torch.tensor([[math.log(r) for r in (1.0, 1.5, 0.5, 1.5, 0.5)]], dtype=F64)
    old = torch.zeros(1, 5, dtype=F64)
    adv = torch.tensor([[2.0, 1.0, -1.0, -1.0, 1.0]], dtype=F64)
    all_tokens = torch.ones(1, 5, dtype=torch.bool)
    assert clip_fraction(logprobs, old, adv, all_tokens, 0.2).item() == pytest.approx(2 / 5)
    without_token_1 = torch.tensor([[True, False, True, True, True]])
    assert clip_fraction(logprobs, old, adv, without_token_1, 0.2).item() == pytest.approx(1 / 4)


def test_clip_fraction_is_the_zero_gradient_fraction():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(6, 10, generator=gen, dtype=F64)
    logprobs = (old + 0.4 * torch.randn(6, 10, generator=gen, dtype=F64)).requires_grad_()
    adv = torch.randn(6, 10, generator=gen, dtype=F64)
    mask = torch.rand(6, 10, generator=gen) < 0.8
    ppo_policy_loss(logprobs, old, adv, mask, 0.2).sum().backward()
    zero_grad = ((logprobs.grad == 0) & mask).sum().item() / mask.sum().item()
    fraction = clip_fraction(logprobs.detach(), old, adv, mask, 0.2).item()
    assert 0.0 < fraction < 1.0
    assert fraction == pytest.approx(zero_grad)


def test_value_clip_fraction_hand_values():
    # from test_algos_losses: tokens 0 and 2 clipped, 1 equal, 3 unclipped -> 2 / 4
    values = torch.tensor([[0.5, 0.1, -0.5, 0.5]], dtype=F64)
    returns = torch.tensor([[1.0, 1.0, -1.0, 0.0]], dtype=F64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert (
        value_clip_fraction(values, torch.zeros(1, 4, dtype=F64), returns, mask, 0.2).item() == 0.5
    )


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 50.0]], dtype=F64)
    mask = torch.tensor([[True, True, True, False]])
    # perfect predictions -> 1 (the masked 50 with a wrong prediction is ignored)
    assert (
        explained_variance(torch.tensor([[1.0, 2.0, 3.0, 0.0]], dtype=F64), returns, mask).item()
        == 1.0
    )
    # predicting the mean 2 -> residual variance = return variance -> 0
    assert explained_variance(
        torch.full((1, 4), 2.0, dtype=F64), returns, mask
    ).item() == pytest.approx(0.0)
    # residuals (0, 0, 1): biased var 2/9; returns var 2/3 -> 1 - (2/9) / (2/3) = 2/3
    values = torch.tensor([[1.0, 2.0, 2.0, 0.0]], dtype=F64)
    assert explained_variance(values, returns, mask).item() == pytest.approx(2.0 / 3.0)
    # worse than the mean is negative and not truncated at -1
    bad = torch.tensor([[5.0, -3.0, 9.0, 0.0]], dtype=F64)
    assert explained_variance(bad, returns, mask).item() < -1.0
    # constant returns: undefined -> NaN
    flat = torch.ones(1, 4, dtype=F64)
    assert math.isnan(explained_variance(flat * 0.5, flat, mask).item())


def test_stats_carry_no_gradient():
    logprobs = torch.zeros(2, 3, requires_grad=True)
    old = torch.full((2, 3), -0.1)
    mask = torch.ones(2, 3, dtype=torch.bool)
    for value in (approx_kl_k1(logprobs, old, mask), approx_kl_k3(logprobs, old, mask)):
        assert value.dim() == 0 and not value.requires_grad


def test_explained_variance_over_processes_pools_every_process_tokens():
    """Two processes' shards (different lengths and masks) pooled through the five sums equal the
    plain loop over all their response tokens, and `explained_variance` of the concatenation."""
    generator = torch.Generator().manual_seed(3)
    shards = []
    for rows, length in ((3, 5), (2, 5)):
        values = torch.randn(rows, length, generator=generator, dtype=F64)
        returns = values + 0.5 * torch.randn(rows, length, generator=generator, dtype=F64)
        mask = torch.rand(rows, length, generator=generator) > 0.3
        shards.append((values, returns, mask))
    per_process = []
    for values, returns, mask in shards:  # each process's sums, as the all-reduce would see them
        explained_variance_over_processes(
            values, returns, mask, lambda s: per_process.append(s) or s
        )
    total = torch.stack(per_process).sum(dim=0)
    pooled = [explained_variance_over_processes(v, r, m, lambda _s: total) for v, r, m in shards]
    r = [float(ret[b][t]) for v, ret, m in shards for b in range(m.shape[0])
         for t in range(m.shape[1]) if m[b][t]]  # fmt: skip
    e = [float(ret[b][t] - v[b][t]) for v, ret, m in shards for b in range(m.shape[0])
         for t in range(m.shape[1]) if m[b][t]]  # fmt: skip

    def var(x):
        return sum(xi * xi for xi in x) / len(x) - (sum(x) / len(x)) ** 2

    assert pooled[0] == pooled[1]
    assert pooled[0] == pytest.approx(1 - var(e) / var(r), abs=1e-12)
    concatenated = [torch.cat(parts) for parts in zip(*shards, strict=True)]
    assert pooled[0] == pytest.approx(explained_variance(*concatenated).item(), abs=1e-12)
    one = shards[0]
    alone = explained_variance_over_processes(*one, lambda s: s)
    assert alone == pytest.approx(explained_variance(*one).item(), abs=1e-12)
    constant = torch.ones(2, 3, dtype=F64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert math.isnan(explained_variance_over_processes(constant, constant, mask, lambda s: s))
