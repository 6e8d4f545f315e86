"""Masked reductions and whitening: hand values, a float64 plain-loop oracle, edge cases, and a
2-process gloo run of the global whitening against local whitening of the concatenated data."""

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reft.algos.normalize import (
    WHITENERS,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    masked_whiten_global,
    no_whiten,
)

VALUES = torch.tensor([[1.0, 2.0, 3.0, 100.0]], dtype=torch.float64)
MASK = torch.tensor([[True, True, True, False]])


def test_hand_values():
    # selected: 1, 2, 3 -> sum 6, mean 2
    assert masked_sum(VALUES, MASK).item() == 6.0
    assert masked_mean(VALUES, MASK).item() == 2.0
    # squared deviations 1 + 0 + 1 = 2; unbiased 2 / (3 - 1) = 1; biased 2 / 3
    assert masked_var(VALUES, MASK).item() == pytest.approx(1.0)
    assert masked_var(VALUES, MASK, unbiased=False).item() == pytest.approx(2.0 / 3.0)
    # (v - 2) / sqrt(1 + 1e-8) -> -1, 0, 1; the masked 100 becomes 0
    expected = torch.tensor([[-1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(masked_whiten(VALUES, MASK), expected, rtol=1e-7, atol=1e-7)
    # shift_mean=False adds the mean 2 back on the unmasked tokens: 1, 2, 3
    torch.testing.assert_close(
        masked_whiten(VALUES, MASK, shift_mean=False),
        torch.tensor([[1.0, 2.0, 3.0, 0.0]], dtype=torch.float64),
        rtol=1e-7,
        atol=1e-7,
    )


def test_mean_along_dim_and_empty_row():
    values = torch.tensor([[1.0, 2.0], [3.0, 5.0], [7.0, 7.0]])
    mask = torch.tensor([[1, 0], [1, 1], [0, 0]])  # 0/1 masks work as well as bool
    # row means: 1 / 1 = 1; (3 + 5) / 2 = 4; empty row -> 0 / 0 = NaN
    means = masked_mean(values, mask, dim=1)
    assert means[:2].tolist() == [1.0, 4.0]
    assert math.isnan(means[2].item())
    assert masked_sum(values, mask, dim=1).tolist() == [1.0, 8.0, 0.0]
    # column means: (1 + 3) / 2 = 2; 5 / 1 = 5
    assert masked_mean(values, mask, dim=0).tolist() == [2.0, 5.0]


def test_garbage_at_masked_positions_does_not_leak():
    values = torch.tensor([[1.0, float("nan"), 3.0, float("inf")]])
    mask = torch.tensor([[True, False, True, False]])
    assert masked_sum(values, mask).item() == 4.0
    assert masked_var(values, mask).item() == pytest.approx(2.0)  # (1 + 1) / (2 - 1)
    out = masked_whiten(values, mask)
    assert torch.isfinite(out).all()
    assert out[0, 1].item() == 0.0 and out[0, 3].item() == 0.0


def test_var_raises_on_too_few_values():
    one = torch.tensor([[True, False, False, False]])
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(VALUES, one)
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(VALUES, one)
    assert masked_var(VALUES, one, unbiased=False).item() == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        masked_var(VALUES, torch.zeros_like(one), unbiased=False)


def _padded_mask(lengths_and_offsets: list[tuple[int, int]], width: int) -> torch.Tensor:
    """Rows with `offset` masked positions (left padding), `length` true ones, then right padding."""
    mask = torch.zeros(len(lengths_and_offsets), width, dtype=torch.bool)
    for row, (length, offset) in enumerate(lengths_and_offsets):
        mask[row, offset : offset + length] = True
    return mask


def _whiten_oracle(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool) -> list[list[float]]:
    """Plain Python float64: collect, mean, unbiased variance, whiten, 0 where masked."""
    rows, cols = values.shape
    picked = [values[b, t].item() for b in range(rows) for t in range(cols) if mask[b, t]]
    mean = sum(picked) / len(picked)
    var = sum((x - mean) ** 2 for x in picked) / (len(picked) - 1)
    out = [[0.0] * cols for _ in range(rows)]
    for b in range(rows):
        for t in range(cols):
            if mask[b, t]:
                out[b][t] = (values[b, t].item() - mean) / math.sqrt(var + 1e-8)
                out[b][t] += 0.0 if shift_mean else mean
    return out


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_plain_loop_oracle(shift_mean):
    gen = torch.Generator().manual_seed(0)
    values = 3.0 + 2.0 * torch.randn(5, 9, generator=gen, dtype=torch.float64)
    mask = _padded_mask([(9, 0), (4, 2), (1, 8), (0, 0), (6, 3)], width=9)
    expected = torch.tensor(_whiten_oracle(values, mask, shift_mean), dtype=torch.float64)
    torch.testing.assert_close(
        masked_whiten(values, mask, shift_mean), expected, rtol=1e-12, atol=1e-12
    )
    whitened = masked_whiten(values, mask, shift_mean)
    target_mean = 0.0 if shift_mean else masked_mean(values, mask).item()
    assert masked_mean(whitened, mask).item() == pytest.approx(target_mean, abs=1e-12)
    assert masked_var(whitened, mask).item() == pytest.approx(1.0, rel=1e-6)


def test_registry_and_no_whiten():
    assert set(WHITENERS) == {"global", "local", "none"}
    assert WHITENERS["local"] is masked_whiten
    assert WHITENERS["global"] is masked_whiten_global
    out = WHITENERS["none"](VALUES, MASK, True)
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0, 3.0, 0.0]], dtype=torch.float64))
    assert no_whiten is WHITENERS["none"]


