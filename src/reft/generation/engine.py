"""The one generation engine: batched sampling with a KV cache for `reft sample`, evaluation,
self-training and PPO rollouts.

Every setting is explicit (`SamplingConfig`): nothing is taken from a checkpoint's
`generation_config.json`, so a model that ships, say, `top_k=20` or a repetition penalty samples
exactly as configured. The reference samples its RL rollouts with temperature 1, top_k 0 (off),
top_p 1 (train_rl_reft.py), which is `SamplingConfig(do_sample=True)`.

Output contract (`GeneratedBatch`), the same for both engines: each prompt is repeated `num_samples`
times in consecutive rows; a response is cut after the FIRST end-of-sequence token it generates, that
EOS is part of the response and of its mask (PPO puts the reward on it), everything after it is
padding outside the mask. Masks are computed from the generated tokens only, never from `== pad_id`,
so they are right when the pad id equals the EOS id.

Prompts are batched in order of length (less left padding), `batch_size` rows at a time, and the
results returned in input order. Two engines decode a batch (`GenerationEngine`):
- `reft` (default): a small decode loop of our own. Its KV cache is allocated once per batch and read
  as a growing view, where transformers' dynamic cache concatenates (copies) all of it at every step;
  the attention mask is built once and updated in place; a prompt's K samples share one prefill;
  rows that have produced EOS leave the batch; no logits processors run. On a 2-core CPU with the
  tiny-llama preset it is 1.5-2x `model.generate` on fixed-length greedy batches of 64, ~2x for
  8 prompts x 8 samples and ~4x on rollout-like sampling where rows end at different lengths
  (bench/README.md). It needs a decoder whose layers all use plain full attention (Llama, Qwen2,
  GPT-2, ... families) with sdpa or eager attention, and says so otherwise. It also accepts a
  `torch.compile(model, dynamic=True)` model: another 10-20% on CPU after 10-25 s of compilation.
- `hf`: `model.generate` with its default dynamic cache, for any other causal LM.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from reft.data.collate import pad_prompts_left
from reft.data.tokenize import encode_prompt
from reft.generation.config import GenerationEngine, SamplingConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


COMPACT_FRACTION = 0.25
"""reft engine: rows that have produced EOS leave the decoding batch once they are this fraction of it
(dropping them copies the others' KV cache, so it is not done for every single finished row)."""


@dataclasses.dataclass
class GeneratedBatch:
    """Token ids and masks of N = num_prompts x num_samples generated sequences, on the model's device."""

    prompt_ids: torch.Tensor
    """[N, P] long: the prompt of each row, left-padded with the pad id."""
    prompt_mask: torch.Tensor
    """[N, P] long: 1 on prompt tokens, 0 on left padding."""
    response_ids: torch.Tensor
    """[N, T] long: generated tokens, right-padded with the pad id after the first EOS."""
    response_mask: torch.Tensor
    """[N, T] bool: True on every generated token up to and including the EOS that ended it."""
    finished: torch.Tensor
    """[N] bool: True if the row produced EOS, False if cut at max_new_tokens (mask then all True)."""
    num_samples: int
    """K: rows k*K .. k*K+K-1 are the samples of prompt k."""


@dataclasses.dataclass
class Completion:
    """One decoded response."""

    text: str
    """The response text, without the EOS and other special tokens."""
    token_ids: list[int]
    """The response tokens, ending with the EOS when finished (the tokens under response_mask)."""
    num_tokens: int
    """len(token_ids)."""
    finished: bool
    """True if the model ended the response with EOS, False if it was cut at max_new_tokens."""


def generate_ids(
    model: PreTrainedModel,
    prompt_ids: list[list[int]],
    config: SamplingConfig,
    *,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    seed: int = 0,
) -> GeneratedBatch:
    """Generate `config.num_samples` responses for each prompt (token ids, no special tokens added).

    Sampling with the same seed, prompts and config gives the same tokens on CPU, whatever ran before:
    the global torch RNG is neither read nor advanced. The model is put in eval mode for the call and
    returned to its previous mode.
    """
    if not prompt_ids or any(len(ids) == 0 for ids in prompt_ids):
        raise ValueError("generate_ids needs at least one prompt, and no empty prompt")
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    device = next(model.parameters()).device
    batches = []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # the hf engine samples from the global RNG
            generator = torch.Generator(device=device).manual_seed(seed)
            order = sorted(range(len(prompt_ids)), key=lambda index: len(prompt_ids[index]))
            for groups in _rows_in_chunks(order, config.num_samples, config.batch_size):
                prompts = [prompt_ids[index] for index, _ in groups]
                repeats = [count for _, count in groups]
                if config.engine is GenerationEngine.reft:
                    raw = _decode_loop(
                        model, prompts, repeats, config, eos_ids, pad_token_id, generator
                    )
                else:
                    rows = [prompt_ids[index] for index, count in groups for _ in range(count)]
                    raw = _hf_generate(model, rows, config, eos_ids, pad_token_id)
                batches.append(_finish(*raw, eos_ids, pad_token_id, config.num_samples))
    finally:
        model.train(was_training)
    return _in_prompt_order(_concat(batches, pad_token_id), order)


def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    config: SamplingConfig,
    seed: int = 0,
) -> list[list[Completion]]:
    """Generate and decode `config.num_samples` completions per prompt: result[i][k] for prompt i.

    Prompts are encoded with the tokenizer's own special tokens (as in training); pad and EOS ids come
    from the tokenizer.
    """
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs an EOS and a pad token (see reft.models.load)")
    batch = generate_ids(
        model,
        [encode_prompt(tokenizer, prompt) for prompt in prompts],
        config,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        seed=seed,
    )
    completions = []
    for row in range(batch.response_ids.shape[0]):
        ids = batch.response_ids[row][batch.response_mask[row]].tolist()
        finished = bool(batch.finished[row])
        text = tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
        completions.append(Completion(text, ids, len(ids), finished))
    k = config.num_samples
    return [completions[i : i + k] for i in range(0, len(completions), k)]


