"""Memory options: LoRA (reference = adapters off, merged checkpoints, exact resume), gradient
checkpointing inside the PPO value model, bf16 autocast and a CPU / bf16 reference."""

from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from reft.checkpoint import LATEST_FILE, Checkpointer
from reft.cli import main
from reft.config import ConfigError, load_config
from reft.metrics import read_metrics
from reft.models.lora import (
    ADAPTER_DIR,
    LoraAdapterFiles,
    MergedExport,
    attach_lora,
    enable_gradient_checkpointing,
)
from reft.models.presets import build_tiny_model
from reft.models.value import (
    AdapterDisabledReference,
    SharedTrunkValueModel,
    reference_logprobs,
)
from reft.train.config import PPOConfig, TrainConfig

pytest.importorskip("peft")

LORA = TrainConfig(lora=True, lora_r=4, lora_alpha=8.0)


def _batch(tokenizer, rows: int = 3, prompt: int = 5, response: int = 4, seed: int = 0):
    """(input_ids, attention_mask, T) with the first row's prompt left-padded by two tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, len(tokenizer), (rows, prompt + response), generator=generator)
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2] = tokenizer.pad_token_id, 0
    return ids, mask, response


def _lora_policy(tokenizer):
    """(policy with non-zero adapters, its peft wrapper, an untouched copy of the base model)."""
    policy = build_tiny_model("micro-llama", tokenizer)
    original = copy.deepcopy(policy)
    peft_model = attach_lora(policy, LORA)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: make the adapters change the outputs
                parameter.normal_(std=0.5)
    return policy, peft_model, original


def test_only_adapters_train_and_the_reference_is_the_base_model(tiny_tokenizer):
    policy, peft_model, original = _lora_policy(tiny_tokenizer)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    batch = _batch(tiny_tokenizer)
    reference = AdapterDisabledReference(peft_model).logprobs(*batch)
    assert torch.equal(reference, reference_logprobs(original, *batch))
    with_adapters = reference_logprobs(policy, *batch)
    assert (with_adapters - reference).abs().max() > 1e-3, "the adapters should change the policy"
    assert torch.equal(reference_logprobs(policy, *batch), with_adapters), "adapters back on after"


def test_merged_export_is_a_plain_model_and_leaves_the_base_weights_alone(tiny_tokenizer, tmp_path):
    policy, peft_model, original = _lora_policy(tiny_tokenizer)
    MergedExport(peft_model).save_pretrained(tmp_path / "merged")
    saved = load_file(tmp_path / "merged" / "model.safetensors")
    assert not any("lora" in key or "base_layer" in key for key in saved)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # no peft involved
    batch = _batch(tiny_tokenizer)
    assert torch.allclose(
        reference_logprobs(merged, *batch), reference_logprobs(policy, *batch), atol=1e-5
    )
    reference = AdapterDisabledReference(peft_model).logprobs(*batch)
    assert torch.equal(reference, reference_logprobs(original, *batch)), "export moved the base"


def test_adapter_files_round_trip(tiny_tokenizer, tmp_path):
    policy, peft_model, _ = _lora_policy(tiny_tokenizer)
    LoraAdapterFiles(peft_model).save(tmp_path)
    assert (tmp_path / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    fresh = build_tiny_model("micro-llama", tiny_tokenizer)
    LoraAdapterFiles(attach_lora(fresh, LORA)).load(tmp_path)
    batch = _batch(tiny_tokenizer)
    assert torch.equal(reference_logprobs(fresh, *batch), reference_logprobs(policy, *batch))


def test_lora_rejects_a_model_without_lm_head(tiny_tokenizer):
    trunk = build_tiny_model("micro-llama", tiny_tokenizer).base_model
    with pytest.raises(ValueError, match="causal LMs only"):
        attach_lora(trunk, LORA)


def _layer_calls(model: torch.nn.Module) -> list[int]:
    """A counter of decoder-layer forwards, hooked on each layer's MLP activation (a checkpointed
    layer's recompute runs its `forward`, not `__call__`: hooks on the layer itself fire once)."""
    calls = [0]
    for layer in model.model.layers:
        layer.mlp.act_fn.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_gradient_checkpointing_acts_inside_the_value_model_with_dropout_off(tiny_tokenizer):
    policy = build_tiny_model("micro-llama", tiny_tokenizer)
    policy.config.attention_dropout = 0.5
    plain = SharedTrunkValueModel(policy, seed=0)
    checkpointed = copy.deepcopy(plain)
    assert enable_gradient_checkpointing(checkpointed) == 1
    batch = _batch(tiny_tokenizer)
    runs = {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        calls = _layer_calls(model.policy)
        out = model(*batch)
        again = model(*batch)
        assert torch.equal(out.logprobs, again.logprobs), "dropout must be off in PPO forwards"
        before_backward = calls[0]
        (out.logprobs.sum() + out.values.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        runs[name] = (calls[0] - before_backward, grads)
    layers = len(policy.model.layers)
    assert runs["plain"][0] == 0 and runs["checkpointed"][0] == layers, "no recompute in backward"
    for a, b in zip(runs["plain"][1], runs["checkpointed"][1], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_lora_dropout_stays_off_in_every_ppo_forward(tiny_tokenizer, tmp_path):
    """peft adds its dropout modules in train mode after the value model put every network in eval
    mode; `prepare` must put them back, whatever the rollout backend."""
    from reft.train.loop import TrainingRun

    config = PPOConfig(lora=True, lora_r=4, lora_dropout=0.5, out_dir=str(tmp_path / "run"),
                       dev_data=None)  # fmt: skip
    actor_critic = SharedTrunkValueModel(build_tiny_model("micro-llama", tiny_tokenizer), seed=0)
    run = TrainingRun(config, stage="reft")
    run.prepare(actor_critic, tiny_tokenizer, total_steps=1, steps_per_epoch=1,
                policy=actor_critic.policy, companion=actor_critic)  # fmt: skip
    training = [name for name, module in actor_critic.named_modules()
                if module.training and name]  # fmt: skip
    assert training == [], f"modules in train mode: {training[:5]}"
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        assert torch.equal(actor_critic(*batch).logprobs, actor_critic(*batch).logprobs)


class _CopyBackend:
    """Stands in for vLLM: samples from its own plain copy of the policy, loaded with the merged
    weights after every update, so nothing in the rollout touches the training model's modes."""

    def __init__(self, policy):
        from transformers import AutoModelForCausalLM

        from reft.generation.backends import LocalBackend
        from reft.generation.config import GenerationEngine

        self.copy = AutoModelForCausalLM.from_config(policy.config).eval()
        self.local = LocalBackend(self.copy, GenerationEngine.reft)
        self.synced = 0

    def generate(self, prompts, sampling, **kwargs):
        return self.local.generate(prompts, sampling, **kwargs)

    def sync_weights(self, weights):
        missing, unexpected = self.copy.load_state_dict(dict(weights()), strict=False)
        assert not unexpected and all("lm_head" in key for key in missing), (missing, unexpected)
        self.synced += 1


def test_lora_dropout_stays_off_after_updates_with_an_external_engine(start, tmp_path, monkeypatch):
    """With the rollouts outside the training model (the vLLM backend), nothing re-enters eval mode
    before each forward: after two PPO steps every module must still be in eval mode."""
    import reft.train.ppo as ppo
    from reft.config import load_config

    made = []

    def copy_backend(_config, policy, *_args, **_kwargs):
        made.append(_CopyBackend(policy))
        return made[-1]

    monkeypatch.setattr(ppo, "make_rollout_backend", copy_backend)
    args = [f"model={start['model']}", f"train_data={start['data']}", f"out_dir={tmp_path / 'run'}",
            "lora=true", "lora_r=4", "lora_dropout=0.5", *PPO_ARGS]  # fmt: skip
    run, step, grader, _ = ppo.build_ppo_step(load_config(PPOConfig, None, args))
    with grader:
        for index in range(2):
            step(index)
    assert made and made[0].synced == 3, "the stand-in backend was not used or not synced"
    training = [name for name, module in run.model.named_modules() if module.training and name]
    assert training == [], f"modules in train mode after updates: {training[:5]}"
    batch = _batch(run.tokenizer)
    with torch.no_grad():
        assert torch.equal(run.model(*batch).logprobs, run.model(*batch).logprobs)


def test_lora_and_ref_model_are_exclusive():
    with pytest.raises(ConfigError, match="adapters disabled"):
        load_config(PPOConfig, None, ["lora=true", "ref_model=some/model"])


@pytest.fixture(scope="module")
def start(tmp_path_factory, digit_game_start):
    """An (untrained) preset checkpoint to start PPO from, and the digit-game data."""
    return digit_game_start(tmp_path_factory.mktemp("lora"), 128)


PPO_ARGS = ["dev_data=null", "batch_size=8", "mini_batch_size=8", "micro_batch_size=4",
            "max_new_tokens=12", "lr=1e-2", "log_every=1", "save_every=2", "keep_last=5"]  # fmt: skip


@pytest.mark.slow
def test_ppo_with_lora_needs_no_reference_copy_and_resumes_exactly(start, tmp_path, monkeypatch):
    def no_copy(*_args, **_kwargs):
        raise AssertionError("lora=true must not load a reference copy")

    monkeypatch.setattr("reft.train.ppo.frozen_reference", no_copy)
    args = ["train", f"model={start['model']}", f"train_data={start['data']}", *PPO_ARGS,
            "lora=true", "lora_r=4", "gradient_checkpointing=true", "max_steps=4"]  # fmt: skip
    assert main([*args, f"out_dir={tmp_path / 'a'}"]) == 0
    # A run "killed" after step 2: the same directory without step 4.
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_000004")
    (tmp_path / "b" / "checkpoints" / LATEST_FILE).write_text("step_000002")
    assert main([*args, f"out_dir={tmp_path / 'b'}", "resume=true"]) == 0
    for name in ("model.safetensors", "value_head.safetensors",
                 f"{ADAPTER_DIR}/adapter_model.safetensors"):  # fmt: skip
        a = load_file(tmp_path / "a" / "checkpoints" / "step_000004" / name)
        b = load_file(tmp_path / "b" / "checkpoints" / "step_000004" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    final = Checkpointer(tmp_path / "a").latest().path
    merged = load_file(final / "model.safetensors")
    base = load_file(start["model"] / "model.safetensors")
    assert merged.keys() == base.keys()
    assert max((merged[k] - base[k]).abs().max().item() for k in base) > 0, "nothing was learned"
    assert read_metrics(tmp_path / "a", "train")[0]["kl"] == 0.0, "step 1: policy == reference"


@pytest.mark.slow
def test_sft_with_lora_writes_a_merged_checkpoint(start, tmp_path):
    out = tmp_path / "sft"
    assert main(["sft", f"model={start['model']}", f"train_data={start['data']}", "dev_data=null",
                 f"out_dir={out}", "batch_size=8", "micro_batch_size=4", "max_steps=2", "lr=1e-2",
                 "lora=true", "gradient_checkpointing=true"]) == 0  # fmt: skip
    final = Checkpointer(out).latest().path
    assert (final / ADAPTER_DIR).is_dir()
    AutoModelForCausalLM.from_pretrained(final)  # a plain Hugging Face model directory


@pytest.mark.slow
def test_bf16_autocast_with_a_bf16_reference_on_cpu(start, tmp_path):
    out = tmp_path / "bf16"
    assert main(["train", f"model={start['model']}", f"train_data={start['data']}", *PPO_ARGS,
                 f"out_dir={out}", "max_steps=2", "mixed_precision=bf16", "ref_device=cpu",
                 "ref_dtype=bfloat16"]) == 0  # fmt: skip
    train = read_metrics(out, "train")
    assert len(train) == 2 and all(math.isfinite(r["kl"]) for r in train)
    assert all(math.isfinite(r["policy_loss"]) for r in train)
