"""reft.algos.ranking: the listwise loss against hand values and a float64 plain loop."""

from __future__ import annotations

import math

import pytest
import torch

from reft.algos.ranking import listwise_loss_sum


def _listwise_loop(scores, labels, groups) -> float:
    """The docstring's plain loop, the oracle (float64 Python floats)."""
    total = 0.0
    for g in set(groups):
        s = [scores[i] for i in range(len(scores)) if groups[i] == g]
        y = [labels[i] for i in range(len(scores)) if groups[i] == g]
        if 0 < sum(y) < len(y):
            mass = sum(math.exp(a) for a, b in zip(s, y, strict=True) if b) / sum(map(math.exp, s))
            total += -math.log(mass)
    return total


def test_listwise_loss_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 0.5, 0.2], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 1, 1])
    groups = torch.tensor([7, 7, 7, 3, 3])  # the second group has one label: adds nothing
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert listwise_loss_sum(scores, labels, groups).item() == pytest.approx(expected)
    two_right = torch.tensor([0.0, 0.0, math.log(2.0)], dtype=torch.float64)  # masses 1/4 1/4 1/2
    loss = listwise_loss_sum(two_right, torch.tensor([1, 1, 0]), torch.tensor([0, 0, 0]))
    assert loss.item() == pytest.approx(-math.log(0.5)), "the mass of ALL correct ones counts"


def test_listwise_loss_matches_the_plain_loop_in_float64():
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        n = int(torch.randint(1, 20, (1,), generator=generator))
        scores = torch.randn(n, generator=generator, dtype=torch.float64) * 5
        labels = torch.randint(0, 2, (n,), generator=generator)
        groups = torch.randint(0, 5, (n,), generator=generator) * 10  # ids need not be 0..G-1
        oracle = _listwise_loop(scores.tolist(), labels.tolist(), groups.tolist())
        result = listwise_loss_sum(scores, labels, groups)
        assert result.dtype == torch.float64
        assert result.item() == pytest.approx(oracle, rel=1e-12, abs=1e-12)


def test_listwise_loss_gradient_is_finite_and_zero_without_mixed_groups():
    scores = torch.tensor([500.0, -500.0, 1.0, 2.0], requires_grad=True)
    loss = listwise_loss_sum(scores, torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == pytest.approx(1000.0) and torch.isfinite(scores.grad).all()
    assert scores.grad.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])
    scores.grad = None
    single = listwise_loss_sum(scores, torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))
    single.backward()  # still part of the graph: a step of single-label groups runs
    assert single.item() == 0.0 and scores.grad.abs().sum() == 0