def response_mask_from_ids(
    response_ids: torch.Tensor, eos_token_ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, T] generated ids -> (mask [N, T] bool up to and including the first EOS, finished [N] bool).

    Only the generated part is looked at, so a pad id equal to the EOS id is handled: the first EOS
    ends the response whatever follows it. Equivalent loop, per row:
        end = next((t for t, tok in enumerate(row) if tok in eos), None)
        mask = [end is None or t <= end for t in range(T)]
    """
    is_eos = torch.isin(response_ids, torch.tensor(eos_token_ids, device=response_ids.device))
    finished = is_eos.any(dim=1)
    length = response_ids.shape[1]
    end = torch.where(finished, is_eos.int().argmax(dim=1), length)
    mask = torch.arange(length, device=response_ids.device)[None, :] <= end[:, None]
    return mask, finished


def _rows_in_chunks(
    order: list[int], num_samples: int, batch_size: int
) -> list[list[tuple[int, int]]]:
    """Split the rows (num_samples per prompt, prompts taken in `order`) into batches of at most
    batch_size rows. Each batch is a list of (prompt index, number of its samples in this batch).

    Prompts come in order of length, so that a batch holds prompts of similar lengths: less left
    padding to prefill and to attend to at every step.
    """
    rows = [index for index in order for _ in range(num_samples)]
    chunks = []
    for start in range(0, len(rows), batch_size):
        groups: list[tuple[int, int]] = []
        for index in rows[start : start + batch_size]:
            if groups and groups[-1][0] == index:
                groups[-1] = (index, groups[-1][1] + 1)
            else:
                groups.append((index, 1))
        chunks.append(groups)
    return chunks


def _in_prompt_order(batch: GeneratedBatch, order: list[int]) -> GeneratedBatch:
    """Rows generated for the prompts in `order` -> rows in the prompts' input order."""
    k = batch.num_samples
    rank = torch.empty(len(order), dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(len(order))
    rows = (rank[:, None] * k + torch.arange(k)).flatten().to(batch.response_ids.device)
    tensors = ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "finished")
    return dataclasses.replace(batch, **{name: getattr(batch, name)[rows] for name in tensors})


