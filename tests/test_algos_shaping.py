"""Score placement and KL-penalised per-token rewards."""

import pytest
import torch

from reft.algos.shaping import kl_penalized_rewards, last_response_index, place_score


@pytest.mark.parametrize(
    ("mask_row", "expected_index", "reason"),
    [
        ([1, 1, 1, 0, 0], 2, "ended with EOS at index 2, right padding after"),
        ([1, 1, 1, 1, 1], 4, "truncated: the last generated token"),
        ([0, 0, 1, 1, 0], 3, "left-padded full-sequence layout"),
        ([1, 0, 0, 0, 0], 0, "a single token (immediate EOS)"),
        ([0, 0, 0, 0, 0], -1, "all masked"),
    ],
)
def test_last_response_index(mask_row, expected_index, reason):
    assert last_response_index(torch.tensor([mask_row])).tolist() == [expected_index], reason


def test_place_score_eos_truncated_and_empty():
    mask = torch.tensor(
        [
            [True, True, True, False, False],  # EOS emitted at index 2
            [True, True, True, True, True],  # truncated at the length limit
            [False, False, False, False, False],  # nothing generated
        ]
    )
    rewards = place_score(torch.tensor([1.0, 0.1, 1.0]), mask)
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.1],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(rewards, expected)


def test_place_score_integer_scores_become_float():
    rewards = place_score(torch.tensor([1, 0]), torch.tensor([[1, 1], [1, 0]]))
    assert rewards.dtype == torch.float32
    assert rewards.tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_kl_penalized_rewards_hand_values():
    scores = torch.tensor([1.0, 0.1], dtype=torch.float64)
    kl = torch.tensor([[0.2, -0.1, 0.3, 9.0], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    # row 0: -0.1*0.2 = -0.02; -0.1*-0.1 = 0.01; 1 - 0.1*0.3 = 0.97; masked (kl 9 ignored) -> 0
    # row 1: -0.05 three times, then 0.1 - 0.05 = 0.05 on the last (truncated) token
    expected = torch.tensor(
        [[-0.02, 0.01, 0.97, 0.0], [-0.05, -0.05, -0.05, 0.05]], dtype=torch.float64
    )
    torch.testing.assert_close(kl_penalized_rewards(scores, kl, 0.1, mask), expected)


def test_kl_penalized_rewards_zero_coef_and_nan_kl_at_padding():
    mask = torch.tensor([[True, True, False]])
    kl = torch.tensor([[0.3, 0.4, float("nan")]])
    out = kl_penalized_rewards(torch.tensor([1.0]), kl, 0.0, mask)
    assert out.tolist() == [[0.0, 1.0, 0.0]]
    out = kl_penalized_rewards(torch.tensor([1.0]), kl, 0.05, mask)
    assert torch.isfinite(out).all()


def _reference_layout_rewards(ids, prompt_len, eos_id, scores, kl, kl_coef):
    """The reference's construction on full sequences (our own re-statement of
    mwp_ReFT train_rl_reft.py:332-353): mask from the last prompt column to before the final column,
    cut at the EOS column; the score on the column before EOS (or column -2); -kl_coef * kl."""
    rows, cols = len(ids), len(ids[0])
    mask = [[prompt_len - 1 <= t < cols - 1 for t in range(cols)] for _ in range(rows)]
    score = [[0.0] * cols for _ in range(rows)]
    for b in range(rows):
        score[b][cols - 2] = scores[b]
        eos_cols = [t for t in range(prompt_len, cols) if ids[b][t] == eos_id]
        if eos_cols:
            tidx = eos_cols[0]
            for t in range(tidx, cols):
                mask[b][t] = False
                score[b][t] = 0.0
            score[b][tidx - 1] = scores[b]
    rew = [
        [(score[b][t] - kl_coef * kl[b][t]) if mask[b][t] else 0.0 for t in range(cols)]
        for b in range(rows)
    ]
    return torch.tensor(mask), torch.tensor(rew, dtype=torch.float64)


def test_parity_with_reference_layout():
    eos, pad = 2, 0
    prompt_len = 3
    ids = torch.tensor(
        [
            [pad, 7, 8, 5, 6, eos, pad, pad],  # EOS at column 5
            [7, 8, 9, 5, 6, 5, 6, 5],  # truncated
            [pad, pad, 9, eos, pad, pad, pad, pad],  # immediate EOS
        ]
    )
    scores = [1.0, 0.1, 0.0]
    gen = torch.Generator().manual_seed(0)
    kl = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    ref_mask, ref_rew = _reference_layout_rewards(
        ids.tolist(), prompt_len, eos, scores, kl.tolist(), 0.05
    )
    # Our convention: the response-step mask in the same full-sequence coordinates.
    ours = kl_penalized_rewards(torch.tensor(scores, dtype=torch.float64), kl, 0.05, ref_mask)
    torch.testing.assert_close(ours, ref_rew)
    # And the score sits on the EOS-emitting step: column 4 (predicts the EOS at 5), 6, and 2.
    assert last_response_index(ref_mask).tolist() == [4, 6, 2]
