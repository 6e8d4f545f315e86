"""Critic-free advantages: one baseline per GROUP of responses sampled for the same prompt.

GRPO, Dr. GRPO, RLOO and REINFORCE++-baseline sample several responses per prompt and compare
each response's scalar score with the other scores of its group, instead of asking a value model.
The functions here take
- `scores`: (N,) one outcome score per response (1 correct, 0.1 answer-but-wrong, 0 no answer);
- `group_ids`: (N,) int64, equal for the responses of one prompt.
A group is identified by its id, never by position: its members may sit anywhere in the batch
(interleaved, shuffled, or gathered from several micro-batches or processes), so the caller must
pass the whole group at once; statistics over part of a group are a different estimator.

Every estimator returns (N,) per-sequence advantages; `sequence_to_tokens` spreads them over the
response tokens, and the caller may then whiten with `normalize.WHITENERS` (REINFORCE++ does,
over the global batch). `GROUP_ESTIMATORS` is the registry the trainer looks up once.

Choices that differ between the reference implementations, made once here:
- A group of size 1 has no baseline: its advantage is 0 (it carries no learning signal). verl's
  GRPO/RLOO/REINFORCE++-baseline instead use mean 0 (and std 1), i.e. the raw score.
- An all-equal group gets EXACTLY 0, never NaN: scores are shifted by the group's maximum before
  summing, so such a group sums exact zeros. Plain torch.mean/std leave a rounding residue: seven
  float32 0.3s give r - mean = 3e-8 and std = 3e-8, which (r - mean) / (std + 1e-6) turns into 0.03.
- std is unbiased (Bessel), as torch.std in TRL's GRPOTrainer, verl and understand-r1-zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reft.algos.advantages import discounted_returns

#: Added to the group std before dividing (verl `compute_grpo_outcome_advantage`'s default).
#: TRL's GRPOTrainer adds 1e-4, understand-r1-zero 1e-8. With 0/0.1/1 rewards a non-constant group
#: of G <= 64 has std >= 0.1/sqrt(G) > 1e-2, so 1e-6 changes advantages by < 1e-4 relative, while
#: all-equal groups are exactly 0 whatever eps (their numerator is exactly 0).
GRPO_EPS = 1e-6


def _check_groups(scores: torch.Tensor, group_ids: torch.Tensor) -> None:
    if scores.dim() != 1 or group_ids.shape != scores.shape:
        raise ValueError(
            f"expected (N,) scores and group_ids, got {scores.shape}, {group_ids.shape}"
        )
    if group_ids.is_floating_point():
        raise ValueError(f"group_ids must be integers, got {group_ids.dtype}")


def group_mean_std(
    scores: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per element: the mean, the unbiased std and the size of its group.

    Args:
        scores: (N,) float scores; integer or bool scores become float32.
        group_ids: (N,) integer group ids, in any order and with any values.

    Returns:
        mean: (N,) mean of the element's group, in the scores' float dtype.
        std: (N,) unbiased std sqrt(sum (x - mean)^2 / (n - 1)); 0 for a group of size 1.
        size: (N,) int64 number of elements in the element's group.

    An all-equal group gets mean == its value exactly and std == 0 exactly. Plain loop (the float64
    oracle in tests/test_algos_group_advantages.py):

        for i in range(N):
            members = [scores[j] for j in range(N) if group_ids[j] == group_ids[i]]
            n = len(members)
            mean[i] = sum(members) / n
            std[i] = sqrt(sum((x - mean[i]) ** 2 for x in members) / (n - 1)) if n > 1 else 0.0
            size[i] = n
    """
    _check_groups(scores, group_ids)
    if not scores.is_floating_point():
        scores = scores.to(torch.float32)
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    n_groups = counts.shape[0]
    # Shift by the group max first: exact zeros for equal scores, and less cancellation.
    shift = scores.new_zeros(n_groups).scatter_reduce(
        0, inverse, scores, reduce="amax", include_self=False
    )
    shifted = scores - shift[inverse]
    shifted_mean = scores.new_zeros(n_groups).index_add(0, inverse, shifted) / counts
    centred = shifted - shifted_mean[inverse]
    sq_sum = scores.new_zeros(n_groups).index_add(0, inverse, centred * centred)
    # n = 1: sq_sum is exactly 0, so clamping the divisor gives std 0 instead of 0/0.
    std = torch.sqrt(sq_sum / (counts - 1).clamp(min=1))
    mean = shift + shifted_mean
    return mean[inverse], std[inverse], counts[inverse]


def grpo_advantages(
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    scale_by_std: bool = True,
    eps: float = GRPO_EPS,
) -> torch.Tensor:
    """GRPO outcome advantage (r - mean_g) / (std_g + eps), or r - mean_g without `scale_by_std`.

    Source: Shao et al. 2024, "DeepSeekMath" (arXiv 2402.03300), §4.1.2 outcome supervision:
    A_i = (r_i - mean(r)) / std(r) over the G outputs of one question, given to every token of
    output i. TRL's GRPOTrainer and verl
    (`compute_grpo_outcome_advantage`) use torch's unbiased std plus eps; see `GRPO_EPS`.

    Args:
        scores: (N,) one score per response.
        group_ids: (N,) integer group (prompt) ids.
        scale_by_std: divide by the group std (False gives Dr. GRPO, `dr_grpo_advantages`).
        eps: added to the std; any eps >= 0 is NaN-free (a zero-std group gives 0).

    Returns:
        (N,) advantages; exactly 0 for all-equal groups and groups of size 1.

    Plain loop: `adv[i] = (scores[i] - mean[i]) / (std[i] + eps) if std[i] > 0 else 0.0`, with
    mean and std from the `group_mean_std` loop (`scores[i] - mean[i]` without `scale_by_std`).
    """
    mean, std, _ = group_mean_std(scores, group_ids)
    centred = scores.to(mean.dtype) - mean
    if not scale_by_std:
        return centred
    # std == 0 means centred == 0 exactly; the guard only keeps eps = 0 from giving 0/0.
    positive = std > 0
    denominator = torch.where(positive, std + eps, torch.ones_like(std))
    return torch.where(positive, centred / denominator, torch.zeros_like(centred))