def _finish(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    raw_response: torch.Tensor,
    eos_ids: Sequence[int],
    pad_token_id: int,
    num_samples: int,
) -> GeneratedBatch:
    """Cut each raw response after its first EOS and pad the rest: one engine batch -> GeneratedBatch."""
    mask, finished = response_mask_from_ids(raw_response, eos_ids)
    return GeneratedBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=raw_response.masked_fill(~mask, pad_token_id),
        response_mask=mask,
        finished=finished,
        num_samples=num_samples,
    )


def _concat(batches: list[GeneratedBatch], pad_token_id: int) -> GeneratedBatch:
    """Concatenate engine batches row-wise, re-padding prompts (left) and responses (right)."""
    prompt_len = max(b.prompt_ids.shape[1] for b in batches)
    response_len = max(b.response_ids.shape[1] for b in batches)

    def pad(tensor: torch.Tensor, length: int, value: int | bool, left: bool) -> torch.Tensor:
        missing = length - tensor.shape[1]
        filler = tensor.new_full((tensor.shape[0], missing), value)
        return torch.cat([filler, tensor] if left else [tensor, filler], dim=1)

    return GeneratedBatch(
        prompt_ids=torch.cat([pad(b.prompt_ids, prompt_len, pad_token_id, True) for b in batches]),
        prompt_mask=torch.cat([pad(b.prompt_mask, prompt_len, 0, True) for b in batches]),
        response_ids=torch.cat(
            [pad(b.response_ids, response_len, pad_token_id, False) for b in batches]
        ),
        response_mask=torch.cat(
            [pad(b.response_mask, response_len, False, False) for b in batches]
        ),
        finished=torch.cat([b.finished for b in batches]),
        num_samples=batches[0].num_samples,
    )


def _hf_generate(
    model: PreTrainedModel,
    prompts: list[list[int]],
    config: SamplingConfig,
    eos_ids: list[int],
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`hf` engine, one batch -> (prompt ids [n, P], prompt mask [n, P], raw response ids [n, T]).

    The checkpoint's own generation_config is swapped for an empty one during the call, so none of its
    settings (top_k, repetition penalty, ...) applies; transformers draws samples from the global torch
    RNG, which the caller has seeded.
    """
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    batch = {
        key: value.to(device) for key, value in pad_prompts_left(prompts, pad_token_id).items()
    }
    sampling = {}
    if config.do_sample:
        # top_k must be given even when 0: left unset, transformers would apply its default top_k=50.
        sampling = {"temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p}
    settings = GenerationConfig(
        do_sample=config.do_sample,
        max_new_tokens=config.max_new_tokens,
        num_beams=1,
        eos_token_id=eos_ids,
        pad_token_id=pad_token_id,
        **sampling,
    )
    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        with torch.inference_mode():
            output = model.generate(**batch, generation_config=settings)
    finally:
        model.generation_config = saved
    prompt_len = batch["input_ids"].shape[1]
    return batch["input_ids"], batch["attention_mask"], output[:, prompt_len:]


def _next_tokens(
    logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator
) -> torch.Tensor:
    """[n, V] next-token logits -> [n] token ids: argmax, or a draw from `warped_probs`."""
    if not config.do_sample:
        return logits.argmax(dim=-1)
    return sample_categorical(warped_probs(logits, config), generator)


def warped_probs(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """[n, V] logits -> [n, V] float32 sampling probabilities after temperature, top-k, top-p.

    Same order and tie rules as transformers' logits warpers: temperature, then top-k (keeps ties
    with the k-th score), then top-p (drops a token once the more likely ones reach top_p).
    """
    scores = logits.float()
    if config.temperature != 1.0:
        scores = scores / config.temperature
    if 0 < config.top_k < scores.shape[-1]:
        kth_best = scores.topk(config.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth_best, float("-inf"))
    if config.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        sorted_probs = sorted_scores.softmax(dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop = (mass_before >= config.top_p).scatter(1, order, mass_before >= config.top_p)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores.softmax(dim=-1)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[n, V] probabilities (rows sum to 1, zeros allowed) -> [n] draws, one uniform per row.

    Inverse-CDF sampling: token i is drawn when u lands in [c_{i-1}, c_i), c the float64 running
    sum of the row. Each row's draw has exactly the distribution `torch.multinomial(probs, 1)`
    samples from, but costs one random number instead of V (multinomial draws an exponential per
    vocabulary entry): ~20x faster at [256, 1024] on one CPU thread (bench/README.md). Plain loop:
        u = random() * sum(row); total = 0
        for i, p in enumerate(row):
            total += p
            if u < total: return i
    A token of probability 0 is never drawn (its interval is empty).
    """
    cumulative = probs.double().cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device, generator=generator)
    index = torch.searchsorted(cumulative, u * cumulative[:, -1:], right=True)
    index = index.squeeze(1).clamp_(max=probs.shape[-1] - 1)
    # u * total rounds to total only with probability ~1e-16; then the most likely token stands in.
    drawn = probs.gather(1, index[:, None]).squeeze(1) > 0
    return torch.where(drawn, index, probs.argmax(dim=-1))


