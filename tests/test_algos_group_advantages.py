"""Critic-free group advantages: hand values, float64 plain-loop oracles (the loops written in the
docstrings), groups identified by id (interleaved, shuffled, split across micro-batches), groups of
size 1, all-equal groups (exactly 0, never NaN), and REINFORCE++'s returns."""

import math
from fractions import Fraction

import pytest
import torch

from reft.algos.advantages import discounted_returns
from reft.algos.group_advantages import (
    GROUP_ESTIMATORS,
    GRPO_EPS,
    dr_grpo_advantages,
    group_mean_std,
    grpo_advantages,
    reinforce_pp_baseline_scores,
    reinforce_pp_returns,
    rloo_advantages,
    sequence_to_tokens,
)
from reft.algos.shaping import kl_penalized_rewards

F64 = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}


# ---- plain-loop oracles -------------------------------------------------------------------------
# The docstrings' loops over the float64 inputs, with sums and means in exact rationals (Fraction):
# stricter than a float loop, and an all-equal group really has mean == value and std == 0 (a float
# loop gets 3 * 0.1 / 3 != 0.1, a 1e-17 std, and then (r - mean) / std of order 1 when eps = 0).


def _mean_std_size_oracle(scores, ids):
    means, stds, sizes = [], [], []
    for i in range(len(scores)):
        members = [Fraction(scores[j]) for j in range(len(scores)) if ids[j] == ids[i]]
        n = len(members)
        mean = sum(members) / n
        var = sum((x - mean) ** 2 for x in members) / (n - 1) if n > 1 else Fraction(0)
        means.append(mean)
        stds.append(math.sqrt(var))
        sizes.append(n)
    return means, stds, sizes


def _grpo_oracle(scores, ids, scale_by_std=True, eps=GRPO_EPS):
    means, stds, _ = _mean_std_size_oracle(scores, ids)
    out = []
    for r, mean, std in zip(scores, means, stds, strict=True):
        centred = float(Fraction(r) - mean)
        if not scale_by_std:
            out.append(centred)
        else:
            out.append(centred / (std + eps) if std > 0 else 0.0)
    return torch.tensor(out, dtype=F64)


def _rloo_oracle(scores, ids):
    out = []
    for i in range(len(scores)):
        others = [Fraction(scores[j]) for j in range(len(scores)) if j != i and ids[j] == ids[i]]
        out.append(float(Fraction(scores[i]) - sum(others) / len(others)) if others else 0.0)
    return torch.tensor(out, dtype=F64)


def _returns_oracle(rewards, mask, gamma):
    out = [[0.0] * len(rewards[0]) for _ in rewards]
    for b in range(len(rewards)):
        running = 0.0
        for t in reversed(range(len(rewards[0]))):
            if mask[b][t]:
                running = rewards[b][t] + gamma * running
                out[b][t] = running
    return torch.tensor(out, dtype=F64)


# ---- a batch with every kind of group -----------------------------------------------------------


def _random_batch(seed: int):
    """Scores (N,) float64 and ids (N,) int64: 0/0.1/1 rewards, continuous scores, a singleton,
    all-equal groups (incl. 0.1, whose float sum is inexact), sparse ids, shuffled positions."""
    gen = torch.Generator().manual_seed(seed)
    groups = []
    for gid in (7, 1000003, -4, 12):  # 0/0.1/1 rewards, size 2..8
        size = int(torch.randint(2, 9, (1,), generator=gen))
        picks = torch.randint(0, 3, (size,), generator=gen)
        groups.append((gid, torch.tensor([0.0, 0.1, 1.0], dtype=F64)[picks]))
    groups.append((3, torch.randn(5, generator=gen, dtype=F64)))  # continuous
    groups.append((99, torch.tensor([0.7], dtype=F64)))  # size 1
    groups.append((41, torch.full((3,), 0.1, dtype=F64)))  # all-equal, inexact sum
    groups.append((42, torch.full((4,), 1.0, dtype=F64)))
    groups.append((43, torch.zeros(6, dtype=F64)))
    groups.append((44, torch.full((7,), 0.3, dtype=F64)))
    scores = torch.cat([s for _, s in groups])
    ids = torch.cat([torch.full((len(s),), gid, dtype=torch.long) for gid, s in groups])
    perm = torch.randperm(len(scores), generator=gen)  # members end up interleaved
    return scores[perm], ids[perm]


