"""The value model of ReFT's PPO stage: a scalar head on the policy's trunk, or a separate critic.

What the reference does (lqtrung1998/mwp_ReFT at bdc844e, with trl 0.7.2 and transformers 4.34):

- The policy is TRL's `AutoModelForCausalLMWithValueHead` (train_rl_reft.py#L775-L776): a linear head
  `nn.Linear(hidden_size, 1)` (trl v0.7.2 trl/models/modeling_value_head.py#L41) applied to
  `hidden_states[-1]`, the final-norm output of the policy's own forward (#L171). One trunk, one
  optimizer over trunk and head (train_rl_reft.py#L791-L800); value-loss gradients reach the trunk.
- The value of the state before response token t is read at the same position as the logits that
  predict token t: position P - 1 + t for a prompt padded to P tokens (the mask `[:, P-1:-1]`,
  train_rl_reft.py#L334).
- Dropout is off in every PPO forward: `model.eval()` before the rollout (#L275, #L409) and again
  before the update forward (#L455), although `model.train()` runs in between (#L391, #L417). This
  also disables the head's own dropout (TRL's default `summary_dropout_prob=0.1`, #L28-L33).
- The reference model is a second frozen copy, used in eval mode (#L783, #L809-L813, #L108).
- The head is saved inside the policy's weights as `v_head.*` keys (trl #L200-L215), and no
  position_ids are passed (#L322, #L456), so left-padded prompts shift every position.

What we do:

- `SharedTrunkValueModel` (the paper's default) and `SeparateCritic` (the paper's ablation: a critic
  of the same size with its own trunk, initialised from the policy's weights) implement one
  interface, `ActorCritic`; the trainer picks one ONCE from `VALUE_MODELS`.
- `ActorCritic.train()` keeps every network in eval mode, so dropout is off in the mode used for
  updates, as the reference's `model.eval()`. Hugging Face gradient checkpointing only acts in
  training mode, so during a forward the checkpointed decoder layers alone get their own flag set
  (`_checkpointing_on`); their children, which hold the dropout, stay in eval mode.
- The reference is either a frozen copy (`FrozenReference`, the paper's; it may live on another
  device or in a lower precision) or, with LoRA, the policy with its adapters disabled
  (`AdapterDisabledReference`, no second copy). Both give `logprobs(input_ids, mask, T)`.
- position_ids = cumsum(attention_mask) - 1 (clamped at 0), so a left-padded batch gives the same
  log-probs and values as each sequence alone. Deviation from the reference's main branch (an
  unmerged WIP commit there, f0e24cb, adds the same for GPT-2-style models).
- Only the logits of the response positions are computed (`logits_to_keep`), and the log-probs use
  `reft.algos.logprobs_from_logits` (no (B, T, V) log-softmax kept for backward).
- The head lives in its own `value_head.safetensors` (and a separate critic's trunk in `critic/`),
  beside the policy's files: the policy directory stays a plain Hugging Face model.

Sequences are `[prompt (P tokens, left-padded) | response (T tokens, right-padded after EOS)]`; all
outputs are (B, T) over response positions, position t being the step that emits response token t.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from reft.algos.logprobs import entropy_from_logits, logprobs_from_logits
from reft.models.length_buckets import run_bucketed

VALUE_HEAD_FILE = "value_head.safetensors"
"""The head's weights, beside the policy's Hugging Face files in a checkpoint directory."""
CRITIC_DIR = "critic"
"""A separate critic's trunk, saved as its own Hugging Face model directory."""
KIND_METADATA_KEY = "value_model"
"""safetensors metadata key naming the `ActorCritic.kind` that wrote the head file."""