@functools.cache
def _preallocated_layer_class() -> type:
    """The KV-cache layer of the `reft` engine (built on first use: transformers loads lazily)."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A full-attention layer cache written in place into [n, heads, max_len, head_dim] buffers.

        `update` returns views of the filled prefix: attention reads only the tokens seen so far, and
        no step copies the cache (transformers' DynamicLayer concatenates it at every step).
        """

        def __init__(self, max_len: int) -> None:
            super().__init__()
            self.max_len = max_len
            self.length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            batch, heads, _, key_dim = key_states.shape
            self.key_buffer = key_states.new_zeros(batch, heads, self.max_len, key_dim)
            self.value_buffer = value_states.new_zeros(
                batch, heads, self.max_len, value_states.shape[-1]
            )
            self.is_initialized = True

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, self.length = self.length, self.length + key_states.shape[-2]
            self.key_buffer[:, :, start : self.length] = key_states
            self.value_buffer[:, :, start : self.length] = value_states
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def select_rows(self, rows: torch.Tensor) -> None:
            """Keep the cache rows `rows` (a long index, repeats allowed), in that order."""
            self.key_buffer = self.key_buffer[rows]
            self.value_buffer = self.value_buffer[rows]

    return PreallocatedLayer


def _make_cache(model: PreTrainedModel, max_len: int) -> tuple[object, dict[str, object]]:
    """An empty KV cache of pre-allocated layers for `model`, and the keyword arguments that hand it
    to the model's forward (`cache=` in recent transformers, `past_key_values=` before).

    Raises ValueError for models the `reft` engine does not handle (they work with engine=hf).
    """
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, DynamicLayer

    config = model.config
    layers = [] if config.is_encoder_decoder else DynamicCache(config=config).layers
    if (
        not layers
        or any(type(layer) is not DynamicLayer for layer in layers)
        or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager")
    ):
        raise ValueError(
            "engine=reft handles decoder-only models with full attention in every layer and sdpa or "
            f"eager attention; {type(model).__name__} is not one: use engine=hf"
        )
    layer_class = _preallocated_layer_class()
    cache = Cache(layers=[layer_class(max_len) for _ in layers])
    name = "cache" if "cache" in _forward_parameters(model) else "past_key_values"
    return cache, {name: cache, "use_cache": True}


def _forward_parameters(model: PreTrainedModel) -> set[str]:
    """Names of the model's forward arguments (of the original module under torch.compile)."""
    return set(inspect.signature(getattr(model, "_orig_mod", model).forward).parameters)


def _prefill(
    model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, cache_kwargs: dict[str, object]
) -> torch.Tensor:
    """Run the left-padded prompts [n, P] through the model, filling `cache` -> last logits [n, V].

    The 4-D additive mask is causal and hides left padding; a padding position also sees itself, so
    no attention row is empty (an all-masked row would give NaN in its keys and values).
    """
    length = ids.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
    allowed = (allowed[None] & mask.bool()[:, None, :]) | torch.eye(
        length, dtype=torch.bool, device=ids.device
    )
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    output = model(
        input_ids=ids,
        attention_mask=_additive_mask(allowed[:, None], model.dtype),
        position_ids=positions,
        **cache_kwargs,
        **_last_logits_only(model),
    )
    return output.logits[:, -1]


