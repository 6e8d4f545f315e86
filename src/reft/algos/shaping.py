"""Turning one scalar score per response into per-token PPO rewards.

Not the grader: the score (1 correct, 0.1 answer-but-wrong, 0 no answer) is computed from text
elsewhere. Here it only gets placed on a token, and the KL penalty is added.

Indexing convention (same as every module in `reft.algos`): position t of a (B, T) tensor is the
step that EMITS response token t, so logprobs[:, t] = log pi(response_t | prompt, response_<t).
`response_mask[:, t]` is true for every generated token up to and INCLUDING the EOS token, so
- a response that ended with EOS gets its score on the EOS-emitting step, and
- a truncated response (no EOS within the length limit) gets it on its last generated token.
This is mwp_ReFT train_rl_reft.py:333-341: the mask runs from the last prompt position to just
before the EOS position in the full sequence, i.e. over the steps that predict response tokens up
to the EOS, and the score goes on `tidx - 1`, the step predicting EOS (or on column -2, the step
predicting the last token, when there is no EOS). Building such a mask is the rollout's job.
"""

from __future__ import annotations

import torch


def last_response_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last true position of each row; -1 for an all-masked row.

    Shapes: response_mask (B, T) bool or 0/1 -> (B,) int64.
    """
    mask = response_mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, -1).amax(dim=1)


def place_score(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Put each sequence's scalar score on its last response token, 0 elsewhere.

    Args:
        scores: (B,) one outcome score per response; integer or bool scores become float32.
        response_mask: (B, T) bool or 0/1, true on response tokens up to and including EOS.

    Returns:
        (B, T) rewards with `scores[b]` at `last_response_index(response_mask)[b]` and 0 elsewhere;
        an all-masked row gets no reward at all (mwp_ReFT train_rl_reft.py:335-341).
    """
    if not scores.is_floating_point():
        scores = scores.to(torch.float32)
    last = last_response_index(response_mask)
    positions = torch.arange(response_mask.shape[1], device=response_mask.device)
    at_last = positions.unsqueeze(0) == last.unsqueeze(1)
    return torch.where(
        at_last, scores.unsqueeze(1), torch.zeros((), dtype=scores.dtype, device=scores.device)
    )


def kl_penalized_rewards(
    scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, response_mask: torch.Tensor
) -> torch.Tensor:
    """Per-token reward r_t = score * [t is the last response token] - kl_coef * kl_t.

    Args:
        scores: (B,) outcome score per response.
        kl: (B, T) per-token KL estimate (kl.KL_ESTIMATORS, not yet scaled), from the rollout policy
            and the frozen reference; values at masked positions are ignored.
        kl_coef: beta; 0.01 (P-CoT) or 0.05 (N-CoT) in the reference runs.
        response_mask: (B, T) bool or 0/1, true on response tokens up to and including EOS.

    Returns:
        (B, T) rewards in `kl`'s dtype, 0 where `response_mask` is false
        (mwp_ReFT train_rl_reft.py:343-353 and :371).
    """
    mask = response_mask.bool()
    score_rewards = place_score(scores.to(kl.dtype), mask)
    penalty = torch.where(mask, kl_coef * kl, torch.zeros((), dtype=kl.dtype, device=kl.device))
    return score_rewards - penalty
