"""PPO policy and value losses (values, branches, gradients), the loss aggregators (incl. Dr. GRPO's
token_sum_constant), and k3 as a differentiable KL loss term (GRPO)."""

import math

import pytest
import torch

from reft.algos.kl import kl_k3
from reft.algos.losses import (
    LOSS_AGGREGATORS,
    ppo_policy_loss,
    seq_mean_token_mean,
    sft_nll,
    token_mean,
    token_sum_constant,
    value_loss,
)

F64 = torch.float64

# Five tokens covering every branch of the clipped surrogate with eps = 0.2 (old_logprobs = 0,
# so ratio = exp(logprobs)):
#   tok  ratio   A    -r*A   -clip(r)*A   max (loss)   branch      d loss / d logprobs = -A * r
#   0    1.0     2    -2.0   -2.0         -2.0         equal       -2.0
#   1    1.5     1    -1.5   -1.2         -1.2         clipped      0
#   2    0.5    -1     0.5    0.8          0.8         clipped      0
#   3    1.5    -1     1.5    1.2          1.5         unclipped    1.5
#   4    0.5     1    -0.5   -0.8         -0.5         unclipped   -0.5
RATIOS = [1.0, 1.5, 0.5, 1.5, 0.5]
ADVANTAGES = torch.tensor([[2.0, 1.0, -1.0, -1.0, 1.0]], dtype=F64)


def _logprobs():
    return torch.tensor([[math.log(r) for r in RATIOS]], dtype=F64, requires_grad=True)


def test_policy_loss_hand_values_and_gradients():
    logprobs = _logprobs()
    mask = torch.ones(1, 5, dtype=torch.bool)
    loss = ppo_policy_loss(logprobs, torch.zeros(1, 5, dtype=F64), ADVANTAGES, mask, clip_range=0.2)
    torch.testing.assert_close(
        loss.detach(), torch.tensor([[-2.0, -1.2, 0.8, 1.5, -0.5]], dtype=F64)
    )
    loss.sum().backward()
    torch.testing.assert_close(
        logprobs.grad, torch.tensor([[-2.0, 0.0, 0.0, 1.5, -0.5]], dtype=F64)
    )


def test_policy_loss_masked_tokens_are_zero_and_get_no_gradient():
    logprobs = _logprobs()
    mask = torch.tensor([[False, True, True, True, True]])  # token 0 would have gradient -2
    loss = ppo_policy_loss(logprobs, torch.zeros(1, 5, dtype=F64), ADVANTAGES, mask, 0.2)
    torch.testing.assert_close(
        loss.detach(), torch.tensor([[0.0, -1.2, 0.8, 1.5, -0.5]], dtype=F64)
    )
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, 0.0, 0.0, 1.5, -0.5]], dtype=F64))
    # garbage on a masked token does not reach the forward value
    advantages = ADVANTAGES.clone()
    advantages[0, 0] = float("nan")
    loss = ppo_policy_loss(logprobs.detach(), torch.zeros(1, 5, dtype=F64), advantages, mask, 0.2)
    assert loss[0, 0].item() == 0.0


def test_policy_loss_no_clipping_at_ratio_one_is_minus_advantage():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(4, 6, generator=gen, dtype=F64)
    adv = torch.randn(4, 6, generator=gen, dtype=F64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    torch.testing.assert_close(ppo_policy_loss(old, old, adv, mask, 0.2), -adv)


# Value loss with c = 0.2, old value 0:
#   tok  v     R     (v-R)^2  clip(v)  (clip-R)^2  0.5*max   branch      d loss / d v
#   0    0.5   1.0   0.25     0.2      0.64        0.32      clipped      0
#   1    0.1   1.0   0.81     0.1      0.81        0.405     equal        v - R = -0.9
#   2   -0.5  -1.0   0.25    -0.2      0.64        0.32      clipped      0
#   3    0.5   0.0   0.25     0.2      0.04        0.125     unclipped    v - R = 0.5
def test_value_loss_hand_values_and_gradients():
    values = torch.tensor([[0.5, 0.1, -0.5, 0.5]], dtype=F64, requires_grad=True)
    returns = torch.tensor([[1.0, 1.0, -1.0, 0.0]], dtype=F64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss = value_loss(values, torch.zeros(1, 4, dtype=F64), returns, mask, clip_range_value=0.2)
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.32, 0.405, 0.32, 0.125]], dtype=F64))
    loss.sum().backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, -0.9, 0.0, 0.5]], dtype=F64))


def test_value_loss_inside_clip_range_is_plain_half_squared_error():
    gen = torch.Generator().manual_seed(1)
    old = torch.randn(3, 5, generator=gen, dtype=F64)
    values = old + 0.1 * (2 * torch.rand(3, 5, generator=gen, dtype=F64) - 1)
    returns = torch.randn(3, 5, generator=gen, dtype=F64)
    mask = torch.rand(3, 5, generator=gen) < 0.7
    expected = torch.where(mask, 0.5 * (values - returns) ** 2, 0.0)
    torch.testing.assert_close(value_loss(values, old, returns, mask, 0.2), expected)


def test_sft_nll():
    logprobs = torch.tensor([[-0.5, -2.0, -9.0]])
    assert sft_nll(logprobs, torch.tensor([[1, 1, 0]])).tolist() == [[0.5, 2.0, 0.0]]


