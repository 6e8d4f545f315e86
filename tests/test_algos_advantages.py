"""GAE and discounted returns: hand values, the float64 plain-loop oracle (the loop written in the
`gae` docstring), parity with the reference's padded-row computation, and edge cases."""

import pytest
import torch

from reft.algos.advantages import discounted_returns, gae

F64 = torch.float64


def _gae_oracle(rewards, values, mask, gamma, lam):
    """The plain loop from the `gae` docstring, in Python floats."""
    rows, cols = len(rewards), len(rewards[0])
    adv = [[0.0] * cols for _ in range(rows)]
    for b in range(rows):
        next_value, next_adv = 0.0, 0.0
        for t in reversed(range(cols)):
            if not mask[b][t]:
                continue
            delta = rewards[b][t] + gamma * next_value - values[b][t]
            next_adv = delta + gamma * lam * next_adv
            adv[b][t] = next_adv
            next_value = values[b][t]
    ret = [
        [adv[b][t] + values[b][t] if mask[b][t] else 0.0 for t in range(cols)] for b in range(rows)
    ]
    return torch.tensor(adv, dtype=F64), torch.tensor(ret, dtype=F64)


def test_hand_values_full_mask():
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    values = torch.tensor([[0.5, 0.6, 0.7]], dtype=F64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=2: delta = 1 + 0.9*0 - 0.7 = 0.3;              A2 = 0.3
    # t=1: delta = 0 + 0.9*0.7 - 0.6 = 0.03;           A1 = 0.03 + 0.45*0.3 = 0.165
    # t=0: delta = 0 + 0.9*0.6 - 0.5 = 0.04;           A0 = 0.04 + 0.45*0.165 = 0.11425
    torch.testing.assert_close(adv, torch.tensor([[0.11425, 0.165, 0.3]], dtype=F64))
    # returns = A + V: 0.61425, 0.765, 1.0
    torch.testing.assert_close(ret, torch.tensor([[0.61425, 0.765, 1.0]], dtype=F64))


def test_hand_values_early_eos_with_garbage_padding():
    rewards = torch.tensor([[0.0, 1.0, 5.0]], dtype=F64)  # 5.0 and 9.0 sit on padding
    values = torch.tensor([[0.5, 0.6, 9.0]], dtype=F64)
    mask = torch.tensor([[True, True, False]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # t=1 (last real token): delta = 1 + 1*0 - 0.6 = 0.4;  A1 = 0.4  (no bootstrap from padding)
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1;                    A0 = 0.1 + 0.95*0.4 = 0.48
    torch.testing.assert_close(adv, torch.tensor([[0.48, 0.4, 0.0]], dtype=F64))
    torch.testing.assert_close(ret, torch.tensor([[0.98, 1.0, 0.0]], dtype=F64))


def test_single_token_and_all_masked_rows():
    rewards = torch.tensor([[0.7, 3.0], [4.0, 4.0]], dtype=F64)
    values = torch.tensor([[0.2, 3.0], [1.0, 1.0]], dtype=F64)
    mask = torch.tensor([[True, False], [False, False]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # single token: A = r - V = 0.5, return = r = 0.7; the all-masked row is all zeros
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=F64))
    torch.testing.assert_close(ret, torch.tensor([[0.7, 0.0], [0.0, 0.0]], dtype=F64))


def _random_case(seed: int, rows: int = 6, cols: int = 11):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(rows, cols, generator=gen, dtype=F64)
    values = torch.randn(rows, cols, generator=gen, dtype=F64)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    mask[0] = True  # truncated, no padding
    mask[1, 3:] = True  # left-padded prompt, truncated response
    mask[2, 2:6] = True  # left padding, then early EOS and right padding
    mask[3, :1] = True  # single token
    # rows 4 and 5: row 4 all masked; row 5 random holes (the skip rule must still hold)
    mask[5] = torch.rand(cols, generator=gen) < 0.5
    return rewards, values, mask


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.7), (1.0, 1.0), (0.99, 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_plain_loop_oracle(gamma, lam, seed):
    rewards, values, mask = _random_case(seed)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    exp_adv, exp_ret = _gae_oracle(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    torch.testing.assert_close(adv, exp_adv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, exp_ret, rtol=1e-12, atol=1e-12)


def test_lambda_one_is_monte_carlo_and_lambda_zero_is_td():
    rewards, values, mask = _random_case(3)
    contiguous = mask[:5]  # rows without holes
    r, v = rewards[:5], values[:5]
    _, ret = gae(r, v, contiguous, gamma=0.9, lam=1.0)
    mc = discounted_returns(r, contiguous, gamma=0.9)
    torch.testing.assert_close(ret, mc, rtol=1e-12, atol=1e-12)
    adv0, _ = gae(r, v, contiguous, gamma=0.9, lam=0.0)
    next_v = torch.cat([v[:, 1:] * contiguous[:, 1:], torch.zeros(5, 1, dtype=F64)], dim=1)
    td = torch.where(contiguous, r + 0.9 * next_v - v, 0.0)
    torch.testing.assert_close(adv0, td, rtol=1e-12, atol=1e-12)


def _reference_padded_gae(rewards, values, mask, prompt_len, gamma, lam):
    """Our re-statement of mwp_ReFT train_rl_reft.py:355-377 on one padded full-sequence row set:
    zero values outside the mask, delta over the whole row, reverse discounted cumsum with
    gamma * lam, zero the prompt part, return = adv + val, both masked."""
    rows, cols = len(rewards), len(rewards[0])
    adv_all, ret_all = [], []
    for b in range(rows):
        val = [values[b][t] if mask[b][t] else 0.0 for t in range(cols)]
        rew = [rewards[b][t] if mask[b][t] else 0.0 for t in range(cols)]
        delta = [rew[t] + gamma * val[t + 1] - val[t] for t in range(cols - 1)]
        adv = [0.0] * cols
        running = 0.0
        for t in reversed(range(cols - 1)):
            running = delta[t] + gamma * lam * running
            adv[t] = running
        for t in range(prompt_len - 1):
            adv[t] = 0.0
        adv_all.append([adv[t] if mask[b][t] else 0.0 for t in range(cols)])
        ret_all.append([(adv[t] + val[t]) if mask[b][t] else 0.0 for t in range(cols)])
    return torch.tensor(adv_all, dtype=F64), torch.tensor(ret_all, dtype=F64)


def test_parity_with_reference_padded_rows():
    # Full-sequence layout: 4 prompt columns (left padded), 8 generated columns. The mask runs from
    # the last prompt column up to the step that emits EOS (or the second-to-last column).
    prompt_len, cols = 4, 12
    gen = torch.Generator().manual_seed(7)
    rewards = torch.randn(3, cols, generator=gen, dtype=F64)
    values = torch.randn(3, cols, generator=gen, dtype=F64)
    mask = torch.zeros(3, cols, dtype=torch.bool)
    mask[0, prompt_len - 1 : cols - 1] = True  # truncated
    mask[1, prompt_len - 1 : 7] = True  # EOS at column 7
    mask[2, prompt_len - 1 : prompt_len] = True  # immediate EOS
    exp_adv, exp_ret = _reference_padded_gae(
        rewards.tolist(), values.tolist(), mask.tolist(), prompt_len, 1.0, 0.95
    )
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    torch.testing.assert_close(adv, exp_adv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, exp_ret, rtol=1e-12, atol=1e-12)


def test_float32_and_shape_checks():
    rewards, values, mask = _random_case(4)
    adv, ret = gae(rewards.float(), values.float(), mask, 1.0, 0.95)
    assert adv.dtype == ret.dtype == torch.float32
    exp_adv, _ = gae(rewards, values, mask, 1.0, 0.95)
    torch.testing.assert_close(adv, exp_adv.float(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        gae(rewards, values[:, :-1], mask, 1.0, 0.95)
    with pytest.raises(ValueError, match="shape"):
        discounted_returns(rewards, mask[:, :-1], 1.0)


def test_discounted_returns_hand_values_and_oracle():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 7.0]], dtype=F64)
    mask = torch.tensor([[True, True, True, False]])
    # G2 = 3; G1 = 2 + 0.5*3 = 3.5; G0 = 1 + 0.5*3.5 = 2.75; the masked 7 is ignored
    torch.testing.assert_close(
        discounted_returns(rewards, mask, gamma=0.5),
        torch.tensor([[2.75, 3.5, 3.0, 0.0]], dtype=F64),
    )
    r, _, m = _random_case(5)
    expected, _ = _gae_oracle(r.tolist(), [[0.0] * 11] * 6, m.tolist(), 0.97, 1.0)
    torch.testing.assert_close(discounted_returns(r, m, 0.97), expected, rtol=1e-12, atol=1e-12)
