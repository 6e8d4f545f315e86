"""The generation engine: greedy against a plain argmax loop, EOS and mask semantics (also with
pad == eos), samples per prompt, seeding, and the `reft` engine against transformers' generate."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import pytest
import torch

from reft.data.prompts import render_prompt
from reft.data.synthetic import SynthConfig, generate_problems
from reft.data.tokenize import encode_prompt
from reft.generation.engine import (
    GenerationEngine,
    SamplingConfig,
    generate_ids,
    generate_texts,
    response_mask_from_ids,
    sample_categorical,
    warped_probs,
)
from reft.models.presets import build_tiny_model

ENGINES = [GenerationEngine.reft, GenerationEngine.hf]
STEPS = 12


def _scrambled(model, seed: int = 0):
    """`model` in eval mode with its weights redrawn at std 0.5: at the usual small initialisation a
    random model just repeats one token, which would make greedy comparisons trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


def _micro_model(tokenizer, seed: int = 0):
    return _scrambled(build_tiny_model("micro-llama", tokenizer, seed=seed), seed)


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return _micro_model(tiny_tokenizer)


@pytest.fixture(scope="module")
def prompt_texts():
    return [render_prompt(p.question) for p in generate_problems(SynthConfig(seed=1), "train", 4)]


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer, prompt_texts):
    """Four tokenised prompts of different lengths (so a batch of them is left-padded)."""
    ids = [encode_prompt(tiny_tokenizer, text) for text in prompt_texts]
    assert len({len(x) for x in ids}) > 1
    return ids


def _generate(
    model, prompts, tokenizer, engine=GenerationEngine.reft, seed=0, eos=None, **settings
):
    settings.setdefault("max_new_tokens", STEPS)
    return generate_ids(
        model,
        prompts,
        SamplingConfig(engine=engine, **settings),
        eos_token_id=tokenizer.eos_token_id if eos is None else eos,
        pad_token_id=tokenizer.pad_token_id,
        seed=seed,
    )


def _argmax_loop(model, prompt: list[int], steps: int) -> list[int]:
    """Greedy decoding the slow way: the whole sequence through the model at every step, no cache."""
    assert not model.training
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def _model_that_emits_eos(tokenizer, prompt: list[int]):
    """A micro model whose greedy answer to `prompt` ends with the tokenizer's EOS within STEPS.

    With tied embeddings, the EOS logit is h . E[eos]; setting E[eos] to twice the embedding of a
    token x that greedy decoding picks at some step makes EOS win at that step (or earlier).
    """
    model = _micro_model(tokenizer)
    picked = _argmax_loop(model, prompt, STEPS)[4]
    embedding = model.get_input_embeddings().weight
    with torch.no_grad():
        embedding[tokenizer.eos_token_id] = 2 * embedding[picked]
    assert tokenizer.eos_token_id in _argmax_loop(model, prompt, STEPS)
    return model