def test_aggregators_hand_values():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # per sequence: 6 / 3 = 2 and 4 / 1 = 4 -> mean 3; per token: (1 + 2 + 3 + 4) / 4 = 2.5
    assert seq_mean_token_mean(loss, mask).item() == pytest.approx(3.0)
    assert token_mean(loss, mask).item() == pytest.approx(2.5)


def test_aggregators_all_masked_row_and_batch():
    loss = torch.tensor([[1.0, 1.0], [5.0, 5.0]])
    mask = torch.tensor([[True, True], [False, False]])
    # the empty row counts as 0 in the mean over sequences (reference clamp(min=1)): (1 + 0) / 2
    assert seq_mean_token_mean(loss, mask).item() == pytest.approx(0.5)
    assert token_mean(loss, mask).item() == pytest.approx(1.0)
    nothing = torch.zeros_like(mask)
    assert seq_mean_token_mean(loss, nothing).item() == 0.0
    assert token_mean(loss, nothing).item() == 0.0


def test_aggregators_match_plain_loops():
    gen = torch.Generator().manual_seed(2)
    loss = torch.randn(5, 8, generator=gen, dtype=F64)
    mask = torch.rand(5, 8, generator=gen) < 0.6
    mask[4] = False
    rows = [
        [loss[b, t].item() for t in range(8) if mask[b, t]] for b in range(5)
    ]  # plain Python per-row lists
    seq = sum(sum(r) / max(len(r), 1) for r in rows) / 5
    tok = sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    assert seq_mean_token_mean(loss, mask).item() == pytest.approx(seq, abs=1e-12)
    assert token_mean(loss, mask).item() == pytest.approx(tok, abs=1e-12)
    assert seq != pytest.approx(tok)  # the two choices really differ on ragged batches


def test_registry():
    assert {
        "seq_mean_token_mean": seq_mean_token_mean,
        "token_mean": token_mean,
    } == LOSS_AGGREGATORS


def test_token_sum_constant_hand_values():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # (1 + 2 + 3 + 4) / (2 sequences * 5) = 1.0, whatever the responses' lengths
    assert token_sum_constant(loss, mask, normalizer=5.0).item() == pytest.approx(1.0)
    # an empty batch or an all-masked one gives 0, not NaN
    assert token_sum_constant(loss, torch.zeros_like(mask), 5.0).item() == 0.0
    assert (
        token_sum_constant(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.bool), 5.0).item()
        == 0.0
    )
    with pytest.raises(ValueError, match="normalizer"):
        token_sum_constant(loss, mask, normalizer=0.0)


def test_token_sum_constant_matches_plain_loop_and_token_weights_are_equal():
    gen = torch.Generator().manual_seed(3)
    loss = torch.randn(5, 8, generator=gen, dtype=F64, requires_grad=True)
    mask = torch.rand(5, 8, generator=gen) < 0.6
    mask[4] = False
    total = sum(loss[b, t].item() for b in range(5) for t in range(8) if mask[b, t])
    out = token_sum_constant(loss, mask, normalizer=8.0)
    assert out.item() == pytest.approx(total / (5 * 8.0), abs=1e-12)
    # every response token gets the same weight 1 / (B * normalizer), long or short response
    out.backward()
    expected = torch.where(mask, torch.tensor(1.0 / 40.0, dtype=F64), 0.0)
    torch.testing.assert_close(loss.grad, expected, rtol=0.0, atol=1e-15)
    assert token_sum_constant not in LOSS_AGGREGATORS.values()  # needs its normalizer bound


def test_kl_k3_gradient_is_one_minus_ratio():
    # GRPO puts beta * k3 in the loss (DeepSeekMath eq. 4); d k3 / d logp = 1 - exp(ref - logp),
    # negative where the policy is less likely than the reference, 0 where they agree.
    gen = torch.Generator().manual_seed(4)
    logprobs = (-3.0 * torch.rand(4, 7, generator=gen, dtype=F64)).requires_grad_(True)
    ref = -3.0 * torch.rand(4, 7, generator=gen, dtype=F64)
    ref[0, 0] = logprobs[0, 0].item()
    kl_k3(logprobs, ref).sum().backward()
    analytic = 1.0 - torch.exp(ref - logprobs.detach())
    torch.testing.assert_close(logprobs.grad, analytic, rtol=1e-12, atol=1e-12)
    assert logprobs.grad[0, 0].item() == 0.0
    assert torch.autograd.gradcheck(
        lambda lp: kl_k3(lp, ref), (logprobs.detach().requires_grad_(),)
    )


def test_kl_k3_as_masked_loss_term():
    # pg + beta * k3 per token, aggregated: masked tokens get no gradient, the others
    # beta * (1 - exp(ref - logp)) / (B * normalizer) on top of the policy-gradient term.
    gen = torch.Generator().manual_seed(5)
    logprobs = (-2.0 * torch.rand(3, 5, generator=gen, dtype=F64)).requires_grad_(True)
    ref = -2.0 * torch.rand(3, 5, generator=gen, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]).bool()
    beta, normalizer = 0.04, 5.0
    token_sum_constant(beta * kl_k3(logprobs, ref), mask, normalizer).backward()
    analytic = torch.where(mask, beta * (1.0 - torch.exp(ref - logprobs.detach())), 0.0)
    torch.testing.assert_close(logprobs.grad, analytic / (3 * normalizer), rtol=1e-12, atol=1e-15)