ALL_EQUAL_IDS = (41, 42, 43, 44)
SINGLETON_ID = 99


# ---- hand values --------------------------------------------------------------------------------


def test_group_mean_std_hand_values_interleaved():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.1, 1.0, 5.0], dtype=F64)
    ids = torch.tensor([2, 9, 2, 9, 2, 4])
    mean, std, size = group_mean_std(scores, ids)
    # group 2: 1, 0, 1 -> mean 2/3, unbiased var ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3
    # group 9: 0, 0.1 -> mean 0.05, var (0.05^2 * 2) / 1 = 0.005;  group 4: size 1, std 0
    m2, s2, m9, s9 = 2 / 3, math.sqrt(1 / 3), 0.05, math.sqrt(0.005)
    torch.testing.assert_close(mean, torch.tensor([m2, m9, m2, m9, m2, 5.0], dtype=F64), **TOL)
    torch.testing.assert_close(std, torch.tensor([s2, s9, s2, s9, s2, 0.0], dtype=F64), **TOL)
    assert size.tolist() == [3, 2, 3, 2, 3, 1] and size.dtype == torch.long


def test_estimators_hand_values():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64)
    ids = torch.tensor([0, 0, 0, 0])
    # mean 0.5, unbiased std sqrt(1/3); RLOO: 1 - 1/3 = 2/3 and 0 - 2/3 = -2/3 = 4/3 * (r - 0.5)
    half = torch.tensor([0.5, -0.5, -0.5, 0.5], dtype=F64)
    torch.testing.assert_close(dr_grpo_advantages(scores, ids), half, **TOL)
    torch.testing.assert_close(reinforce_pp_baseline_scores(scores, ids), half, **TOL)
    torch.testing.assert_close(
        grpo_advantages(scores, ids, eps=0.0), half * math.sqrt(3), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(rloo_advantages(scores, ids), half * 4 / 3, **TOL)


# ---- oracles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_mean_std_matches_plain_loop(seed):
    scores, ids = _random_batch(seed)
    mean, std, size = group_mean_std(scores, ids)
    exp_mean, exp_std, exp_size = _mean_std_size_oracle(scores.tolist(), ids.tolist())
    torch.testing.assert_close(mean, torch.tensor([float(m) for m in exp_mean], dtype=F64), **TOL)
    torch.testing.assert_close(std, torch.tensor(exp_std, dtype=F64), **TOL)
    assert size.tolist() == exp_size


@pytest.mark.parametrize("eps", [GRPO_EPS, 1e-4, 0.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grpo_and_dr_grpo_match_plain_loop(seed, eps):
    scores, ids = _random_batch(seed)
    s, i = scores.tolist(), ids.tolist()
    torch.testing.assert_close(
        grpo_advantages(scores, ids, eps=eps), _grpo_oracle(s, i, eps=eps), **TOL
    )
    expected_centred = _grpo_oracle(s, i, scale_by_std=False)
    for centred in (
        grpo_advantages(scores, ids, scale_by_std=False),
        dr_grpo_advantages(scores, ids),
        reinforce_pp_baseline_scores(scores, ids),
    ):
        torch.testing.assert_close(centred, expected_centred, **TOL)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rloo_matches_leave_one_out_loop(seed):
    scores, ids = _random_batch(seed)
    expected = _rloo_oracle(scores.tolist(), ids.tolist())
    torch.testing.assert_close(rloo_advantages(scores, ids), expected, **TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_rloo_identity_with_centred_scores(seed):
    # RLOO = G / (G - 1) * (r - mean_g) for G > 1, checked with the oracle's own quantities.
    scores, ids = _random_batch(seed)
    s, i = scores.tolist(), ids.tolist()
    means, _, sizes = _mean_std_size_oracle(s, i)
    loo = _rloo_oracle(s, i)
    for k in range(len(s)):
        if sizes[k] > 1:
            g = sizes[k]
            assert loo[k].item() == pytest.approx(g / (g - 1) * float(s[k] - means[k]), abs=1e-12)


# ---- edge cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(GROUP_ESTIMATORS))
def test_all_equal_groups_and_singletons_are_exactly_zero(name, dtype):
    scores, ids = _random_batch(5)
    scores = scores.to(dtype)
    adv = GROUP_ESTIMATORS[name](scores, ids)
    assert adv.dtype == dtype and not adv.isnan().any() and adv.isfinite().all()
    degenerate = torch.isin(ids, torch.tensor([*ALL_EQUAL_IDS, SINGLETON_ID]))
    assert (adv[degenerate] == 0).all()  # exactly, not approximately
    assert (adv[~degenerate] != 0).any()
    _, std, _ = group_mean_std(scores, ids)
    assert (std[degenerate] == 0).all()


def test_grpo_eps_zero_and_only_degenerate_groups_give_no_nan():
    scores = torch.tensor([0.1, 0.1, 0.1, 0.7, 1.0, 1.0], dtype=torch.float32)
    ids = torch.tensor([5, 5, 5, 6, 8, 8])
    for eps in (0.0, GRPO_EPS):
        adv = grpo_advantages(scores, ids, eps=eps)
        assert adv.tolist() == [0.0] * 6
    assert rloo_advantages(scores, ids).tolist() == [0.0] * 6


def test_integer_scores_and_empty_batch():
    adv = grpo_advantages(torch.tensor([1, 0]), torch.tensor([3, 3]))
    assert adv.dtype == torch.float32
    # mean 0.5, std sqrt(0.5): +-0.5 / (sqrt(0.5) + eps)
    expected = 0.5 / (math.sqrt(0.5) + GRPO_EPS)
    assert adv.tolist() == pytest.approx([expected, -expected], rel=1e-6)
    empty = torch.zeros(0, dtype=F64)
    for estimator in GROUP_ESTIMATORS.values():
        assert estimator(empty, torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_shape_and_id_dtype_checks():
    scores = torch.zeros(4, dtype=F64)
    with pytest.raises(ValueError, match="expected"):
        group_mean_std(scores, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected"):
        group_mean_std(scores.reshape(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        group_mean_std(scores, torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="expected"):
        sequence_to_tokens(scores, torch.ones(3, 2, dtype=torch.bool))


# ---- groups are ids, not positions or micro-batches ---------------------------------------------


@pytest.mark.parametrize("name", sorted(GROUP_ESTIMATORS))
def test_permutation_equivariance(name):
    scores, ids = _random_batch(6)
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(1))
    estimator = GROUP_ESTIMATORS[name]
    torch.testing.assert_close(
        estimator(scores[perm], ids[perm]), estimator(scores, ids)[perm], **TOL
    )
    mean, std, size = group_mean_std(scores, ids)
    p_mean, p_std, p_size = group_mean_std(scores[perm], ids[perm])
    torch.testing.assert_close(p_mean, mean[perm], **TOL)
    torch.testing.assert_close(p_std, std[perm], **TOL)
    assert torch.equal(p_size, size[perm])


@pytest.mark.parametrize("name", sorted(GROUP_ESTIMATORS))
def test_concatenated_micro_batches_equal_the_whole_batch(name):
    # Two micro-batches whose groups straddle the split: the estimator must see their
    # concatenation; per-micro-batch statistics are a different (wrong) answer.
    scores = torch.tensor([1.0, 0.0, 0.1, 1.0, 0.0, 0.1, 1.0, 0.0], dtype=F64)
    ids = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    first, second = slice(0, 3), slice(3, 8)
    estimator = GROUP_ESTIMATORS[name]
    whole = estimator(scores, ids)
    concatenated = estimator(
        torch.cat([scores[first], scores[second]]), torch.cat([ids[first], ids[second]])
    )
    torch.testing.assert_close(concatenated, whole, **TOL)
    exp = _rloo_oracle if name == "rloo" else _grpo_oracle
    kwargs = {"scale_by_std": False} if name in ("dr_grpo", "reinforce_pp_baseline") else {}
    torch.testing.assert_close(whole, exp(scores.tolist(), ids.tolist(), **kwargs), **TOL)
    per_micro = torch.cat(
        [estimator(scores[first], ids[first]), estimator(scores[second], ids[second])]
    )
    assert not torch.allclose(per_micro, whole)


# ---- tokens and REINFORCE++ ---------------------------------------------------------------------


def test_sequence_to_tokens_masks_and_all_masked_row():
    values = torch.tensor([0.5, -2.0, 3.0], dtype=F64)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]])
    out = sequence_to_tokens(values, mask)
    expected = [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 3.0, 3.0, 3.0]]
    assert out.dtype == F64 and out.tolist() == expected
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(6, generator=gen, dtype=F64)
    mask = torch.rand(6, 9, generator=gen) < 0.5
    mask[2] = False
    loop = [[values[b].item() if mask[b, t] else 0.0 for t in range(9)] for b in range(6)]
    torch.testing.assert_close(
        sequence_to_tokens(values, mask), torch.tensor(loop, dtype=F64), **TOL
    )
    assert (sequence_to_tokens(values, mask)[2] == 0).all()


@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.5])
def test_reinforce_pp_returns_match_plain_loop(gamma):
    gen = torch.Generator().manual_seed(4)
    rewards = torch.randn(5, 10, generator=gen, dtype=F64)
    mask = torch.zeros(5, 10, dtype=torch.bool)
    mask[0] = True
    mask[1, 2:7] = True
    mask[2, :1] = True
    mask[4] = torch.rand(10, generator=gen) < 0.5  # row 3 all masked, row 4 with holes
    expected = _returns_oracle(rewards.tolist(), mask.tolist(), gamma)
    torch.testing.assert_close(reinforce_pp_returns(rewards, mask, gamma), expected, **TOL)
    torch.testing.assert_close(
        reinforce_pp_returns(rewards, mask, gamma), discounted_returns(rewards, mask, gamma), **TOL
    )


def test_reinforce_pp_return_is_score_minus_kl_to_go():
    # gamma = 1 on KL-penalised rewards: A_t = score - beta * sum_{s >= t} kl_s (Hu 2025).
    scores = torch.tensor([1.0, 0.1], dtype=F64)
    kl = torch.tensor([[0.2, -0.1, 0.4, 9.0], [0.3, 0.5, 9.0, 9.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    rewards = kl_penalized_rewards(scores, kl, 0.05, mask)
    # row 0: kl-to-go 0.5, 0.3, 0.4 -> 1 - 0.025, 1 - 0.015, 1 - 0.02;  row 1: 0.8, 0.5
    expected = torch.tensor([[0.975, 0.985, 0.98, 0.0], [0.06, 0.075, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(reinforce_pp_returns(rewards, mask, 1.0), expected, **TOL)


def test_registry():
    assert {
        "grpo": grpo_advantages,
        "dr_grpo": dr_grpo_advantages,
        "rloo": rloo_advantages,
        "reinforce_pp_baseline": reinforce_pp_baseline_scores,
    } == GROUP_ESTIMATORS
    import reft.algos

    assert reft.algos.GROUP_ESTIMATORS is GROUP_ESTIMATORS