def dr_grpo_advantages(scores: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO advantage r - mean_g: GRPO's without the division by the group std.

    Source: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective"
    (arXiv 2503.20783), "GRPO leads to biased optimization": dividing by std(r) up-weights questions that are too easy or too
    hard (low std), a "question-level difficulty bias"; sail-sg/understand-r1-zero
    train_zero_math.py `compute_monte_carlo_advantages` (critic_type "drgrpo"). Pair it with the
    `losses.token_sum_constant` aggregation, Dr. GRPO's other change.

    Shapes: scores (N,), group_ids (N,) -> (N,); 0 for all-equal groups and groups of size 1.
    Plain loop: `adv[i] = scores[i] - mean[i]` (mean from the `group_mean_std` loop).
    """
    return grpo_advantages(scores, group_ids, scale_by_std=False)


def rloo_advantages(scores: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out advantage r_i - mean_{j != i in g} r_j.

    Sources: Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!" (ICLR 2019
    DeepRLStructPred workshop); Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
    Optimization for Learning from Human Feedback in LLMs" (arXiv 2402.14740), RLOO; verl
    `compute_rloo_outcome_advantage`. The baseline of sample i uses only the other samples, so it
    is independent of sample i and the estimate stays unbiased.

    Shapes: scores (N,), group_ids (N,) -> (N,). A group of size 1 has no other sample, hence no
    baseline: its advantage is 0 (verl keeps the raw score there). All-equal groups give exactly 0.

    Plain loop (the oracle):

        for i in range(N):
            others = [scores[j] for j in range(N) if j != i and group_ids[j] == group_ids[i]]
            adv[i] = scores[i] - sum(others) / len(others) if others else 0.0

    Computed as G / (G - 1) * (r_i - mean_g), which is the same: r_i - (G mean_g - r_i) / (G - 1).
    """
    mean, _, size = group_mean_std(scores, group_ids)
    centred = scores.to(mean.dtype) - mean
    n = size.to(mean.dtype)  # G / (G - 1) in the scores' precision, not float32
    factor = torch.where(size > 1, n / (n - 1).clamp(min=1), torch.zeros_like(n))
    return centred * factor


def reinforce_pp_returns(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float
) -> torch.Tensor:
    """REINFORCE++ advantage before normalisation: the discounted return of the token rewards.

    Source: Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
    Models" (arXiv 2501.03262): token reward r_t = [t is EOS] * score - beta * KL_t (our
    `shaping.kl_penalized_rewards`), advantage A_t = sum_{s >= t} gamma^(s - t) r_s, then
    normalised over the GLOBAL batch: the caller does that with `normalize.WHITENERS["global"]`.
    No critic and no group. verl `compute_reinforce_plus_plus_outcome_advantage`.

    Args:
        token_rewards: (B, T) per-token rewards (KL-penalised).
        mask: (B, T) bool or 0/1, true on response tokens.
        gamma: discount (1.0 in the paper's setting).

    Returns:
        (B, T) returns, 0 where `mask` is false. This is `advantages.discounted_returns`, whose
        docstring gives the plain loop; verl resets the running return at masked positions instead
        of stepping over them, which differs only for masks with holes.
    """
    return discounted_returns(token_rewards, mask, gamma)


def reinforce_pp_baseline_scores(scores: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """REINFORCE++-baseline's per-sequence advantage r - mean_g, before global normalisation.

    Source: Hu 2025 (arXiv 2501.03262, the REINFORCE++-baseline variant for several samples per
    prompt): subtract the group's mean score (no std division, so no difficulty bias), give it to
    every response token, then whiten over the global batch; the KL penalty can then go into the
    loss (beta * `kl.kl_k3` per token) instead of the reward. OpenRLHF `advantage_estimator="reinforce_baseline"`;
    verl `compute_reinforce_plus_plus_baseline_outcome_advantage`.

    Shapes: scores (N,), group_ids (N,) -> (N,); then `sequence_to_tokens` and the global whitener.
    Numerically the same as `dr_grpo_advantages` (its own name, because the caller whitens it).
    Plain loop: `adv[i] = scores[i] - mean[i]` (mean from the `group_mean_std` loop).
    """
    return grpo_advantages(scores, group_ids, scale_by_std=False)


def sequence_to_tokens(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Give each sequence's value to all of its response tokens, 0 elsewhere.

    Shapes: values (N,), mask (N, T) bool or 0/1 -> (N, T) in `values`' dtype. A row whose mask
    is all false is all 0. Plain loop: `out[b][t] = values[b] if mask[b][t] else 0.0`.
    """
    if values.dim() != 1 or mask.dim() != 2 or mask.shape[0] != values.shape[0]:
        raise ValueError(f"expected (N,) values and (N, T) mask, got {values.shape}, {mask.shape}")
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(mask.bool(), values.unsqueeze(1), zero)


GroupEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Config value -> (scores (N,), group_ids (N,)) -> per-sequence advantages (N,); the trainer
#: looks this up once and spreads the result with `sequence_to_tokens`.
GROUP_ESTIMATORS: dict[str, GroupEstimator] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_scores,
}