def _last_logits_only(model: PreTrainedModel) -> dict[str, int]:
    """`logits_to_keep=1` where the model takes it: the prefill then skips the LM head on the prompt."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}


def _additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool mask -> 0 where attention is allowed, the dtype's minimum elsewhere (sdpa and eager)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


@torch.inference_mode()
def _decode_loop(
    model: PreTrainedModel,
    prompts: list[list[int]],
    repeats: list[int],
    config: SamplingConfig,
    eos_ids: list[int],
    pad_token_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`reft` engine, one batch -> (prompt ids [n, P], prompt mask [n, P], raw response ids [n, T]).

    Prompt i is prefilled once and its cache copied to its repeats[i] rows (n = sum(repeats)), then
    `_decode_steps` generates.
    """
    device = generator.device
    padded = pad_prompts_left(prompts, pad_token_id)
    ids, mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
    cache, cache_kwargs = _make_cache(model, ids.shape[1] + config.max_new_tokens)
    logits = _prefill(model, ids, mask, cache_kwargs)
    rows = torch.arange(len(prompts), device=device).repeat_interleave(
        torch.tensor(repeats, device=device)
    )
    for layer in cache.layers:
        layer.select_rows(rows)
    ids, mask = ids[rows], mask[rows]
    tokens = _decode_steps(
        model, logits[rows], mask, cache, cache_kwargs, config, eos_ids, generator
    )
    return ids, mask, tokens.masked_fill_(tokens < 0, pad_token_id)


def _decode_steps(
    model: PreTrainedModel,
    logits: torch.Tensor,
    prompt_mask: torch.Tensor,
    cache: object,
    cache_kwargs: dict[str, object],
    config: SamplingConfig,
    eos_ids: list[int],
    generator: torch.Generator,
) -> torch.Tensor:
    """Decode from the prefilled `cache` and first logits [n, V] -> raw response ids [n, T].

    Every row advances one token per step until all rows have produced EOS or T = max_new_tokens.
    Once a quarter of the rows still in the batch have produced EOS, they are dropped from it (their
    cache rows too), so later steps cost only what the unfinished rows need. Tokens a row would have
    produced after leaving are -1; `_finish` replaces everything after a row's first EOS by pad.
    """
    n, prompt_len = prompt_mask.shape
    steps, device = config.max_new_tokens, prompt_mask.device
    visible = torch.zeros(n, prompt_len + steps, dtype=torch.bool, device=device)
    visible[:, :prompt_len] = prompt_mask.bool()
    key_mask = _additive_mask(visible, model.dtype)[:, None, None, :]  # [n, 1, 1, P + T]
    position = prompt_mask.sum(dim=1, keepdim=True)  # [n, 1]: positions count real tokens only
    live = torch.arange(n, device=device)  # the output row of each row still in the batch
    ended = torch.zeros(n, dtype=torch.bool, device=device)  # ... and whether it has produced EOS
    eos = torch.tensor(eos_ids, device=device)
    tokens = torch.full((n, steps), -1, dtype=torch.long, device=device)
    for step in range(steps):
        token = _next_tokens(logits, config, generator)
        tokens[live, step] = token
        ended |= torch.isin(token, eos)
        finished = int(ended.sum())
        if step + 1 == steps or finished == len(live):
            break
        if finished >= COMPACT_FRACTION * len(live):
            keep = (~ended).nonzero().squeeze(1)
            for layer in cache.layers:
                layer.select_rows(keep)
            key_mask, position, token, live = (
                key_mask[keep],
                position[keep],
                token[keep],
                live[keep],
            )
            ended = ended[keep]
        key_mask[..., prompt_len + step] = 0
        output = model(
            input_ids=token[:, None],
            attention_mask=key_mask[..., : prompt_len + step + 1],
            position_ids=position + step,
            **cache_kwargs,
        )
        logits = output.logits[:, -1]
    return tokens[:, : step + 1]