def position_ids_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only attended tokens: cumsum(mask) - 1, clamped at 0 (left padding -> 0).

    Args:
        attention_mask: (B, L) bool or 0/1, zero on left padding (and on padding after EOS).

    Returns:
        (B, L) int64; the first real token of every row is at position 0.
    """
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


@dataclass
class PolicyValueOutput:
    """What one PPO forward returns; every tensor is (B, T) over response positions."""

    logprobs: torch.Tensor
    """(B, T) float32: log pi(response token t | prompt, response tokens < t)."""
    values: torch.Tensor
    """(B, T) float32: V(s_t), read at the position whose logits predict response token t."""
    entropy: torch.Tensor | None = None
    """(B, T) float32 entropy of pi(. | s_t), detached (a diagnostic), or None when not asked for."""


class ValueHead(nn.Module):
    """A dropout-free linear map hidden_size -> 1, kept in float32.

    Init: PyTorch's default `nn.Linear` init (weight kaiming-uniform(a=sqrt(5)), bias uniform in
    +-1/sqrt(hidden_size)), which is TRL v0.7.2's default (`v_head_init_strategy=None`,
    trl/models/modeling_value_head.py#L41 and #L126-L134), the head mwp_ReFT trains. TRL's 0.1 head
    dropout is left out: the reference runs every PPO forward in eval mode, where it is inactive.
    The global RNG is untouched: the weights are drawn from a forked RNG seeded with `seed`.
    """

    def __init__(self, hidden_size: int, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.linear = nn.Linear(hidden_size, 1, dtype=torch.float32)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states (any float dtype) -> (B, T) values in the head's dtype."""
        return self.linear(hidden_states.to(self.linear.weight.dtype)).squeeze(-1)


def _check_response_length(input_ids: torch.Tensor, response_length: int) -> None:
    if not 0 < response_length < input_ids.shape[1]:
        raise ValueError(
            f"response_length must be in [1, {input_ids.shape[1] - 1}] for sequences of length "
            f"{input_ids.shape[1]} (at least one prompt token), got {response_length}"
        )


def _response_slice(states: torch.Tensor, response_length: int) -> torch.Tensor:
    """(B, L', ...) -> (B, T, ...): positions P-1 .. L-2, those that predict the response tokens.

    Works whether L' is the full length L or only the last T + 1 positions (what `logits_to_keep`
    returns; a model that silently ignores `logits_to_keep` returns all L and still slices right).
    """
    return states[:, -(response_length + 1) : -1]


def _causal_lm_forward(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    output_hidden_states: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward of a causal LM, sliced to the response positions.

    Args:
        model: a Hugging Face causal LM.
        input_ids: (B, L) prompt (left-padded) followed by response (right-padded), L = P + T.
        attention_mask: (B, L) zero on padding.
        response_length: T.
        output_hidden_states: also return the last (final-norm) hidden states.

    Returns:
        logits (B, T, V) predicting response tokens 0..T-1, and the last hidden states (B, T, H) at
        the same positions, or None.
    """
    _check_response_length(input_ids, response_length)
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_attention_mask(attention_mask),
        use_cache=False,
        logits_to_keep=response_length + 1,
        output_hidden_states=output_hidden_states,
    )
    logits = _response_slice(output.logits, response_length)
    if not output_hidden_states:
        return logits, None
    return logits, _response_slice(output.hidden_states[-1], response_length)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule of `model` in eval mode, then restore each one's own previous mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _checkpointing_on(model: nn.Module) -> Iterator[None]:
    """Set `training` on the gradient-checkpointed layers of `model` only, for one forward.

    transformers checkpoints a `GradientCheckpointingLayer` only when its own `training` flag is set
    (and grad is enabled); dropout lives in its children (attention, MLP), which keep their mode.
    """
    layers = [
        module
        for module in model.modules()
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing
    ]
    modes = [(layer, layer.training) for layer in layers]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer, training in modes:
            layer.training = training


def reference_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    buckets: int = 1,
) -> torch.Tensor:
    """Log-probs of the response tokens under a frozen model (the SFT reference): no grad, eval mode.

    The model's train/eval modes are restored afterwards, module by module.

    Args:
        model: a Hugging Face causal LM.
        input_ids: (B, P + T) prompt (left-padded) followed by response.
        attention_mask: (B, P + T) zero on padding.
        response_length: T.
        buckets: run at most this many groups of rows of similar length, each with its own padding
            trimmed (reft.models.length_buckets); 1 runs the batch as given.

    Returns:
        (B, T) float32 log-probs of `input_ids[:, -T:]`, without a graph (0 on positions past a
        bucket's longest response, which are padding).
    """

    def rows(ids: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor]:
        logits, _ = _causal_lm_forward(model, ids, mask, length, output_hidden_states=False)
        return (logprobs_from_logits(logits, ids[:, -length:]),)

    with torch.no_grad(), _eval_mode(model):
        return run_bucketed(rows, input_ids, attention_mask, response_length, buckets)[0]


class FrozenReference:
    """The paper's reference: a separate frozen model (the warm-up), on any device and dtype.

    Inputs are moved to the reference's device and the log-probs back to the inputs' device, so a
    reference kept on the CPU (`ref_device=cpu`) next to a GPU policy works unchanged.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model.requires_grad_(False).eval()

    def logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
        buckets: int = 1,
    ) -> torch.Tensor:  # fmt: skip
        """(B, T) float32 log-probs of the response tokens (see `reference_logprobs`)."""
        device = next(self.model.parameters()).device
        logprobs = reference_logprobs(
            self.model, input_ids.to(device), attention_mask.to(device), response_length, buckets
        )
        return logprobs.to(input_ids.device)


class AdapterDisabledReference:
    """With LoRA: the reference IS the policy with its adapters switched off (peft's
    `disable_adapter()`), so no second copy of the weights is kept. Exact because LoRA freezes the
    base weights: they are the warm-up's for the whole run."""

    def __init__(self, peft_model) -> None:
        self.peft_model = peft_model

    def logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
        buckets: int = 1,
    ) -> torch.Tensor:  # fmt: skip
        """(B, T) float32 log-probs of the response tokens under the base weights."""
        with self.peft_model.disable_adapter():
            return reference_logprobs(
                self.peft_model.get_base_model(), input_ids, attention_mask, response_length,
                buckets,
            )  # fmt: skip


