"""What samples PPO's rollouts: one interface, the in-process generators or a vLLM engine.

`RolloutBackend`:
    generate(prompts, sampling, eos_token_id=, pad_token_id=, seed=) -> GeneratedBatch
        K = sampling.num_samples responses per prompt, with the output contract of reft.generation.engine
        (rows k*K .. k*K+K-1 for prompt k; response cut after its first EOS, EOS inside the mask).
    sync_weights(weights) -> None
        called by the trainer after every PPO update; `weights()` yields the policy's (name, tensor)
        pairs (called only by a backend that needs them: an in-process backend samples from the
        training model itself and ignores it).

Backends (`rollout_backend=`, chosen once in `make_rollout_backend`):
- `reft` (default) and `hf`: `reft.generation.engine.generate_ids` on the training model (its own KV-cache
  decode loop, or transformers' `model.generate`). Under FSDP2, where each rank holds a shard,
  `GatheredBackend` samples the same way from a whole copy gathered for each call
  (reft.train.sharding).
- `vllm` (extra `reft[vllm]`, CUDA only): an in-process `vllm.LLM` beside the trainer on the same GPU,
  taking `vllm_gpu_memory_utilization` of its memory. It loads the policy's starting checkpoint, and
  after every update receives the full weights (merged ones under LoRA) through the engine model's
  `load_weights`, the path TRL's colocated GRPO uses. Under `torchrun` / `accelerate launch` every
  rank runs its own engine (`distributed_executor_backend="external_launcher"`, tensor parallel 1).
  Under FSDP2 the synced weights are gathered from the shards first (`TrainingRun.policy_weights`, a
  collective), so each rank's engine receives the whole policy. Not covered: tensor-parallel
  engines, DeepSpeed ZeRO-3. vLLM samples with its own kernels and RNG, so its tokens differ from the `reft`
  backend's for the same seed; the PPO log-probs are recomputed by the training model either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch

from reft.data.collate import pad_prompts_left
from reft.generation.config import GenerationEngine, SamplingConfig
from reft.generation.engine import GeneratedBatch, generate_ids

Weights = Iterable[tuple[str, torch.Tensor]]


class RolloutBackend(Protocol):
    """Samples responses to token-id prompts; may hold its own copy of the policy's weights."""

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingConfig,
        *,
        eos_token_id: int | Sequence[int],
        pad_token_id: int,
        seed: int,
    ) -> GeneratedBatch: ...

    def sync_weights(self, weights: Callable[[], Weights]) -> None: ...


class LocalBackend:
    """Samples from the training model itself with reft's generators (no weights to sync)."""

    def __init__(self, policy: torch.nn.Module, engine: GenerationEngine) -> None:
        self.policy = policy
        self.engine = engine

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingConfig,
        *,
        eos_token_id: int | Sequence[int],
        pad_token_id: int,
        seed: int,
    ) -> GeneratedBatch:
        sampling = SamplingConfig(**{**sampling.__dict__, "engine": self.engine})
        return generate_ids(
            self.policy, prompts, sampling,
            eos_token_id=eos_token_id, pad_token_id=pad_token_id, seed=seed,
        )  # fmt: skip

    def sync_weights(self, weights: Callable[[], Weights]) -> None:
        """Nothing to do: the rollouts come from the model being trained."""


class GatheredBackend:
    """Samples with reft's generators from a whole policy that `gathered()` provides for each call
    (under FSDP2 a copy gathered from the shards: every rank must call `generate` at the same
    point). Each call gathers the current weights, so there is nothing to sync."""

    def __init__(
        self,
        gathered: Callable[[], AbstractContextManager[torch.nn.Module]],
        engine: GenerationEngine,
    ) -> None:
        self.gathered = gathered
        self.engine = engine

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingConfig,
        *,
        eos_token_id: int | Sequence[int],
        pad_token_id: int,
        seed: int,
    ) -> GeneratedBatch:
        with self.gathered() as policy:
            return LocalBackend(policy, self.engine).generate(
                prompts, sampling, eos_token_id=eos_token_id, pad_token_id=pad_token_id, seed=seed
            )

    def sync_weights(self, weights: Callable[[], Weights]) -> None:
        """Nothing to do: `generate` gathers the weights it samples from."""


