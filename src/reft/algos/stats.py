"""PPO diagnostics for logging (cleanrl / lm-human-preference-details names).

All functions run without gradient and return 0-dim tensors on the inputs' device, so the trainer
decides when to pay for `.item()` (a host sync) or to all-reduce them first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reft.algos.kl import kl_k1, kl_k3
from reft.algos.normalize import masked_mean, masked_var


@torch.no_grad()
def approx_kl_k1(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean k1 estimate of KL(old || new) over response tokens: mean(old_logprobs - logprobs).

    The tokens were sampled by the old (rollout) policy, so it plays the "policy" role of
    kl.kl_k1 and the new policy the "reference" role (cleanrl ppo.py `old_approx_kl`).
    Shapes: (B, T) x 3 -> 0-dim. NaN if nothing is unmasked.
    """
    return masked_mean(kl_k1(old_logprobs, logprobs), mask)


@torch.no_grad()
def approx_kl_k3(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean k3 estimate of KL(old || new): mean((ratio - 1) - log ratio), ratio = new / old.

    Always >= 0 (cleanrl ppo.py `approx_kl`). Shapes: (B, T) x 3 -> 0-dim.
    """
    return masked_mean(kl_k3(old_logprobs, logprobs), mask)


@torch.no_grad()
def clip_fraction(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """Fraction of response tokens where the clipped surrogate is strictly the larger loss.

    Those are exactly the tokens that get no policy gradient from losses.ppo_policy_loss
    (lm-human-preference-details / TRL `pg_clipfrac`; cleanrl's |ratio - 1| > eps also counts
    clipped tokens whose clipping does not bind). Shapes: (B, T) x 4 -> 0-dim.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return masked_mean((clipped > unclipped).to(logprobs.dtype), mask)


@torch.no_grad()
def value_clip_fraction(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> torch.Tensor:
    """Fraction of response tokens where the clipped value error is strictly the larger one.

    Those tokens get no value gradient from losses.value_loss (TRL `vf_clipfrac`).
    Shapes: (B, T) x 4 -> 0-dim.
    """
    clipped_values = torch.clamp(
        values, old_values - clip_range_value, old_values + clip_range_value
    )
    clipped_larger = (clipped_values - returns) ** 2 > (values - returns) ** 2
    return masked_mean(clipped_larger.to(values.dtype), mask)


@torch.no_grad()
def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """1 - Var[returns - values] / Var[returns] over response tokens; 0-dim.

    1 for perfect predictions, 0 for predicting the mean, negative when worse than that
    (cleanrl ppo.py; mwp_ReFT train_rl_reft.py:502-505). NaN when the returns have zero variance
    (cleanrl); the reference instead adds 1e-8 to the denominator and truncates the result at -1,
    which hides how bad a bad value head is. Needs at least one unmasked token.
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    var_residual = masked_var(returns - values, mask, unbiased=False)
    ratio = 1.0 - var_residual / var_returns
    return torch.where(var_returns > 0, ratio, torch.full_like(ratio, float("nan")))


def explained_variance_over_processes(
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """`explained_variance` over the response tokens of every process, from five float64 sums.

    Shapes: (B, T) values, returns and mask on each process; `sum_over_processes` sums a (5,)
    float64 tensor over the processes (an all-reduce; the identity with one process). Population
    variances from the pooled count, sum and sum of squares of the returns and of the residuals
    returns - values, as `explained_variance` computes them on the concatenation. NaN when the
    pooled returns have zero variance.

    Plain loop: `r = [returns[b][t] for every process, b, t if mask[b][t]]`, `e` likewise for
    `returns - values`; `1 - var(e) / var(r)` with `var(x) = mean(x^2) - mean(x)^2`.
    """
    mask = mask.bool()
    kept_returns = returns[mask].double()
    residual = kept_returns - values[mask].double()
    sums = torch.stack([mask.sum().double(), kept_returns.sum(), kept_returns.square().sum(),
                        residual.sum(), residual.square().sum()])  # fmt: skip
    count, r, r2, e, e2 = sum_over_processes(sums).tolist()
    var_returns = r2 / count - (r / count) ** 2
    var_residual = e2 / count - (e / count) ** 2
    return 1.0 - var_residual / var_returns if var_returns > 0 else float("nan")
