"""Rollout backends: the local generators behind the interface, the packing of an external engine's
tokens into a GeneratedBatch, the vLLM backend against a fake engine, and (GPU + vllm only) the real one.

The real-vLLM test is skipped without the `vllm` package or a CUDA device. To run it on a GPU machine:
    pip install -e '.[vllm,test]' && HF_HUB_OFFLINE=1 python -m pytest -q tests/test_rollout_backends.py
"""

from __future__ import annotations

import copy
import importlib.util
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from reft.generation.backends import GatheredBackend, LocalBackend, VLLMBackend, pack_completions
from reft.generation.config import GenerationEngine, SamplingConfig
from reft.generation.engine import generate_ids
from reft.models.presets import build_tiny_model

EOS, PAD = 2, 0


@pytest.mark.parametrize(
    ("response", "ids", "mask", "finished", "reason"),
    [
        ([5, 6, EOS], [5, 6, EOS, PAD], [1, 1, 1, 0], True, "EOS kept and inside the mask"),
        ([5, 6, 7, 8], [5, 6, 7, 8], [1, 1, 1, 1], False, "cut at max_new_tokens"),
        ([5, EOS, 9], [5, EOS, PAD, PAD], [1, 1, 0, 0], True, "tokens after the first EOS dropped"),
        ([5], [5, PAD, PAD, PAD], [1, 0, 0, 0], False, "short unfinished row: padding outside"),
    ],
)
def test_pack_completions_follows_the_generation_contract(response, ids, mask, finished, reason):
    other = [5, 6, 7, 8]
    batch = pack_completions([[3, 4], [3]], [response, other], 1, [EOS], PAD)
    assert batch.response_ids[0].tolist() == ids, reason
    assert batch.response_mask[0].int().tolist() == mask, reason
    assert bool(batch.finished[0]) is finished, reason
    assert batch.prompt_ids.tolist() == [[3, 4], [PAD, 3]]
    assert batch.prompt_mask.tolist() == [[1, 1], [0, 1]]


def test_pack_completions_repeats_each_prompt_for_its_samples_and_handles_pad_equal_eos():
    batch = pack_completions(
        [[3], [4]], [[5, EOS], [EOS], [6], [7, 8, EOS]], 2, [EOS], pad_token_id=EOS
    )
    assert batch.prompt_ids[:, -1].tolist() == [3, 3, 4, 4]
    assert batch.response_mask.sum(dim=1).tolist() == [2, 1, 1, 3]
    assert batch.finished.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="responses for 2 prompts"):
        pack_completions([[3], [4]], [[5]], 2, [EOS], PAD)


@pytest.mark.parametrize("engine", list(GenerationEngine))
def test_local_backend_is_generate_ids_on_the_training_model(tiny_tokenizer, engine):
    model = build_tiny_model("micro-llama", tiny_tokenizer)
    prompts = [[5, 6, 7], [8, 9]]
    sampling = SamplingConfig(do_sample=True, max_new_tokens=6, num_samples=2)
    ids = {"eos_token_id": tiny_tokenizer.eos_token_id, "pad_token_id": tiny_tokenizer.pad_token_id}
    backend = LocalBackend(model, engine)
    batch = backend.generate(prompts, sampling, seed=3, **ids)
    expected = generate_ids(model, prompts, SamplingConfig(**{**sampling.__dict__, "engine": engine}),
                            seed=3, **ids)  # fmt: skip
    assert torch.equal(batch.response_ids, expected.response_ids)
    backend.sync_weights(lambda: pytest.fail("a local backend must not ask for the weights"))


def test_gathered_backend_samples_from_a_copy_gathered_for_each_call(tiny_tokenizer):
    """Under FSDP2 the rollout samples from a whole copy gathered per call (reft.train.sharding):
    the backend enters the gathering context once per `generate` and samples from what it yields."""
    model = build_tiny_model("micro-llama", tiny_tokenizer)
    gathers = []

    @contextmanager
    def gathered():
        gathers.append(copy.deepcopy(model))
        yield gathers[-1]

    prompts, sampling = [[5, 6, 7], [8, 9]], SamplingConfig(do_sample=True, max_new_tokens=6)
    ids = {"eos_token_id": tiny_tokenizer.eos_token_id, "pad_token_id": tiny_tokenizer.pad_token_id}
    backend = GatheredBackend(gathered, GenerationEngine.reft)
    batch = backend.generate(prompts, sampling, seed=3, **ids)
    expected = LocalBackend(model, GenerationEngine.reft).generate(prompts, sampling, seed=3, **ids)
    assert torch.equal(batch.response_ids, expected.response_ids) and len(gathers) == 1
    backend.sync_weights(lambda: pytest.fail("the backend gathers when it samples, not on sync"))
    backend.generate(prompts, sampling, seed=3, **ids)
    assert len(gathers) == 2