def pack_completions(
    prompts: list[list[int]],
    responses: list[list[int]],
    num_samples: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    device: torch.device | str = "cpu",
) -> GeneratedBatch:
    """Token lists from an external engine -> a `GeneratedBatch` (reft.generation.engine's contract).

    Args:
        prompts: P prompts' token ids.
        responses: P x K generated token lists, prompt-major (row k*K + j: sample j of prompt k); an
            engine that stops at EOS may or may not include it, anything after the first EOS is cut.
        num_samples: K.
        eos_token_ids: ids that end a response.
        pad_token_id: fills the left of prompts and the right of responses.
        device: where the tensors go (the training device).
    """
    if len(responses) != len(prompts) * num_samples:
        raise ValueError(f"{len(responses)} responses for {len(prompts)} prompts x {num_samples}")
    rows = [ids for ids in prompts for _ in range(num_samples)]
    padded = pad_prompts_left(rows, pad_token_id)
    eos = set(eos_token_ids)
    # Cut each response after its first EOS here, on the true tokens: once padded, a pad id equal to
    # the EOS id could no longer be told apart from a generated EOS.
    ends = [next((t + 1 for t, token in enumerate(ids) if token in eos), None) for ids in responses]
    kept = [ids[:end] if end is not None else ids for ids, end in zip(responses, ends, strict=True)]
    length = max(1, *(len(ids) for ids in kept))
    response_ids = torch.full((len(kept), length), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(kept):
        response_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    mask = torch.arange(length)[None, :] < torch.tensor([len(ids) for ids in kept])[:, None]
    finished = torch.tensor([end is not None for end in ends])
    return GeneratedBatch(
        prompt_ids=padded["input_ids"].to(device), prompt_mask=padded["attention_mask"].to(device),
        response_ids=response_ids.to(device), response_mask=mask.to(device),
        finished=finished.to(device), num_samples=num_samples,
    )  # fmt: skip


class VLLMBackend:
    """Rollouts from a vLLM engine that receives the policy's weights after every update.

    Build it with `VLLMBackend.launch` (imports vllm); the constructor takes any object with vLLM's
    `LLM.generate` interface and the `SamplingParams` class, so the packing and sync logic is tested
    on CPU with a fake engine (tests/test_rollout_backends.py).
    """

    def __init__(
        self, llm: Any, sampling_params_cls: Callable[..., Any], device: torch.device | str
    ) -> None:
        self.llm = llm
        self.sampling_params_cls = sampling_params_cls
        self.device = device

    @classmethod
    def launch(
        cls, model_path: str, *, dtype: str, gpu_memory_utilization: float, max_model_len: int,
        num_processes: int, process_index: int, device: torch.device,
    ) -> VLLMBackend:  # fmt: skip
        """Start an in-process engine on this rank's GPU from the checkpoint at `model_path`."""
        if device.type != "cuda":
            raise ValueError("rollout_backend=vllm needs a CUDA device; use reft or hf on CPU")
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "rollout_backend=vllm needs vLLM: pip install 'reft[vllm]'"
            ) from error
        # The engine must live in this process so that `load_weights` reaches its model.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        extra = {"distributed_executor_backend": "external_launcher"} if num_processes > 1 else {}
        llm = vllm.LLM(
            model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, tensor_parallel_size=1, seed=process_index,
            enable_prefix_caching=True, **extra,
        )  # fmt: skip
        return cls(llm, vllm.SamplingParams, device)

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingConfig,
        *,
        eos_token_id: int | Sequence[int],
        pad_token_id: int,
        seed: int,
    ) -> GeneratedBatch:
        eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        params = self.sampling_params_cls(
            n=sampling.num_samples,
            temperature=sampling.temperature if sampling.do_sample else 0.0,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,  # -1: off in every vLLM version
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=eos_ids,
            seed=seed,
        )
        requests = [{"prompt_token_ids": ids} for ids in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        responses = [list(sample.token_ids) for output in outputs for sample in output.outputs]
        return pack_completions(
            prompts, responses, sampling.num_samples, eos_ids, pad_token_id, self.device
        )

    def sync_weights(self, weights: Callable[[], Weights]) -> None:
        """Load the policy's current weights into the engine's model; drop its cached prefixes."""
        _engine_model(self.llm).load_weights(weights())
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()


_ENGINE_MODEL_PATHS = (
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner", "model"),  # V1
    ("llm_engine", "model_executor", "driver_worker", "model_runner", "model"),  # V0
)


def _engine_model(llm: Any) -> Any:
    """The torch model inside an in-process vLLM engine (its location differs between versions)."""
    for path in _ENGINE_MODEL_PATHS:
        target = llm
        for name in path:
            target = getattr(target, name, None)
            if target is None:
                break
        if target is not None and hasattr(target, "load_weights"):
            return target
    raise RuntimeError(
        "cannot reach the model inside the vLLM engine to sync weights; is it running in-process "
        "(VLLM_ENABLE_V1_MULTIPROCESSING=0) with tensor_parallel_size=1?"
    )
