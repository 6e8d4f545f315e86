"""Per-token PPO losses and how to reduce them to a scalar.

Every loss returns a (B, T) tensor, 0 where the mask is false; an aggregator from
`LOSS_AGGREGATORS`, chosen once at config time, turns it into the scalar to backpropagate:

- "seq_mean_token_mean" (the reference's): average each sequence's loss over its own response
  tokens, then average over sequences, so every sample weighs the same whatever its length
  (mwp_ReFT train_rl_reft.py:446, :466, :474).
- "token_mean": average over all response tokens of the batch, so long responses weigh more
  (the commented-out alternative at train_rl_reft.py:467 and :475; TRL's PPO).

`token_sum_constant` (Dr. GRPO) divides by B x a constant instead; it needs that constant, so it is
bound at config time rather than listed in the registry.

Loss = pg + vf_coef * vf (train_rl_reft.py:478) is the trainer's sum, not a function here.
The reference hard-codes both clip ranges to 0.2 (:465, :471); here they are arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reft.algos.normalize import masked_sum


def _zero_masked(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), loss, torch.zeros((), dtype=loss.dtype, device=loss.device))


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """Clipped surrogate -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) per token.

    Args:
        logprobs: (B, T) log-probs of the sampled tokens under the policy being trained (grad).
        old_logprobs: (B, T) the same under the rollout policy (no grad).
        advantages: (B, T) (whitened) advantages (no grad).
        mask: (B, T) bool or 0/1, true on response tokens.
        clip_range: eps (0.2 in the reference, train_rl_reft.py:463-466; PPO paper).

    Returns:
        (B, T) loss, 0 where `mask` is false. Where the clipped term is the larger loss, it is
        constant in `logprobs`, so those tokens get no gradient.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return _zero_masked(torch.maximum(unclipped, clipped), mask)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> torch.Tensor:
    """Clipped value loss 0.5 * max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2) per token.

    Args:
        values: (B, T) value-head predictions of the model being trained (grad).
        old_values: (B, T) predictions at the rollout (no grad).
        returns: (B, T) GAE returns from the unwhitened advantages (no grad).
        mask: (B, T) bool or 0/1, true on response tokens.
        clip_range_value: c; values may move at most c from `old_values` (0.2 in the reference,
            train_rl_reft.py:470-474).

    Returns:
        (B, T) loss, 0 where `mask` is false.
    """
    clipped_values = torch.clamp(
        values, old_values - clip_range_value, old_values + clip_range_value
    )
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    return _zero_masked(0.5 * torch.maximum(unclipped_err, clipped_err), mask)


def sft_nll(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per target token. Shapes: (B, T), (B, T) -> (B, T), 0 where masked.

    Used for SFT and self-training steps; aggregate with `token_mean` to match the usual
    cross-entropy over labels != -100 (HF causal-LM loss, used by mwp_ReFT train_sft_model.py).
    """
    return _zero_masked(-logprobs, mask)


def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's unmasked tokens, then mean over sequences; 0-dim.

    Shapes: loss (B, T), mask (B, T). A row with no unmasked token contributes 0 but still counts
    in the mean over B, as the reference's `clamp(min=1)` does (train_rl_reft.py:446).
    """
    keep = mask.bool()
    per_sequence = masked_sum(loss, keep, dim=1) / keep.sum(dim=1).clamp(min=1)
    return per_sequence.mean()


def token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over all unmasked tokens of the batch; 0-dim, 0 if nothing is unmasked.

    Shapes: loss (B, T), mask (B, T).
    """
    keep = mask.bool()
    return masked_sum(loss, keep) / keep.sum().clamp(min=1)


def token_sum_constant(loss: torch.Tensor, mask: torch.Tensor, normalizer: float) -> torch.Tensor:
    """Sum over every unmasked token, divided by (number of sequences x a constant); 0-dim.

    Dr. GRPO's aggregation (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical
    Perspective", arXiv 2503.20783; sail-sg/understand-r1-zero train_zero_math.py, `masked_sum`
    with `constant_normalizer=args.generate_max_length`, then the mean over sequences). Dividing by
    each response's own length (`seq_mean_token_mean`) gives a token of a short response more
    weight than one of a long response, which favours short correct and long wrong answers; a
    constant gives every token the same weight 1 / (B * normalizer).

    Args:
        loss: (B, T) per-token loss.
        mask: (B, T) bool or 0/1, true on response tokens.
        normalizer: the constant, e.g. the maximum response length (max_new_tokens); > 0.

    Returns:
        sum_b sum_t loss[b, t] * mask[b, t] / (B * normalizer); 0 for B == 0. Not in
        `LOSS_AGGREGATORS`, whose functions take (loss, mask) only: bind `normalizer` at config
        time, e.g. `functools.partial(token_sum_constant, normalizer=max_new_tokens)`.

    Plain loop: `sum(loss[b][t] for b in range(B) for t in range(T) if mask[b][t]) / (B * normalizer)`.
    """
    if normalizer <= 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")
    return masked_sum(loss, mask.bool()) / (max(loss.shape[0], 1) * normalizer)


LossAggregator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Config value -> aggregator; the trainer looks this up once. The reference uses
#: "seq_mean_token_mean".
LOSS_AGGREGATORS: dict[str, LossAggregator] = {
    "seq_mean_token_mean": seq_mean_token_mean,
    "token_mean": token_mean,
}
