"""Masked reductions and advantage whitening (torch only, no I/O).

Tensors are (B, T): B sequences in the batch, T response positions. A mask is a bool (or 0/1)
tensor of the same shape, true on the response tokens that count. Masked entries are dropped with
`torch.where`, never by multiplying, so garbage (even NaN or inf) at padded positions cannot leak
into a statistic.

Whitening is one of three functions with the same signature, picked once at config time through
`WHITENERS` (mwp_ReFT `--adv_whitening` takes "global" or "local", train_rl_reft.py:420-423):

- "global": mean and variance over the response tokens of ALL data-parallel processes
  (the reference default, train_rl_reft.py:935; src/utils.py:84-106).
- "local": mean and variance over this process's batch (TRL 0.7.2 `trl.core.masked_whiten`).
- "none": advantages used as they are.

Deviations from the reference, all without effect on the losses (which mask anyway):
- Every whitener returns 0 at masked positions; TRL leaves whitened garbage there.
- The global variant all-reduces a sum, a count and a centred sum of squares instead of
  all-gathering the whole padded (B, T) tensors, so processes may hold batches of different shapes.
- mwp_ReFT's global function names its flag the other way round (`shift_mean=True` ADDS the mean
  back, src/utils.py:104-105); it is called with the default, i.e. the mean is removed. Here
  `shift_mean` has TRL's meaning everywhere: True removes the mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

#: Added to the variance before the reciprocal square root (TRL 0.7.2 `masked_whiten`, which
#: mwp_ReFT uses for both its local and global whitening).
WHITEN_EPS = 1e-8


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is true.

    Args:
        values: any shape, e.g. (B, T).
        mask: same shape as `values`; bool or 0/1.
        dim: None sums everything (0-dim result); an int sums along that dimension only
            (e.g. dim=1 on (B, T) gives (B,)).
    """
    kept = torch.where(
        mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device)
    )
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is true (TRL 0.7.2 `masked_mean`).

    Args:
        values: any shape, e.g. (B, T).
        mask: same shape as `values`; bool or 0/1.
        dim: None averages over everything (0-dim result); an int averages along that dimension
            (dim=1 on (B, T) gives the per-sequence mean, shape (B,)).

    An empty selection (an all-masked row, or an all-masked tensor) gives NaN, as 0/0 does; callers
    that need a finite value (the loss aggregators in losses.py) clamp the count themselves.
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim=dim)
    return masked_sum(values, mask, dim) / count


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of all `values` where `mask` is true; 0-dim result.

    Args:
        values: any shape, e.g. (B, T).
        mask: same shape as `values`; bool or 0/1.
        unbiased: multiply by n / (n - 1) (Bessel). True is TRL 0.7.2's default and what mwp_ReFT's
            whitening uses.

    Raises ValueError when fewer than 1 (biased) or 2 (unbiased) entries are selected: TRL raises on
    0 and silently returns NaN on 1. Counting costs one host sync.
    """
    count = int(mask.bool().sum())
    needed = 2 if unbiased else 1
    if count < needed:
        raise ValueError(f"masked_var needs at least {needed} unmasked values, got {count}")
    centred = values - masked_mean(values, mask)
    var = masked_mean(centred * centred, mask)
    return var * (count / (count - 1)) if unbiased else var


def _apply_whitening(
    values: torch.Tensor,
    mask: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    shift_mean: bool,
) -> torch.Tensor:
    """(values - mean) / sqrt(var + eps), the mean added back unless `shift_mean`; 0 where masked."""
    whitened = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(
        mask.bool(), whitened, torch.zeros((), dtype=whitened.dtype, device=whitened.device)
    )


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True
) -> torch.Tensor:
    """Whiten with the mean and unbiased variance of this process's unmasked values.

    Args:
        values: (B, T), e.g. GAE advantages.
        mask: (B, T) bool or 0/1, true on response tokens.
        shift_mean: True gives zero mean (TRL 0.7.2 `masked_whiten`); False keeps the original mean
            and only rescales.

    Returns:
        (B, T) whitened values, 0 where `mask` is false. Differentiable through mean and variance.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask, unbiased=True)
    return _apply_whitening(values, mask, mean, var, shift_mean)


@torch.no_grad()
def _global_mean_var(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance over the unmasked values of every process (two all-reduces).

    Two passes (sum and count, then the centred sum of squares) rather than E[x^2] - E[x]^2, which
    cancels badly when the mean is large next to the spread. Accumulates in at least float32.
    """
    acc = torch.promote_types(values.dtype, torch.float32)
    x, m = values.to(acc), mask.bool()
    sum_count = torch.stack([masked_sum(x, m), m.sum().to(acc)])
    dist.all_reduce(sum_count)
    count = int(sum_count[1])
    if count < 2:  # every process sees the same count, so all of them raise together
        raise ValueError(f"global whitening needs at least 2 unmasked values, got {count}")
    mean = sum_count[0] / count
    centred_sq = masked_sum((x - mean) ** 2, m).reshape(1)
    dist.all_reduce(centred_sq)
    return mean.to(values.dtype), (centred_sq[0] / (count - 1)).to(values.dtype)


def masked_whiten_global(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True
) -> torch.Tensor:
    """Whiten with the mean and unbiased variance of the unmasked values of ALL processes.

    Same contract as `masked_whiten`; the statistics come from every process in the default
    torch.distributed group (mwp_ReFT src/utils.py:84-106 `allgather_masked_whiten`, the reference's
    default). Without an initialised process group it is exactly `masked_whiten`. The statistics are
    computed without gradient (advantages carry none). Every process must call it (collective).

    Args:
        values: (B_p, T_p) on process p; shapes may differ between processes.
        mask: (B_p, T_p) bool or 0/1.
        shift_mean: True gives zero global mean.

    Returns:
        (B_p, T_p) whitened values, 0 where `mask` is false.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return masked_whiten(values, mask, shift_mean)
    mean, var = _global_mean_var(values, mask)
    return _apply_whitening(values, mask, mean, var, shift_mean)


def no_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """The "none" choice: `values` unchanged on response tokens, 0 where `mask` is false.

    `shift_mean` is accepted and ignored so that all `WHITENERS` share one signature.
    Shapes: values (B, T), mask (B, T) -> (B, T).
    """
    del shift_mean
    return torch.where(
        mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device)
    )


Whitener = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]

#: Config value -> whitening function; the trainer looks this up once.
WHITENERS: dict[str, Whitener] = {
    "global": masked_whiten_global,
    "local": masked_whiten,
    "none": no_whiten,
}