class _FakeEngineModel:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def load_weights(self, weights) -> None:
        self.loaded = [name for name, _ in weights]


class _FakeLLM:
    """vLLM's `LLM` surface that VLLMBackend uses: generate, reset_prefix_cache, the engine model."""

    def __init__(self, responses: list[list[list[int]]]) -> None:
        self.responses = responses
        self.model = _FakeEngineModel()
        runner = SimpleNamespace(model=self.model)
        worker = SimpleNamespace(worker=SimpleNamespace(model_runner=runner))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker))
        self.calls: list[tuple] = []
        self.resets = 0

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params))
        return [
            SimpleNamespace(outputs=[SimpleNamespace(token_ids=tuple(ids)) for ids in samples])
            for samples in self.responses
        ]

    def reset_prefix_cache(self) -> None:
        self.resets += 1


def test_vllm_backend_translates_sampling_packs_outputs_and_syncs_weights():
    llm = _FakeLLM([[[5, EOS], [6, 7, 8]]])
    backend = VLLMBackend(llm, dict, device="cpu")
    sampling = SamplingConfig(do_sample=True, top_k=0, top_p=0.9, max_new_tokens=3, num_samples=2)
    batch = backend.generate([[3, 4]], sampling, eos_token_id=EOS, pad_token_id=PAD, seed=11)
    requests, params = llm.calls[0]
    assert requests == [{"prompt_token_ids": [3, 4]}]
    assert params == {"n": 2, "temperature": 1.0, "top_k": -1, "top_p": 0.9, "max_tokens": 3,
                      "stop_token_ids": [EOS], "seed": 11}  # fmt: skip
    assert batch.response_ids.tolist() == [[5, EOS, PAD], [6, 7, 8]]
    assert batch.finished.tolist() == [True, False]
    backend.sync_weights(lambda: iter([("w", torch.zeros(1)), ("b", torch.ones(1))]))
    assert llm.model.loaded == ["w", "b"] and llm.resets == 1


def test_vllm_backend_says_when_the_engine_model_is_out_of_reach():
    backend = VLLMBackend(SimpleNamespace(), dict, device="cpu")
    with pytest.raises(RuntimeError, match="in-process"):
        backend.sync_weights(lambda: iter([]))


def test_vllm_launch_refuses_a_cpu_device():
    with pytest.raises(ValueError, match="CUDA"):
        VLLMBackend.launch("m", dtype="float32", gpu_memory_utilization=0.3, max_model_len=64,
                           num_processes=1, process_index=0, device=torch.device("cpu"))  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA device")
def test_real_vllm_engine_samples_and_follows_synced_weights(tiny_tokenizer, tmp_path):
    model = build_tiny_model("tiny-llama", tiny_tokenizer)
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    backend = VLLMBackend.launch(
        str(tmp_path / "model"), dtype="float32", gpu_memory_utilization=0.2, max_model_len=128,
        num_processes=1, process_index=0, device=torch.device("cuda"),
    )  # fmt: skip
    greedy = SamplingConfig(do_sample=False, max_new_tokens=8)
    ids = {"eos_token_id": tiny_tokenizer.eos_token_id, "pad_token_id": tiny_tokenizer.pad_token_id}
    before = backend.generate([[5, 6, 7]], greedy, seed=0, **ids)
    assert before.response_ids.shape[0] == 1 and before.response_mask.any()
    with torch.no_grad():  # a zero final norm makes every logit 0: greedy then picks token 0
        model.model.norm.weight.zero_()
    backend.sync_weights(lambda: iter(model.state_dict().items()))
    after = backend.generate([[5, 6, 7]], greedy, seed=0, **ids)
    assert after.response_ids[0].tolist() == [0] * 8, (
        "the engine did not pick up the synced weights"
    )
