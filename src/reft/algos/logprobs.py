"""Log-probabilities of chosen tokens, and entropies, from logits.

Memory: the vocabulary axis V is the large one (B * T * V floats). `logprobs_from_logits` gathers
the chosen logit and subtracts a logsumexp, so it never builds the (B, T, V) log-softmax that
`log_softmax(...).gather(...)` (TRL 0.7.2 `logprobs_from_logits`, used by mwp_ReFT at
train_rl_reft.py:323, :329 and :457) keeps alive for backward. Half-precision logits are upcast to
float32 first, because a logsumexp over tens of thousands of bfloat16 terms loses the precision that
the PPO ratio exp(logp - old_logp) depends on. So the results are float32 (or float64) even for
bfloat16 logits, a deliberate difference from the reference, which stays in the model's dtype.

Alignment is the caller's job: for a causal LM, logits[:, i] predicts input_ids[:, i + 1], so pass
`logits[:, :-1]` with `labels=input_ids[:, 1:]` and then slice the response positions.
"""

from __future__ import annotations

import torch


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 -> float32; float32 and float64 unchanged (no copy)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] for every position, as logit[label] - logsumexp(logits).

    Args:
        logits: (B, T, V) unnormalised scores; finite.
        labels: (B, T) int64 token ids in [0, V).

    Returns:
        (B, T) log-probabilities, float32 for half-precision logits, else the logits' dtype.
    """
    logits = _upcast(logits)
    chosen = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) at every position: logsumexp(l) - sum_v softmax(l)_v * l_v.

    Args:
        logits: (B, T, V) unnormalised scores; finite (a -inf logit would give 0 * -inf = NaN).

    Returns:
        (B, T) entropies in nats, float32 for half-precision logits (TRL `entropy_from_logits`).
    """
    logits = _upcast(logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
