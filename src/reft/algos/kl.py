"""Per-token KL estimators between the sampling policy and a reference policy.

Each estimator takes the log-probabilities of the SAMPLED tokens under the policy that sampled them
(`logprobs`) and under the reference (`ref_logprobs`), both (B, T), and returns a (B, T) per-token
estimate of KL(policy || reference). None of them masks and none applies a coefficient: the caller
masks (shaping.kl_penalized_rewards) and scales by kl_coef.

With log r = ref_logprobs - logprobs (J. Schulman, "Approximating KL Divergence", 2020):
- k1 = -log r                     unbiased, can be negative per token. ReFT's reward uses this:
                                  `kl = old_logprob - ref_logprob` (mwp_ReFT train_rl_reft.py:347).
- k2 = (log r)^2 / 2              biased, always >= 0, low variance.
- k3 = (r - 1) - log r            unbiased, always >= 0 (e^x >= 1 + x).

The ReFT paper writes the penalty as the KL between the two next-token distributions at each state;
its code uses the k1 sample estimate on the sampled token, which is what the trainer reproduces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = logprobs - ref_logprobs. Shapes: (B, T), (B, T) -> (B, T).

    mwp_ReFT train_rl_reft.py:347; OpenRLHF `compute_approx_kl` (no estimator flag).
    """
    return logprobs - ref_logprobs


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (logprobs - ref_logprobs)^2. Shapes: (B, T), (B, T) -> (B, T). Schulman (2020)."""
    log_ratio = logprobs - ref_logprobs
    return 0.5 * log_ratio * log_ratio


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1, always >= 0. Shapes: (B, T), (B, T) -> (B, T).

    Schulman (2020); the form GRPO uses. `expm1` keeps precision when the ratio is near 1. Not
    clamped: a reference far more confident than the policy (ref - logp > ~88) overflows float32.
    """
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio


KLFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""An estimator's signature: (logprobs, ref_logprobs) -> per-token KL, both (B, T)."""

#: `reft.train.config.KLEstimator` value -> estimator; the trainer looks this up once. ReFT's
#: reference uses "k1".
KL_ESTIMATORS: dict[str, KLFunction] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
