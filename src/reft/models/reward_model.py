"""The outcome reward model's input format, loading and scoring (used by `reft rm train` and rerank@K).

The reward model is a 2-class sequence classifier (`AutoModelForSequenceClassification`, label 1 =
"correct"). Its input is the paper's prompt followed by the solution as it is written after that
prompt (for P-CoT the full program, header included; `reft.data.prompts.solution_text`), with no EOS:

    Question:\\n{question}\\nAnswer reasoning:\\n{solution}

The score of a solution is the classifier's probability of label 1. Hugging Face sequence classifiers
pool the logits of the RIGHTMOST token that is not the pad id, so batches are padded on the right
(real tokens keep positions 0..n-1) and a pad id inside the text is dropped before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from reft.data.prompts import render_prompt
from reft.data.tokenize import encode_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CORRECT_LABEL = 1
"""The reward model's class index for "this solution is correct"."""
NUM_LABELS = 2


def rm_input_ids(tokenizer: PreTrainedTokenizerBase, question: str, solution: str) -> list[int]:
    """Token ids the reward model reads: prompt (with the tokenizer's special tokens) + solution.

    Pad ids inside the text are dropped (possible when pad == eos and the text spells the EOS token):
    the classifier pools the last non-pad token, and a pad id there would move the pooled position.
    """
    ids = encode_prompt(tokenizer, render_prompt(question))
    ids += tokenizer.encode(solution, add_special_tokens=False)
    return [token for token in ids if token != tokenizer.pad_token_id]


def pad_right(sequences: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token ids -> input_ids, attention_mask, each [B, L]."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def load_reward_model(
    path: str, tokenizer: PreTrainedTokenizerBase, dtype: str = "float32", device: str = "auto"
) -> PreTrainedModel:
    """A 2-class sequence classifier from `path` (a `reft rm train` checkpoint, or a causal-LM
    checkpoint whose new head starts random), pooling on the tokenizer's pad id, in eval mode."""
    from transformers import AutoModelForSequenceClassification

    from reft.models.load import resolve_device, resolve_dtype

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=NUM_LABELS, dtype=resolve_dtype(dtype), attn_implementation="sdpa"
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(resolve_device(device)).eval()


@torch.no_grad()
def score_solutions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
) -> list[float]:
    """P(correct) of each (question, solution) pair, scored `batch_size` at a time."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = [rm_input_ids(tokenizer, q, s) for q, s in pairs[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in pad_right(chunk, tokenizer.pad_token_id).items()}
        logits = model(**batch).logits.float()
        scores += torch.softmax(logits, dim=-1)[:, CORRECT_LABEL].tolist()
    model.train(was_training)
    return scores
