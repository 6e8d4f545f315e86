"""Ranking losses over groups of candidates (pure torch): the listwise loss of `reft rm train
loss=listwise`, which compares the solutions of ONE question with each other.

Shapes: N candidates, flat; `groups` [N] holds each candidate's group (question) id.
"""

from __future__ import annotations

import math

import torch


def group_logsumexp(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """log(sum(exp(values[i]) for i in group g)) for g in range(num_groups): [num_groups].

    values: [N] (-inf allowed, but every group needs one finite value); groups: [N] long in
    [0, num_groups). Shifted by each group's (detached) maximum so large scores do not overflow.
    """
    peak = torch.full((num_groups,), -math.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, groups, values.detach(), reduce="amax")
    total = torch.zeros_like(peak).index_add(0, groups, torch.exp(values - peak[groups]))
    return peak + torch.log(total)


def listwise_loss_sum(
    scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Sum over the groups with a correct AND a wrong solution of -log(softmax mass on the correct
    ones): -log(sum_{i correct} exp(s_i) / sum_i exp(s_i)) over the group's solutions i.

    scores: [N] float, s_i = logit[1] - logit[0] of solution i; labels: [N] 0/1; groups: [N] any
    integer id of the group (question) of each solution. Groups with one label add nothing; with
    none mixed the result is a zero that still has a gradient. Plain loop it equals:
        total = 0.0
        for g in set(groups):
            s = [scores[i] for i in range(N) if groups[i] == g]
            y = [labels[i] for i in range(N) if groups[i] == g]
            if 0 < sum(y) < len(y):
                mass = sum(math.exp(a) for a, b in zip(s, y) if b) / sum(math.exp(a) for a in s)
                total += -math.log(mass)
        return total
    """
    positive = labels.bool()
    _, index = torch.unique(groups, return_inverse=True)
    members = torch.bincount(index).to(scores.dtype)
    correct = torch.bincount(index, weights=positive.to(scores.dtype))
    mixed = ((correct > 0) & (correct < members))[index]  # [N]: its group has both labels
    scores, positive = scores[mixed], positive[mixed]
    _, index = torch.unique(index[mixed], return_inverse=True)  # renumbered mixed groups
    num_groups = int(index.max()) + 1 if index.numel() else 0
    all_ = group_logsumexp(scores, index, num_groups)
    right = group_logsumexp(scores.masked_fill(~positive, -math.inf), index, num_groups)
    return (all_ - right).sum()
