"""The value model: PPO forward alignment, left padding, one trunk forward, gradients, save/load, dropout."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedModel

from reft.algos.logprobs import entropy_from_logits
from reft.models.presets import build_tiny_model
from reft.models.value import (
    CRITIC_DIR,
    VALUE_HEAD_FILE,
    VALUE_MODELS,
    ActorCritic,
    SeparateCritic,
    SharedTrunkValueModel,
    ValueHead,
    position_ids_from_attention_mask,
    reference_logprobs,
)

PROMPT_LENGTHS = (6, 3, 5)
RESPONSE_LENGTHS = (4, 5, 2)


def _tiny_gpt2(tokenizer, dropout: float = 0.0) -> PreTrainedModel:
    """GPT-2 has learned ABSOLUTE position embeddings: wrong position ids change its outputs.

    (Llama's rotary embeddings are relative, so a constant position shift is invisible to it.)
    """
    config = AutoConfig.for_model(
        "gpt2",
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config)


def _llama_with_attention_dropout(tokenizer, dropout: float) -> PreTrainedModel:
    config = build_tiny_model("micro-llama", tokenizer).config
    config.attention_dropout = dropout
    return AutoModelForCausalLM.from_config(config)


def _policy(tokenizer, arch: str) -> PreTrainedModel:
    return build_tiny_model("micro-llama", tokenizer) if arch == "llama" else _tiny_gpt2(tokenizer)


def _sequences(tokenizer, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(prompt, response) token pairs of different lengths; ids avoid the special tokens."""
    generator = torch.Generator().manual_seed(seed)
    low, high = 3, len(tokenizer)
    return [
        (
            torch.randint(low, high, (p,), generator=generator),
            torch.randint(low, high, (r,), generator=generator),
        )
        for p, r in zip(PROMPT_LENGTHS, RESPONSE_LENGTHS, strict=True)
    ]


def _batch(pairs, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """[prompt left-padded to P | response right-padded to T] -> (input_ids, attention_mask, T)."""
    prompt_len = max(len(p) for p, _ in pairs)
    response_len = max(len(r) for _, r in pairs)
    input_ids = torch.full((len(pairs), prompt_len + response_len), pad_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, (prompt, response) in enumerate(pairs):
        start, end = prompt_len - len(prompt), prompt_len + len(response)
        input_ids[row, start:prompt_len], input_ids[row, prompt_len:end] = prompt, response
        attention_mask[row, start:end] = 1
    return input_ids, attention_mask, response_len


def _alone(prompt: torch.Tensor, response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    sequence = torch.cat([prompt, response])[None]
    return sequence, torch.ones_like(sequence), len(response)


def test_position_ids_count_only_attended_tokens():
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    expected = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 4, 5]])
    assert torch.equal(position_ids_from_attention_mask(mask), expected)
    assert torch.equal(position_ids_from_attention_mask(mask.bool()), expected)


def test_value_head_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first, again, other = ValueHead(16, seed=0), ValueHead(16, seed=0), ValueHead(16, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.linear.weight, again.linear.weight)
    assert not torch.equal(first.linear.weight, other.linear.weight)
    assert first.linear.weight.dtype == torch.float32
    assert not any(isinstance(module, torch.nn.Dropout) for module in first.modules())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logprobs_values_entropy_match_a_manual_loop_over_full_logits(tiny_tokenizer, arch):
    """Logits at position P-1+t score response token t; V(s_t) is the head on the same position."""
    model = SharedTrunkValueModel(_policy(tiny_tokenizer, arch))
    prompt, response = _sequences(tiny_tokenizer)[0]
    input_ids, attention_mask, T = _alone(prompt, response)
    P = len(prompt)
    with torch.no_grad():
        out = model(input_ids, attention_mask, T, with_entropy=True)
        full = model.policy(input_ids=input_ids, output_hidden_states=True)
        expected_logprobs, expected_values, expected_entropy = [], [], []
        for t in range(T):
            logits = full.logits[0, P - 1 + t]
            expected_logprobs.append(torch.log_softmax(logits, dim=-1)[input_ids[0, P + t]])
            expected_values.append(model.value_head(full.hidden_states[-1][:, P - 1 + t]).squeeze())
            expected_entropy.append(entropy_from_logits(logits[None, None]).squeeze())
    torch.testing.assert_close(out.logprobs[0], torch.stack(expected_logprobs), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.values[0], torch.stack(expected_values), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.entropy[0], torch.stack(expected_entropy), atol=1e-5, rtol=0)
    # A one-position shift would be a different answer (so the comparison above pins the offset).
    assert not torch.allclose(out.logprobs[0, 1:], torch.stack(expected_logprobs)[:-1], atol=1e-3)
    assert out.logprobs.shape == out.values.shape == (1, T)
    assert out.logprobs.dtype == out.values.dtype == torch.float32


def test_entropy_is_detached_and_optional(tiny_tokenizer):
    model = SharedTrunkValueModel(build_tiny_model("micro-llama", tiny_tokenizer))
    input_ids, attention_mask, T = _alone(*_sequences(tiny_tokenizer)[0])
    assert model(input_ids, attention_mask, T).entropy is None
    out = model(input_ids, attention_mask, T, with_entropy=True)
    assert out.logprobs.requires_grad and out.values.requires_grad
    assert not out.entropy.requires_grad


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("kind", sorted(VALUE_MODELS))
def test_left_padded_batch_equals_each_sequence_alone(tiny_tokenizer, arch, kind):
    model = VALUE_MODELS[kind](_policy(tiny_tokenizer, arch), 0)
    pairs = _sequences(tiny_tokenizer)
    with torch.no_grad():
        batch = model(*_batch(pairs, tiny_tokenizer.pad_token_id))
        ref_batch = reference_logprobs(model.policy, *_batch(pairs, tiny_tokenizer.pad_token_id))
        for row, (prompt, response) in enumerate(pairs):
            alone = model(*_alone(prompt, response))
            n = len(response)
            torch.testing.assert_close(
                batch.logprobs[row, :n], alone.logprobs[0], atol=1e-5, rtol=0
            )
            torch.testing.assert_close(batch.values[row, :n], alone.values[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(ref_batch[row, :n], alone.logprobs[0], atol=1e-5, rtol=0)


def test_gpt2_outputs_do_depend_on_position_ids(tiny_tokenizer):
    """Control for the test above: without position ids, left padding changes GPT-2's logits."""
    policy = _tiny_gpt2(tiny_tokenizer).eval()
    pairs = _sequences(tiny_tokenizer)
    input_ids, attention_mask, _ = _batch(pairs, tiny_tokenizer.pad_token_id)
    prompt, response = pairs[1]  # the most left-padded row
    alone, _, _ = _alone(prompt, response)
    with torch.no_grad():
        padded = policy(input_ids=input_ids, attention_mask=attention_mask).logits[
            1, -alone.shape[1] :
        ]
        unpadded = policy(input_ids=alone).logits[0]
    assert (input_ids.shape[1] - attention_mask[1].sum()) > 0
    assert not torch.allclose(padded[: len(prompt) + len(response)], unpadded, atol=1e-3)


def _count_forwards(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_shared_trunk_one_trunk_forward_and_value_gradients_reach_the_trunk(tiny_tokenizer):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    model = SharedTrunkValueModel(policy)
    calls = _count_forwards(policy.model)
    out = model(*_batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id))
    assert calls[0] == 1
    out.values.square().sum().backward()
    assert model.value_head.linear.weight.grad is not None
    trunk_grads = [p.grad for p in policy.model.layers.parameters()]
    assert all(g is not None for g in trunk_grads)
    assert any(g.abs().sum() > 0 for g in trunk_grads)
    expected = {id(p) for p in policy.parameters()} | {id(p) for p in model.value_head.parameters()}
    assert {id(p) for p in model.trainable_parameters()} == expected


def test_separate_critic_has_its_own_trunk_and_gradients_stay_apart(tiny_tokenizer):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    model = SeparateCritic.from_policy(policy)
    # Same starting weights as the policy (the paper's ablation), distinct storage.
    policy_state, critic_state = policy.model.state_dict(), model.trunk.state_dict()
    assert all(torch.equal(critic_state[name], policy_state[name]) for name in critic_state)
    policy_storage = {p.data_ptr() for p in policy.parameters()}
    assert not policy_storage & {p.data_ptr() for p in model.trunk.parameters()}
    assert not hasattr(model.trunk, "lm_head")

    policy_calls, critic_calls = _count_forwards(policy.model), _count_forwards(model.trunk)
    out = model(*_batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id))
    assert policy_calls[0] == 1 and critic_calls[0] == 1
    out.values.square().sum().backward(retain_graph=True)
    assert all(p.grad is None for p in policy.parameters())
    assert all(p.grad is not None for p in model.trunk.layers.parameters())
    model.zero_grad(set_to_none=True)
    out.logprobs.sum().backward()
    assert all(p.grad is None for p in model.trunk.parameters())
    assert model.value_head.linear.weight.grad is None
    assert (
        len(model.trainable_parameters())
        == len(list(policy.parameters())) + len(list(model.trunk.parameters())) + 2
    )


def test_shared_head_save_load_round_trip_and_policy_dir_stays_plain_hf(tiny_tokenizer, tmp_path):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    model = SharedTrunkValueModel(policy, seed=0)
    batch = _batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    policy.save_pretrained(tmp_path)
    model.save(tmp_path)
    assert (tmp_path / VALUE_HEAD_FILE).is_file() and not (tmp_path / CRITIC_DIR).exists()
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        assert not any("value" in key or "head.linear" in key for key in handle.keys())  # noqa: SIM118

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(
            reloaded(input_ids=batch[0]).logits, policy.eval()(input_ids=batch[0]).logits
        )
        restored = SharedTrunkValueModel(reloaded, seed=1)
        assert not torch.equal(restored(*batch).values, model(*batch).values)
        restored.load(tmp_path)
        assert torch.equal(restored(*batch).values, model(*batch).values)
        assert torch.equal(restored(*batch).logprobs, model(*batch).logprobs)


def test_separate_critic_save_load_round_trip(tiny_tokenizer, tmp_path):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    model = SeparateCritic.from_policy(policy, seed=0)
    with torch.no_grad():  # make the critic differ from a fresh copy of the policy
        for parameter in model.trunk.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    batch = _batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    policy.save_pretrained(tmp_path)
    model.save(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path / CRITIC_DIR), PreTrainedModel)

    restored = SeparateCritic.from_policy(AutoModelForCausalLM.from_pretrained(tmp_path), seed=1)
    with torch.no_grad():
        assert not torch.equal(restored(*batch).values, model(*batch).values)
        restored.load(tmp_path)
        assert torch.equal(restored(*batch).values, model(*batch).values)


def test_load_refuses_another_kind_or_a_missing_file(tiny_tokenizer, tmp_path):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    SharedTrunkValueModel(policy).save(tmp_path / "shared")
    with pytest.raises(ValueError, match="shared_trunk"):
        SeparateCritic.from_policy(policy).load(tmp_path / "shared")
    with pytest.raises(FileNotFoundError, match="no value model"):
        SharedTrunkValueModel(policy).load(tmp_path / "empty")


def _logits_as_is(policy: PreTrainedModel, batch) -> torch.Tensor:
    """The policy's logits in whatever mode it is in (the dropout control)."""
    input_ids, attention_mask, _ = batch
    with torch.no_grad():
        return policy(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("kind", sorted(VALUE_MODELS))
def test_dropout_is_off_in_the_update_mode(tiny_tokenizer, arch, kind):
    policy = (
        _llama_with_attention_dropout(tiny_tokenizer, 0.5)
        if arch == "llama"
        else _tiny_gpt2(tiny_tokenizer, dropout=0.5)
    )
    batch = _batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    policy.train()  # control: dropout is live in this model
    assert not torch.equal(_logits_as_is(policy, batch), _logits_as_is(policy, batch))

    model: ActorCritic = VALUE_MODELS[kind](policy, 0)
    model.train()
    assert model.training and not any(m.training for m in model.modules() if m is not model)
    first, second = model(*batch), model(*batch)
    assert torch.equal(first.logprobs, second.logprobs)
    assert torch.equal(first.values, second.values)


def test_reference_logprobs_no_grad_restores_modes_and_is_deterministic(tiny_tokenizer):
    reference = _llama_with_attention_dropout(tiny_tokenizer, 0.5)
    reference.train()
    reference.model.layers[0].eval()  # a mixed state must come back exactly
    modes = [m.training for m in reference.modules()]
    batch = _batch(_sequences(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    first = reference_logprobs(reference, *batch)
    second = reference_logprobs(reference, *batch)
    assert not first.requires_grad and first.grad_fn is None
    assert first.shape == (len(PROMPT_LENGTHS), max(RESPONSE_LENGTHS))
    assert torch.equal(first, second)
    assert [m.training for m in reference.modules()] == modes
    assert reference.training


def test_response_length_must_leave_a_prompt_token(tiny_tokenizer):
    model = SharedTrunkValueModel(build_tiny_model("micro-llama", tiny_tokenizer))
    input_ids, attention_mask, _ = _alone(*_sequences(tiny_tokenizer)[0])
    for response_length in (0, input_ids.shape[1], input_ids.shape[1] + 1):
        with pytest.raises(ValueError, match="response_length"):
            model(input_ids, attention_mask, response_length)