def _check_against_oracle(batch, model, prompts, eos, pad):
    """Each row equals the uncached argmax loop up to its first EOS (included), then pad / no mask."""
    for row, prompt in enumerate(prompts):
        oracle = _argmax_loop(model, prompt, STEPS)
        end = oracle.index(eos) if eos in oracle else None
        kept = STEPS if end is None else end + 1
        assert bool(batch.finished[row]) == (end is not None)
        assert batch.response_mask[row].tolist() == [t < kept for t in range(STEPS)]
        assert batch.response_ids[row].tolist() == oracle[:kept] + [pad] * (STEPS - kept)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_equals_an_uncached_argmax_loop(model, prompts, tiny_tokenizer, engine):
    batch = _generate(model, prompts, tiny_tokenizer, engine, eos=len(tiny_tokenizer))
    for row, prompt in enumerate(prompts):
        assert batch.response_ids[row].tolist() == _argmax_loop(model, prompt, STEPS)


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_reft_engine_handles_other_families(tiny_tokenizer, prompts, family):
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    if family == "qwen2":
        sizes |= {"num_key_value_heads": 2, "intermediate_size": 128}
    special = {
        "bos_token_id": tiny_tokenizer.bos_token_id,
        "eos_token_id": tiny_tokenizer.eos_token_id,
    }
    config = AutoConfig.for_model(family, vocab_size=len(tiny_tokenizer), **sizes, **special)
    other = _scrambled(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"))
    batch = _generate(other, prompts, tiny_tokenizer, eos=len(tiny_tokenizer))
    for row, prompt in enumerate(prompts):
        assert batch.response_ids[row].tolist() == _argmax_loop(other, prompt, STEPS)


@pytest.mark.parametrize("engine", ENGINES)
def test_left_padded_batch_equals_each_prompt_alone(model, prompts, tiny_tokenizer, engine):
    batch = _generate(model, prompts, tiny_tokenizer, engine)
    for row, prompt in enumerate(prompts):
        alone = _generate(model, [prompt], tiny_tokenizer, engine)
        assert batch.response_ids[row].tolist() == alone.response_ids[0].tolist()
        assert batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist() == prompt


@pytest.mark.parametrize("engine", ENGINES)
def test_eos_ends_the_response_and_is_inside_the_mask(tiny_tokenizer, prompts, engine):
    model = _model_that_emits_eos(tiny_tokenizer, prompts[0])
    batch = _generate(model, prompts, tiny_tokenizer, engine)
    assert bool(batch.finished[0])
    _check_against_oracle(
        batch, model, prompts, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_rows_ending_at_different_steps(tiny_tokenizer, engine):
    """Twelve prompts whose greedy answers end at various steps: the reft loop drops finished rows
    from its batch several times, and every row still matches the uncached loop."""
    texts = [render_prompt(p.question) for p in generate_problems(SynthConfig(seed=2), "train", 12)]
    prompts = [encode_prompt(tiny_tokenizer, text) for text in texts]
    model = _micro_model(tiny_tokenizer)
    counts = Counter(t for prompt in prompts for t in _argmax_loop(model, prompt, STEPS)[1:])
    common = counts.most_common(1)[0][0]
    embedding = model.get_input_embeddings().weight
    with torch.no_grad():
        embedding[tiny_tokenizer.eos_token_id] = 2 * embedding[common]
    rows_per_call: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_call.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    batch = _generate(model, prompts, tiny_tokenizer, engine, batch_size=12)
    hook.remove()
    ends = {int(row.sum()) for row in batch.response_mask}
    assert len(ends) >= 3, ends
    if engine is GenerationEngine.reft:  # finished rows left the batch
        assert rows_per_call[-1] < rows_per_call[1] <= 12
    _check_against_oracle(
        batch, model, prompts, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_pad_equal_to_eos_keeps_the_eos_in_the_mask(tiny_tokenizer, prompt_texts, engine):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos
    prompts = [encode_prompt(tokenizer, text) for text in prompt_texts]
    model = _model_that_emits_eos(tokenizer, prompts[0])
    batch = _generate(model, prompts, tokenizer, engine)
    assert (batch.prompt_ids[batch.prompt_mask == 0] == eos).all()  # left padding is EOS ids too
    assert bool(batch.finished[0])
    _check_against_oracle(batch, model, prompts, eos, eos)

    completion = generate_texts(
        model, tokenizer, prompt_texts[:1], SamplingConfig(engine=engine, max_new_tokens=STEPS)
    )[0][0]
    oracle = _argmax_loop(model, prompts[0], STEPS)
    end = oracle.index(eos)
    assert completion.finished and completion.token_ids == oracle[: end + 1]
    assert completion.num_tokens == end + 1
    assert completion.text == tokenizer.decode(oracle[:end])


def test_response_mask_from_ids_when_pad_is_eos():
    eos = 2
    ids = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    mask, finished = response_mask_from_ids(ids, [eos])
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
    ]
    assert finished.tolist() == [True, False, True]


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_rows_are_unfinished_with_a_full_mask(model, prompts, tiny_tokenizer, engine):
    batch = _generate(
        model, prompts, tiny_tokenizer, engine, max_new_tokens=5, eos=len(tiny_tokenizer)
    )
    assert batch.response_ids.shape == (len(prompts), 5)
    assert not batch.finished.any()
    assert batch.response_mask.all()


def test_samples_of_a_prompt_are_consecutive_rows(model, prompts, tiny_tokenizer):
    batch = _generate(model, prompts, tiny_tokenizer, do_sample=True, num_samples=3, batch_size=5)
    assert batch.num_samples == 3 and batch.response_ids.shape[0] == 12
    for row in range(12):
        assert batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist() == prompts[row // 3]
    samples = {tuple(batch.response_ids[row].tolist()) for row in range(3)}
    assert len(samples) > 1


def test_seeded_sampling_is_reproducible_whatever_ran_before(model, prompts, tiny_tokenizer):
    first = _generate(model, prompts, tiny_tokenizer, do_sample=True, seed=7)
    torch.manual_seed(123)
    torch.rand(100)
    state = torch.get_rng_state()
    again = _generate(model, prompts, tiny_tokenizer, do_sample=True, seed=7)
    other = _generate(model, prompts, tiny_tokenizer, do_sample=True, seed=8)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert torch.equal(first.response_ids, again.response_ids)
    assert not torch.equal(first.response_ids, other.response_ids)


def test_top_k_one_sampling_equals_greedy(model, prompts, tiny_tokenizer):
    greedy = _generate(model, prompts, tiny_tokenizer)
    top1 = _generate(
        model, prompts, tiny_tokenizer, do_sample=True, top_k=1, temperature=0.7, seed=3
    )
    assert torch.equal(greedy.response_ids, top1.response_ids)


SAMPLING_SETTINGS = [
    {"do_sample": True},  # the reference's RL setting: temperature 1, top_k 0, top_p 1
    {"do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "num_samples": 2},
]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_reft_engine_equals_hf_generate_greedy(tiny_tokenizer, prompts, attention):
    """Same tokens as transformers' generate: the shared prefill, cache, masks and length-sorted
    batches of the reft loop change nothing. (Sampled tokens differ by design: the reft engine
    draws with `sample_categorical`, one uniform per row, where transformers draws V exponentials;
    the distributions are the same, see the two tests below.)"""
    from transformers import AutoModelForCausalLM

    base = _micro_model(tiny_tokenizer, seed=1)
    model = AutoModelForCausalLM.from_config(base.config, attn_implementation=attention)
    model.load_state_dict(base.state_dict())
    batches = [
        _generate(model, prompts, tiny_tokenizer, engine, seed=5, batch_size=3, do_sample=False)
        for engine in ENGINES
    ]
    for field in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "finished"):
        assert torch.equal(getattr(batches[0], field), getattr(batches[1], field)), field


@pytest.mark.parametrize("settings", SAMPLING_SETTINGS)
def test_warped_probs_equal_transformers_warpers(settings):
    """The reft engine samples from exactly the distribution transformers' generate samples from:
    its temperature / top-k / top-p warpers, in that order, then a softmax (ties included)."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    config = SamplingConfig(**settings)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 300, generator=generator) * 3
    logits[:, 10:20] = logits[:, 10:11]  # ties at every rank
    warpers = LogitsProcessorList()
    if config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    expected = warpers(torch.zeros(64, 1, dtype=torch.long), logits.clone()).softmax(dim=-1)
    assert torch.allclose(warped_probs(logits, config), expected, rtol=0, atol=1e-7)


def test_sample_categorical_draws_the_given_distribution():
    """200,000 draws per row: frequencies within 5 standard errors of the probabilities (a row with
    zeros among them, a one-hot row, a near-uniform row); a token of probability 0 is never drawn;
    the same generator state gives the same draws."""
    probs = torch.tensor(
        [
            [0.0, 0.5, 0.0, 0.25, 0.125, 0.125, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [1 / 7] * 7,
        ]
    )
    draws = 200_000
    generator = torch.Generator().manual_seed(3)
    # One call on the rows repeated `draws` times: draw d of row r is element d * 3 + r.
    samples = sample_categorical(probs.repeat(draws, 1), generator).view(draws, -1).T  # [3, draws]
    for row in range(probs.shape[0]):
        counts = torch.bincount(samples[row], minlength=probs.shape[1]).double() / draws
        p = probs[row].double()
        assert torch.all(counts[p == 0] == 0)
        error = (p * (1 - p) / draws).sqrt()
        assert torch.all((counts - p).abs() <= 5 * error + 1e-12), (row, counts, p)
    again = torch.Generator().manual_seed(3)
    assert torch.equal(sample_categorical(probs, again), samples[:, 0])


@pytest.mark.parametrize("settings", SAMPLING_SETTINGS)
def test_sampled_first_tokens_follow_the_warped_distribution(tiny_tokenizer, prompts, settings):
    """The engine end to end: 4,000 samples of one prompt, first response token's frequencies
    against warped_probs of the prompt's next-token logits (5 standard errors)."""
    model = _micro_model(tiny_tokenizer, seed=1)
    count = 4000
    batch = _generate(model, [prompts[0]], tiny_tokenizer, seed=7,
                      **{**settings, "num_samples": count, "batch_size": count, "max_new_tokens": 1})  # fmt: skip
    with torch.no_grad():
        logits = model(torch.tensor([prompts[0]])).logits[:, -1]
    p = warped_probs(logits, SamplingConfig(**settings))[0].double()
    frequency = torch.bincount(batch.response_ids[:, 0], minlength=p.shape[0]).double() / count
    assert torch.all(frequency[p == 0] == 0)
    assert torch.all((frequency - p).abs() <= 5 * (p * (1 - p) / count).sqrt() + 1e-12)


def test_checkpoint_generation_config_is_ignored(tiny_tokenizer, prompts):
    """A checkpoint's own generation settings (here top_k=1 and a repetition penalty) never apply:
    each engine samples exactly what it samples from a model with a pristine generation_config."""
    from transformers import GenerationConfig

    model = _micro_model(tiny_tokenizer, seed=2)
    never = len(tiny_tokenizer)
    pristine = [
        _generate(model, prompts, tiny_tokenizer, e, do_sample=True, eos=never) for e in ENGINES
    ]
    model.generation_config = GenerationConfig(top_k=1, repetition_penalty=5.0)
    saved = model.generation_config
    batches = [
        _generate(model, prompts, tiny_tokenizer, e, do_sample=True, eos=never) for e in ENGINES
    ]
    for before, after in zip(pristine, batches, strict=True):
        assert torch.equal(before.response_ids, after.response_ids)
    greedy = _generate(model, prompts, tiny_tokenizer, do_sample=False, eos=never)
    assert not torch.equal(batches[0].response_ids, greedy.response_ids)  # top_k=1 would be greedy
    assert model.generation_config is saved and saved.top_k == 1


def test_model_mode_is_restored(model, prompts, tiny_tokenizer):
    model.train()
    _generate(model, prompts[:1], tiny_tokenizer, max_new_tokens=2)
    assert model.training
    model.eval()
    _generate(model, prompts[:1], tiny_tokenizer, max_new_tokens=2)
    assert not model.training


def test_generate_texts_decodes_without_eos(model, tiny_tokenizer):
    questions = ["Question:\nTom has 3 apples.\nAnswer reasoning:\n", "Question:\n2 + 2\n"]
    config = SamplingConfig(do_sample=True, num_samples=2, max_new_tokens=6)
    result = generate_texts(model, tiny_tokenizer, questions, config, seed=0)
    assert [len(group) for group in result] == [2, 2]
    for completion in (c for group in result for c in group):
        assert completion.num_tokens == len(completion.token_ids) <= 6
        body = completion.token_ids[:-1] if completion.finished else completion.token_ids
        assert completion.text == tiny_tokenizer.decode(body, skip_special_tokens=True)
        assert tiny_tokenizer.eos_token not in completion.text


def test_sliding_window_models_are_refused_by_the_reft_engine(tiny_tokenizer, prompts):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "mistral",
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        sliding_window=16,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="engine=hf"):
        _generate(model, prompts, tiny_tokenizer, max_new_tokens=2)
    assert _generate(
        model, prompts, tiny_tokenizer, GenerationEngine.hf, max_new_tokens=2
    ).finished.shape == (4,)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_samples": 4}, "greedy"),
        ({"engine": "vllm"}, "vllm"),
    ],
)
def test_sampling_config_rejects_bad_values(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**settings)


def test_empty_prompt_is_an_error(model, tiny_tokenizer):
    with pytest.raises(ValueError, match="empty prompt"):
        _generate(model, [[5, 6], []], tiny_tokenizer)


def test_outputs_can_feed_a_training_step(model, prompts, tiny_tokenizer):
    """PPO runs the policy with gradients on the generated ids: they must be ordinary tensors."""
    batch = _generate(model, prompts, tiny_tokenizer, max_new_tokens=3)
    ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    mask = torch.cat([batch.prompt_mask, batch.response_mask.long()], dim=1)
    model(input_ids=ids, attention_mask=mask).logits.sum().backward()
    model.zero_grad(set_to_none=True)


def test_sampling_config_works_with_the_config_glue():
    from reft.config import field_docs, load_config

    config = load_config(SamplingConfig, overrides=["do_sample=true", "top_k=5", "engine=hf"])
    assert (config.top_k, config.engine) == (5, GenerationEngine.hf)
    docs = field_docs(SamplingConfig)
    assert set(docs) == {field.name for field in dataclasses.fields(SamplingConfig)}