def _hidden_size(model: PreTrainedModel) -> int:
    return model.config.get_text_config().hidden_size


def _save_head(head: ValueHead, directory: Path, kind: str) -> None:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, directory / VALUE_HEAD_FILE, metadata={KIND_METADATA_KEY: kind})


def _load_head(head: ValueHead, directory: Path, kind: str) -> None:
    path = directory / VALUE_HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} holds no value model")
    with safe_open(str(path), framework="pt") as handle:
        saved_kind = (handle.metadata() or {}).get(KIND_METADATA_KEY)
    if saved_kind != kind:
        raise ValueError(f"{path} was saved by a {saved_kind!r} value model; this one is {kind!r}")
    head.load_state_dict(load_file(path, device=str(head.linear.weight.device)))


class ActorCritic(nn.Module, ABC):
    """The policy (a plain Hugging Face causal LM) with a value model; one PPO forward gives both.

    Call the module (not `forward` directly) so that a DDP/accelerate wrapper around it sees
    the forward. Every network inside stays in eval mode, even after `train()`: see `train`.
    """

    kind: str
    """Registry name of the subclass, also written into the head file's metadata."""

    def __init__(self, policy: PreTrainedModel, value_head: ValueHead | None) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.train()

    def train(self, mode: bool = True) -> ActorCritic:
        """Set this module's flag, but keep every network in eval mode (dropout off in updates).

        The reference calls `model.eval()` right before the PPO update forward
        (mwp_ReFT train_rl_reft.py#L455), so gradients are taken without dropout.
        """
        self.training = mode
        for child in self.children():
            child.train(False)
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_length: int,
        with_entropy: bool = False,
        buckets: int = 1,
    ) -> PolicyValueOutput:
        """Log-probs and values of the response tokens of `[prompt | response]` sequences.

        Args:
            input_ids: (B, P + T) prompt (left-padded) then response (right-padded after EOS).
            attention_mask: (B, P + T) zero on padding.
            response_length: T.
            with_entropy: also return the (detached) entropy of the policy at each response step.
            buckets: run at most this many groups of rows of similar length, each with its own
                padding trimmed (reft.models.length_buckets); 1 runs the batch as given.

        Returns:
            `PolicyValueOutput` of (B, T) tensors; logits at position P-1+t give the log-prob of
            response token t, and V(s_t) comes from the hidden state at the same position (0 on
            positions past a bucket's longest response, which are padding).
        """

        def rows(ids: torch.Tensor, mask: torch.Tensor, length: int) -> tuple:
            with _checkpointing_on(self):
                logits, states = self._response_logits_and_states(ids, mask, length)
            logprobs = logprobs_from_logits(logits, ids[:, -length:])
            values = (
                self.value_head(states).float()
                if self.value_head is not None
                else torch.zeros_like(logprobs, requires_grad=False)
            )
            if not with_entropy:
                return logprobs, values, None
            with torch.no_grad():
                return logprobs, values, entropy_from_logits(logits)

        logprobs, values, entropy = run_bucketed(
            rows, input_ids, attention_mask, response_length, buckets
        )
        return PolicyValueOutput(logprobs=logprobs, values=values, entropy=entropy)

    @abstractmethod
    def _response_logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Policy logits (B, T, V) and value-model hidden states (B, T, H) at positions P-1+t
        (None without a value model)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter the PPO optimizer updates: policy, head (and critic trunk), once each."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the value model (not the policy) into `directory`, beside the policy's HF files."""

    @abstractmethod
    def load(self, directory: str | Path) -> None:
        """Restore in place what `save` wrote; ValueError if it was written by another kind."""


