"""Length buckets: run a PPO forward on groups of rows of similar length, padding trimmed per group.

A rollout batch is `[prompt (left-padded to P) | response (right-padded to T)]`, padded to the
longest prompt and the longest response of the whole batch. On the demo's rollouts only ~68% of
those positions are real tokens; every forward and backward of the policy, the critic and the
reference computes on the rest. Splitting the rows into groups of similar response length, each
keeping only its own longest prompt and response, cuts that to ~79% (8 groups), and the LM head and
log-softmax, which run on response positions only, shrink more (bench/README.md).

The result is the same function of each row: a position's outputs depend only on the tokens at and
before it (causal attention), left padding is masked and position ids count real tokens only, so
removing padding columns changes nothing but float rounding (matrix shapes differ). Response
positions beyond a group's longest response are padding of every row in it; their outputs are 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_BUCKET_ROWS = 32
"""Fewest rows per group: smaller groups would make each matrix product too small to be efficient
(and micro-batches below 2 x this size are never split)."""


@dataclass(frozen=True)
class Bucket:
    """Rows of a `[prompt | response]` batch that run together, and the columns they keep."""

    rows: torch.Tensor
    """[n] long: the group's row indices in the batch."""
    start: int
    """First column kept: the group's longest prompt starts there."""
    response_length: int
    """T_c: the group's longest response; columns [start, P + T_c) are kept."""


def plan_buckets(
    attention_mask: torch.Tensor, response_length: int, max_buckets: int
) -> list[Bucket]:
    """Split the rows of a [B, P + T] batch into at most `max_buckets` groups of similar length.

    Rows are sorted by (response length, prompt length) and cut into equal groups of at least
    MIN_BUCKET_ROWS rows; `max_buckets` <= 1, or a batch too small to split, gives one group of
    every row with all its columns (the unbucketed forward).

    Plain loop:
        order = sorted(range(B), key=lambda i: (response_len[i], prompt_len[i]))
        for rows in split(order, k):
            start = P - max(prompt_len[i] for i in rows)
            T_c = max(response_len[i] for i in rows)
    """
    batch, length = attention_mask.shape
    prompt_length = length - response_length
    count = min(max_buckets, batch // MIN_BUCKET_ROWS)
    if count <= 1:
        return [Bucket(torch.arange(batch, device=attention_mask.device), 0, response_length)]
    real = attention_mask.bool()
    prompt_lengths = real[:, :prompt_length].sum(dim=1)
    response_lengths = real[:, prompt_length:].sum(dim=1).clamp(min=1)
    order = torch.argsort(response_lengths * (prompt_length + 1) + prompt_lengths, stable=True)
    buckets = []
    for rows in torch.tensor_split(order, count):
        start = prompt_length - int(prompt_lengths[rows].max())
        start = min(start, prompt_length - 1)  # keep at least one prompt column
        buckets.append(Bucket(rows, start, int(response_lengths[rows].max())))
    return buckets


def run_bucketed(
    forward: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor | None, ...]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    max_buckets: int,
) -> tuple[torch.Tensor | None, ...]:
    """`forward(ids, mask, T)` -> tuple of [n, T] tensors (or None), run per bucket and reassembled.

    Each output is [B, T] in the batch's row order, 0 at response positions a bucket did not keep;
    gradients flow through the reassembly. With one bucket, `forward` runs on the batch as given.
    """
    buckets = plan_buckets(attention_mask, response_length, max_buckets)
    if len(buckets) == 1:
        return forward(input_ids, attention_mask, response_length)
    end = input_ids.shape[1] - response_length
    parts = []
    for bucket in buckets:
        columns = slice(bucket.start, end + bucket.response_length)
        outputs = forward(
            input_ids[bucket.rows, columns],
            attention_mask[bucket.rows, columns],
            bucket.response_length,
        )
        padding = response_length - bucket.response_length
        parts.append([None if out is None else F.pad(out, (0, padding)) for out in outputs])
    back = torch.argsort(torch.cat([bucket.rows for bucket in buckets]))
    return tuple(
        None if column[0] is None else torch.cat(column)[back]
        for column in zip(*parts, strict=True)
    )
