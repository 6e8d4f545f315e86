"""Padding tokenised sequences into batches.

Training batches are padded on the right (labels IGNORE_INDEX on padding); generation prompts on the
left, so every prompt ends at the same position and new tokens are appended after it.
"""

from __future__ import annotations

import torch

from reft.data.tokenize import IGNORE_INDEX, SFTFeatures


def pad_sft_batch(features: list[SFTFeatures], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad SFT features -> input_ids, attention_mask, labels, each [B, L]."""
    length = max(len(item.input_ids) for item in features)
    input_ids = torch.full((len(features), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(features), length), dtype=torch.long)
    for row, item in enumerate(features):
        size = len(item.input_ids)
        input_ids[row, :size] = torch.tensor(item.input_ids)
        labels[row, :size] = torch.tensor(item.labels)
        attention_mask[row, :size] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pad_prompts_left(prompts: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompt ids -> input_ids, attention_mask, each [B, P]."""
    length = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, ids in enumerate(prompts):
        if ids:
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            attention_mask[row, length - len(ids) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