class SharedTrunkValueModel(ActorCritic):
    """The paper's value model: a head on the policy's last hidden state, one trunk forward."""

    kind = "shared_trunk"

    def __init__(self, policy: PreTrainedModel, seed: int = 0) -> None:
        head = ValueHead(_hidden_size(policy), seed).to(policy.device)
        super().__init__(policy, head)

    def _response_logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The full causal-LM forward (not trunk + lm_head by hand) keeps model-specific logit
        # processing (soft-capping, scaling); `hidden_states[-1]` is the final-norm output, as TRL's.
        logits, hidden = _causal_lm_forward(
            self.policy, input_ids, attention_mask, response_length, output_hidden_states=True
        )
        assert hidden is not None
        return logits, hidden

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _save_head(self.value_head, directory, self.kind)

    def load(self, directory: str | Path) -> None:
        _load_head(self.value_head, Path(directory), self.kind)


class SeparateCritic(ActorCritic):
    """The paper's ablation: a critic with its own trunk (no LM head) and a head on its last state.

    Args:
        policy: the causal LM being trained.
        trunk: the critic's trunk: a base model (e.g. `LlamaModel`) or a causal LM, of which only
            the base model is kept. Initialise it from the policy's checkpoint (`from_policy`).
        seed: seed of the head's initialisation.
    """

    kind = "separate_critic"

    def __init__(self, policy: PreTrainedModel, trunk: PreTrainedModel, seed: int = 0) -> None:
        base = trunk.base_model
        head = ValueHead(_hidden_size(base), seed).to(base.device)
        super().__init__(policy, head)
        self.trunk = base
        self.train(self.training)

    @classmethod
    def from_policy(cls, policy: PreTrainedModel, seed: int = 0) -> SeparateCritic:
        """A critic whose trunk is a copy of the policy's current base model (same weights)."""
        return cls(policy, copy.deepcopy(policy.base_model), seed)

    def _response_logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = _causal_lm_forward(
            self.policy, input_ids, attention_mask, response_length, output_hidden_states=False
        )
        output = self.trunk(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_attention_mask(attention_mask),
            use_cache=False,
        )
        return logits, _response_slice(output.last_hidden_state, response_length)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.trunk.save_pretrained(directory / CRITIC_DIR)
        _save_head(self.value_head, directory, self.kind)

    def load(self, directory: str | Path) -> None:
        """Restore head and trunk in place (the trunk via a temporary CPU copy of the saved one)."""
        directory = Path(directory)
        _load_head(self.value_head, directory, self.kind)
        dtype = next(self.trunk.parameters()).dtype
        saved = type(self.trunk).from_pretrained(directory / CRITIC_DIR, dtype=dtype)
        self.trunk.load_state_dict(saved.state_dict())


class PolicyOnly(ActorCritic):
    """No value model, for the critic-free estimators (GRPO, RLOO, REINFORCE++): values are 0 and
    nothing but the policy is trained, saved or checkpointed."""

    kind = "none"

    def __init__(self, policy: PreTrainedModel, seed: int = 0) -> None:
        super().__init__(policy, None)

    def _response_logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int
    ) -> tuple[torch.Tensor, None]:
        logits, _ = _causal_lm_forward(
            self.policy, input_ids, attention_mask, response_length, output_hidden_states=False
        )
        return logits, None

    def save(self, directory: str | Path) -> None:
        """Nothing beside the policy's own files."""

    def load(self, directory: str | Path) -> None:
        """Nothing to restore."""


VALUE_MODELS: dict[str, Callable[[PreTrainedModel, int], ActorCritic]] = {
    SharedTrunkValueModel.kind: SharedTrunkValueModel,
    SeparateCritic.kind: SeparateCritic.from_policy,
    PolicyOnly.kind: PolicyOnly,
}
"""Value-model constructors by config name: `VALUE_MODELS[name](policy, seed)`."""
