"""Generalized Advantage Estimation over response tokens, and discounted returns.

Both functions scan the time axis backwards once, vectorised over the batch, and skip masked
positions: a masked position gets 0 and is stepped over, so the recursion links each response
token to the NEXT UNMASKED one. For the usual contiguous response (left-padded prompt, then the
response, then right padding after an early EOS) this is exactly the reference's computation:
values and rewards are zeroed outside the response, the deltas are discount-cumsummed over the
whole padded row, and the prompt part is zeroed (mwp_ReFT train_rl_reft.py:355-369, using
`discount_cumsum` from src/utils.py:110-111). In particular the step after the last response token
is worth 0 whether the response ended with EOS or was truncated (the reference does not bootstrap).

GAE does not whiten (style.md; unlike verl): whiten afterwards with normalize.WHITENERS, and
compute the returns, as here, from the UNwhitened advantages (train_rl_reft.py:369 before :420).
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and lambda-returns (Schulman et al. 2016; the ReFT paper's method section; lm-hpd).

    Args:
        rewards: (B, T) per-token rewards (shaping.kl_penalized_rewards).
        values: (B, T) value-head predictions V(s_t) at the rollout, s_t the state before token t.
        mask: (B, T) bool or 0/1, true on response tokens; anything at masked positions is ignored.
        gamma: discount (1.0 in ReFT's runs, exps/paper_exps/ReFT/_template.sh).
        lam: GAE lambda (0.95 in ReFT's runs).

    Returns:
        advantages: (B, T), 0 where `mask` is false.
        returns: (B, T) = advantages + values, 0 where `mask` is false.

    The plain loop this vectorises (the float64 oracle in tests/test_algos_advantages.py):

        for b in range(B):
            next_value, next_adv = 0.0, 0.0
            for t in reversed(range(T)):
                if not mask[b][t]:
                    continue                      # advantage stays 0, the carry passes through
                delta = rewards[b][t] + gamma * next_value - values[b][t]
                next_adv = delta + gamma * lam * next_adv
                advantages[b][t] = next_adv
                next_value = values[b][t]
    """
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(f"shape mismatch: {rewards.shape}, {values.shape}, {mask.shape}")
    keep_all = mask.bool()
    advantages = torch.zeros_like(values)
    next_value = values.new_zeros(values.shape[0])
    next_adv = values.new_zeros(values.shape[0])
    for t in reversed(range(values.shape[1])):
        keep = keep_all[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        next_adv = torch.where(keep, adv_t, next_adv)
        next_value = torch.where(keep, values[:, t], next_value)
        advantages[:, t] = torch.where(keep, adv_t, 0.0)
    returns = torch.where(keep_all, advantages + values, 0.0)
    return advantages, returns


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go G_t = r_t + gamma * G_(next unmasked t'), 0 after the last unmasked token.

    Args:
        rewards: (B, T) per-token rewards.
        mask: (B, T) bool or 0/1, true on response tokens; masked rewards are ignored.
        gamma: discount.

    Returns:
        (B, T) discounted returns, 0 where `mask` is false. Equals `gae(rewards, 0, mask, gamma,
        lam=1)` advantages; mwp_ReFT's `discount_cumsum` (src/utils.py:110-111) on a contiguous row.

    Plain loop:

        for b in range(B):
            running = 0.0
            for t in reversed(range(T)):
                if mask[b][t]:
                    running = rewards[b][t] + gamma * running
                    out[b][t] = running
    """
    if rewards.shape != mask.shape:
        raise ValueError(f"shape mismatch: {rewards.shape}, {mask.shape}")
    keep_all = mask.bool()
    out = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        keep = keep_all[:, t]
        running = torch.where(keep, rewards[:, t] + gamma * running, running)
        out[:, t] = torch.where(keep, running, 0.0)
    return out