def test_global_without_process_group_is_local():
    assert not dist.is_initialized()
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    mask = _padded_mask([(6, 0), (2, 1), (3, 3)], width=6)
    torch.testing.assert_close(masked_whiten_global(values, mask), masked_whiten(values, mask))


# -- two processes over gloo ------------------------------------------------------------------


def _rank_data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Different shapes per rank: rank 0 (3, 5), rank 1 (2, 7); padded rows on both."""
    gen = torch.Generator().manual_seed(100 + rank)
    if rank == 0:
        values = 1.0 + torch.randn(3, 5, generator=gen, dtype=torch.float64)
        mask = _padded_mask([(5, 0), (2, 3), (3, 0)], width=5)
    else:
        values = -2.0 + 3.0 * torch.randn(2, 7, generator=gen, dtype=torch.float64)
        mask = _padded_mask([(4, 1), (7, 0)], width=7)
    values[~mask] = 1e6  # garbage that must not reach the statistics
    return values, mask


def _gloo_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        values, mask = _rank_data(rank)
        results = {
            "shift": masked_whiten_global(values, mask, shift_mean=True),
            "no_shift": masked_whiten_global(values, mask, shift_mean=False),
        }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_global_whitening_two_processes_matches_local_on_concatenation(tmp_path):
    world_size = 2
    mp.spawn(
        _gloo_worker,
        args=(world_size, str(tmp_path / "pg_init"), str(tmp_path)),
        nprocs=world_size,
        join=True,
    )
    (v0, m0), (v1, m1) = _rank_data(0), _rank_data(1)
    # Concatenate the two batches, padding rank 0's rows to width 7 with masked entries.
    v0_wide = torch.cat([v0, torch.zeros(3, 2, dtype=torch.float64)], dim=1)
    m0_wide = torch.cat([m0, torch.zeros(3, 2, dtype=torch.bool)], dim=1)
    all_values, all_mask = torch.cat([v0_wide, v1]), torch.cat([m0_wide, m1])
    for key, shift in (("shift", True), ("no_shift", False)):
        expected = masked_whiten(all_values, all_mask, shift_mean=shift)
        got0 = torch.load(tmp_path / "rank0.pt")[key]
        got1 = torch.load(tmp_path / "rank1.pt")[key]
        torch.testing.assert_close(got0, expected[:3, :5], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got1, expected[3:], rtol=1e-12, atol=1e-12)
    # Per-rank local whitening is different: the global statistics really were shared.
    assert not torch.allclose(torch.load(tmp_path / "rank0.pt")["shift"], masked_whiten(v0, m0))
