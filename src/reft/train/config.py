"""Fields every trainer shares. Each stage's config subclasses `TrainConfig` and adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from reft.answers.grader import GRADING_ALIASES, GradingSettings
from reft.config import check_ranges
from reft.data.example import CotKind
from reft.data.tokenize import OverlengthPolicy
from reft.generation.config import SAMPLING_ALIASES, SamplingSettings
from reft.models.presets import PRESET_PREFIX, check_preset


class Schedule(str, Enum):
    """Learning-rate schedule after the warm-up (transformers.get_scheduler names)."""

    linear = "linear"
    cosine = "cosine"
    constant_with_warmup = "constant_with_warmup"


class MixedPrecision(str, Enum):
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class TrainConfig:
    """Options shared by every trainer (SFT, ReFT, online self-training, reward model)."""

    model: str = "preset:tiny-llama"
    """Hugging Face model name or path, a reft checkpoint directory, or preset:NAME to build a tiny
    model from scratch (its tokenizer is then trained on train_data)."""
    train_data: str = "synth:train"
    """Training dataset: a .json/.jsonl file, synth:SPLIT[:N] or hf:NAME[:CONFIG]:SPLIT."""
    dev_data: str | None = "synth:dev"
    """Dev dataset for evaluation and best-checkpoint selection (never the test split); null: none."""
    dev_holdout: int = 0
    """With dev_data null: hold out this many training questions (chosen by seed) as the dev set."""
    dev_limit: int = 0
    """Evaluate on the first dev_limit dev items only (0: all)."""
    cot: CotKind = CotKind.nl
    """Chain-of-thought kind: nl (N-CoT) or python (P-CoT)."""
    out_dir: str = "runs/train"
    """Directory for checkpoints, metrics.jsonl and the resolved config.yaml."""
    seed: int = 0
    """Seed of data order, initialisation and sampling; a CPU run with the same seed is reproducible."""
    max_length: int = 512
    """Longest prompt + target in tokens for training examples."""
    overlength: OverlengthPolicy = OverlengthPolicy.skip
    """What to do with longer training examples: skip (counted) or truncate."""
    strip_calculator: bool = False
    """Remove GSM8K <<a*b=c>> calculator marks from gold chains of thought."""
    preset_vocab_size: int = 1024
    """Vocabulary size of the tokenizer trained for a preset:NAME model."""
    preset_tokenizer_data: str | None = None
    """Dataset whose prompts and gold solutions train a preset:NAME model's tokenizer, as a
    pretrained model's tokenizer is trained on broader text than its fine-tuning data (null: the
    training data)."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16, float16 or auto."""
    mixed_precision: MixedPrecision = MixedPrecision.no
    """Autocast in training forwards: no, bf16 or fp16 (fp16 needs a GPU; weights stay in `dtype`)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (less memory, ~30% slower)."""
    lora: bool = False
    """Train LoRA adapters (peft extra) instead of the full policy; checkpoints hold the merged
    weights (a plain Hugging Face model) plus the adapter in lora/ for resuming."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator: the update is (lora_alpha / lora_r) x B A."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (PPO forwards run in eval mode, where it is off)."""
    lora_target_modules: str = "all-linear"
    """Modules that get adapters: all-linear (every linear layer but the LM head) or a regular
    expression matched against full module names (peft's string form of target_modules)."""
    lr: float = 1e-4
    """Peak learning rate (AdamW)."""
    schedule: Schedule = Schedule.linear
    """Learning-rate decay after warm-up."""
    warmup_ratio: float = 0.0
    """Fraction of the optimizer steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norm weights)."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0: off)."""
    batch_size: int = 32
    """GLOBAL batch: sequences per optimizer step, summed over processes and accumulation."""
    micro_batch_size: int = 32
    """PER-DEVICE sequences per forward/backward; accumulation = batch_size / (micro * processes)."""
    epochs: float = 1.0
    """Passes over the training set (fractions allowed); ignored when max_steps > 0."""
    max_steps: int = 0
    """Optimizer steps to run (0: derived from epochs)."""
    stop_epochs: float = 0.0
    """Stop after this many epochs while the learning-rate schedule still spans `epochs` (the
    reference's warm-up is epoch 2 of its 40-epoch SFT run); 0: run to the end."""
    max_seconds: float = 0.0
    """Stop (after a final evaluation and checkpoint) once this much wall-clock time has passed (0: off)."""
    patience: int = 0
    """Early stopping: end the run once the dev metric has not improved for this many evaluations
    in a row (0: off). The best checkpoint is still best/."""
    eval_every: int = 0
    """Evaluate on dev every this many optimizer steps (0: once per epoch); also at the end."""
    eval_max_new_tokens: int = 256
    """Longest generated solution during dev evaluation."""
    eval_batch_size: int = 64
    """Prompts per generation batch during dev evaluation."""
    save_every: int = 0
    """Checkpoint every this many optimizer steps (0: at every evaluation); also at the end."""
    keep_last: int = 2
    """Checkpoints kept besides best/ (older ones are deleted)."""
    log_every: int = 10
    """Write train metrics every this many optimizer steps."""
    tensorboard: bool = False
    """Also log to TensorBoard under out_dir/tensorboard (needs the tensorboard extra)."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs the wandb extra)."""
    resume: bool = False
    """Continue from the latest checkpoint in out_dir (same config) instead of starting over."""

    def __post_init__(self) -> None:
        check_ranges(self, TRAIN_RANGES)
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs > 0 or max_steps > 0")
        check_preset("model", self.model)

    def check_micro_batches(self) -> None:
        """For trainers that split each batch of `batch_size` sequences into micro-batches (SFT,
        offline self-training, the reward model): micro_batch_size must divide it. More processes
        are checked when the run starts (TrainingRun.accumulation_steps)."""
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size={self.micro_batch_size}: must divide "
                f"batch_size={self.batch_size} (each step runs whole micro-batches)"
            )


TRAIN_RANGES = {
    "dev_holdout": ">= 0", "dev_limit": ">= 0", "max_length": ">= 1",
    "preset_vocab_size": ">= 1", "lora_r": ">= 1", "lora_alpha": "> 0",
    "lora_dropout": "in [0, 1)", "lr": "> 0", "warmup_ratio": "in [0, 1)", "weight_decay": ">= 0",
    "max_grad_norm": ">= 0", "batch_size": ">= 1", "micro_batch_size": ">= 1", "epochs": ">= 0",
    "max_steps": ">= 0", "stop_epochs": ">= 0", "max_seconds": ">= 0", "patience": ">= 0",
    "eval_every": ">= 0", "eval_max_new_tokens": ">= 1", "eval_batch_size": ">= 1",
    "save_every": ">= 0", "keep_last": ">= 1", "log_every": ">= 1",
}  # fmt: skip
"""Accepted range of each numeric TrainConfig field (reft.config.RANGES)."""


@dataclass
class SFTConfig(TrainConfig):
    """SFT on gold chains of thought (the defaults are a tiny CPU run on the synthetic task)."""

    out_dir: str = "runs/sft"
    """Directory for checkpoints, metrics.jsonl and the resolved config.yaml."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    warmup_ratio: float = 0.03
    """Fraction of the optimizer steps spent warming the learning rate up linearly from 0."""
    epochs: float = 2.0
    """Passes over the training set (the paper's warm-up: 2 epochs; its SFT baseline: 40)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_micro_batches()


class ValueModelKind(str, Enum):
    """Where the PPO values come from."""

    shared_trunk = "shared_trunk"
    """A linear head on the policy's last hidden state (the paper's default)."""
    separate_critic = "separate_critic"
    """A critic with its own trunk, initialised from the same checkpoint (the paper's ablation)."""
    none = "none"
    """No value model: what a critic-free estimator uses, whatever this setting says."""


class Estimator(str, Enum):
    """How a PPO step turns outcome scores into per-token advantages (reft.algos)."""

    gae = "gae"
    """GAE with the value model's baseline, then whitening (the paper's PPO)."""
    grpo = "grpo"
    """(r - group mean) / group std over each prompt's samples (DeepSeekMath's GRPO); no critic."""
    dr_grpo = "dr_grpo"
    """r - group mean, no std (Dr. GRPO, Liu et al. 2025); no critic."""
    rloo = "rloo"
    """r - mean of the prompt's OTHER samples (RLOO, Ahmadian et al. 2024); no critic."""
    reinforce_pp = "reinforce_pp"
    """Discounted return of the KL-penalised token rewards, whitened over the batch
    (REINFORCE++, Hu 2025); no critic."""

    @property
    def uses_critic(self) -> bool:
        return self is Estimator.gae

    @property
    def uses_groups(self) -> bool:
        return self in (Estimator.grpo, Estimator.dr_grpo, Estimator.rloo)


class KLPlacement(str, Enum):
    """Where the KL to the reference enters the objective."""

    reward = "reward"
    """-kl_coef x KL on every token's reward (ReFT, PPO-RLHF, REINFORCE++)."""
    loss = "loss"
    """+kl_coef x the aggregated KL as a loss term, with gradient (GRPO; use kl_estimator=k3)."""


class KLEstimator(str, Enum):
    """Per-token estimator of KL(policy || reference) added to the reward (before kl_coef)."""

    k1 = "k1"
    """log pi - log pi_ref (the reference's choice)."""
    k2 = "k2"
    """0.5 * (log pi - log pi_ref)^2."""
    k3 = "k3"
    """exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1 (unbiased, non-negative)."""


class Whitening(str, Enum):
    """How advantages are normalised over the response tokens of a batch."""

    global_ = "global"
    """Mean and std over all processes' tokens (the reference's default)."""
    local = "local"
    """Mean and std over this process's tokens."""
    none = "none"
    """No whitening."""


class RolloutBackendKind(str, Enum):
    """What samples the PPO rollouts (reft.generation.backends)."""

    reft = "reft"
    """reft's own KV-cache decode loop on the training model (default)."""
    hf = "hf"
    """transformers' `model.generate` on the training model."""
    vllm = "vllm"
    """A vLLM engine beside the trainer (vllm extra, CUDA only); weights synced after every update."""


class LossAggregation(str, Enum):
    """How per-token PPO losses become one number."""

    seq_mean_token_mean = "seq_mean_token_mean"
    """Mean over each sequence's response tokens, then over sequences (the reference's choice)."""
    token_mean = "token_mean"
    """Mean over all response tokens of the mini-batch (long responses weigh more)."""
    token_sum_constant = "token_sum_constant"
    """Sum over the mini-batch's response tokens / (sequences x max_new_tokens): Dr. GRPO's
    constant normaliser, no length bias."""


@dataclass
class PPOConfig(TrainConfig):
    """ReFT: PPO from an SFT warm-up checkpoint, KL penalty to its frozen copy, value head.

    Batches: `batch_size` prompts per rollout step (global); each gets `samples_per_prompt` responses;
    the responses are split into mini-batches of `mini_batch_size` sequences (global) for
    `ppo_epochs` passes, each mini-batch one optimizer step, computed `micro_batch_size` sequences
    per device at a time.
    """

    model: str = "runs/warmup/best"
    """The SFT warm-up checkpoint the policy starts from."""
    ref_model: str | None = None
    """The frozen reference model (null: a copy of `model`, as the paper). With lora=true the
    reference is the policy with its adapters disabled, and ref_model must stay null."""
    ref_device: str = "same"
    """Where the reference model lives: same (the training device), cpu, or a device name."""
    ref_dtype: str | None = None
    """Weights dtype of the reference model (null: `dtype`), e.g. bfloat16 to halve its memory."""
    out_dir: str = "runs/reft"
    """Directory for checkpoints, metrics.jsonl and the resolved config.yaml."""
    lr: float = 3e-5
    """Peak learning rate (reference: 3e-7 for 7B models, 3e-6 for 125M-scale models)."""
    batch_size: int = 32
    """Prompts per rollout step, summed over processes (global)."""
    micro_batch_size: int = 16
    """Sequences per device per forward/backward pass."""
    length_buckets: int = 8
    """Each PPO forward (update, rollout policy, reference) runs its micro-batch as at most this
    many groups of rows of similar length, each trimmed of its own padding (groups of >= 32 rows;
    reft.models.length_buckets): the same function, less computation on padding. 1 = off."""
    mini_batch_size: int = 32
    """Sequences per PPO optimizer step (global); must divide batch_size x samples_per_prompt."""
    samples_per_prompt: int = 1
    """Responses sampled per prompt (reference: 1)."""
    ppo_epochs: int = 2
    """Passes over each rollout batch (reference: 2)."""
    estimator: Estimator = Estimator.gae
    """Advantage estimator: gae (the paper: critic + GAE) or a critic-free one (grpo, dr_grpo,
    rloo: need samples_per_prompt >= 2; reinforce_pp). Without gae no value model is built."""
    group_std: bool = True
    """estimator=grpo: divide by the group's std (false: Dr. GRPO's choice, keep the scale)."""
    value_model: ValueModelKind = ValueModelKind.shared_trunk
    """Value head on the policy trunk, or a separate critic (ablation); estimator=gae only."""
    kl_coef: float = 0.05
    """beta of the per-token KL penalty (reference: 0.05 N-CoT, 0.01 P-CoT; 0 = ablation)."""
    kl_placement: KLPlacement = KLPlacement.reward
    """KL in the reward (ReFT) or as a loss term (GRPO)."""
    kl_estimator: KLEstimator = KLEstimator.k1
    """Estimator of the per-token KL (k1 in the reward as the reference; k3 as GRPO's loss)."""
    gamma: float = 1.0
    """GAE discount (reference: 1.0)."""
    lam: float = 0.95
    """GAE lambda (reference: 0.95)."""
    clip_range: float = 0.2
    """PPO ratio clip."""
    clip_range_value: float = 0.2
    """Value clip: new values may move at most this far from the rollout values."""
    vf_coef: float = 5.0
    """Weight of the value loss (reference: 5)."""
    critic_warmup_steps: int = 0
    """PPO steps at the start that train only the value model (the policy loss is left out), so the
    policy's first updates do not follow the advantages of an untrained critic (OpenRLHF's
    freezing_actor_steps). Meant for value_model=separate_critic; 0: off, as the paper."""
    whitening: Whitening = Whitening.global_
    """Advantage whitening: global (all processes), local or none."""
    loss_aggregation: LossAggregation = LossAggregation.seq_mean_token_mean
    """seq_mean_token_mean (the reference) or token_mean."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """How rollouts are sampled (the reference: temperature 1, no top-k / top-p, up to 700 new
    tokens); `sampling.batch_size` (alias `rollout_batch_size`): sequences decoded together."""
    grading: GradingSettings = field(default_factory=GradingSettings)
    """How rollouts are scored: the partial reward (`partial_reward=0`: the ablation) and the P-CoT
    program time limit."""
    rollout_backend: RolloutBackendKind = RolloutBackendKind.reft
    """Rollout sampler: reft (own decode loop), hf (model.generate) or vllm (vllm extra, GPU)."""
    vllm_gpu_memory_utilization: float = 0.3
    """rollout_backend=vllm: fraction of the GPU memory the vLLM engine may take (weights + KV cache)."""
    epochs: float = 10.0
    """Passes over the training questions (rollout steps = epochs x questions / batch_size)."""

    ALIASES: ClassVar[dict[str, str]] = {
        **SAMPLING_ALIASES, "rollout_batch_size": "sampling.batch_size", **GRADING_ALIASES,
    }  # fmt: skip
    """Flat spellings of the sections' settings (reft.config.aliases_of)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, PPO_RANGES)
        rollouts = self.batch_size * self.samples_per_prompt
        if rollouts % self.mini_batch_size:
            raise ValueError(
                f"mini_batch_size={self.mini_batch_size}: must divide the {rollouts} responses "
                "of a step (batch_size x samples_per_prompt)"
            )
        if self.mini_batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size={self.micro_batch_size}: must divide "
                f"mini_batch_size={self.mini_batch_size}"
            )
        if self.estimator.uses_critic and self.value_model is ValueModelKind.none:
            raise ValueError("estimator=gae needs a value model: value_model=none is for the "
                             "critic-free estimators")  # fmt: skip
        if self.critic_warmup_steps and not self.estimator.uses_critic:
            raise ValueError(f"critic_warmup_steps={self.critic_warmup_steps}: there is no critic "
                             f"to warm up with estimator={self.estimator.value}")  # fmt: skip
        if self.estimator.uses_groups and self.samples_per_prompt < 2:
            raise ValueError(
                f"estimator={self.estimator.value}: needs samples_per_prompt >= 2 (its baseline "
                f"is the other samples of the same prompt), got {self.samples_per_prompt}"
            )
        if self.lora and self.ref_model is not None:
            raise ValueError(
                "with lora=true the reference is the policy with its adapters disabled: "
                "leave ref_model null"
            )


PPO_RANGES = {
    "mini_batch_size": ">= 1", "samples_per_prompt": ">= 1", "ppo_epochs": ">= 1",
    "kl_coef": ">= 0", "gamma": "in [0, 1]", "lam": "in [0, 1]", "clip_range": "> 0",
    "clip_range_value": "> 0", "vf_coef": ">= 0", "critic_warmup_steps": ">= 0",
    "vllm_gpu_memory_utilization": "in (0, 1]", "length_buckets": ">= 1",
}  # fmt: skip
"""Accepted range of each numeric PPOConfig field of its own (its sections check theirs)."""


class SelfTrainMode(str, Enum):
    """Which self-training baseline `reft self-train` runs."""

    offline = "offline"
    """Sample once from `sample_model`, keep the correct unique solutions, SFT on them plus the gold
    solutions (the paper's Offline-ST)."""
    online = "online"
    """Every step: sample with the current policy, SFT step on its correct samples mixed with the
    gold solutions (the paper's Online-ST)."""


@dataclass
class SelfSampledConfig(TrainConfig):
    """Trainers that first sample solutions to the training questions: self-training, reward model."""

    sample_model: str | None = None
    """Checkpoint that samples the solutions before training (null: `model`); the reference samples
    with the SFT warm-up. Online self-training samples with the policy being trained instead."""
    num_samples: int = 100
    """Solutions sampled per question before training (reference: 100); online self-training samples
    during training instead (samples_per_prompt)."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """How the solutions are sampled (the reference: temperature 1, no top-k / top-p, up to 700
    new tokens); `sampling.batch_size` (alias `sample_batch_size`): sequences decoded together."""
    grading: GradingSettings = field(default_factory=GradingSettings)
    """How they are graded: correct or not decides what is kept or labelled; the partial reward
    shows only in the logged mean reward."""

    ALIASES: ClassVar[dict[str, str]] = {
        **SAMPLING_ALIASES, "sample_batch_size": "sampling.batch_size", **GRADING_ALIASES,
    }  # fmt: skip
    """Flat spellings of the sections' settings (reft.config.aliases_of)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"num_samples": ">= 1"})


@dataclass
class SelfTrainConfig(SelfSampledConfig):
    """`reft self-train`: the paper's offline and online self-training baselines.

    offline: `num_samples` solutions per training question from `sample_model`, the correct ones
    de-duplicated (at most `max_unique_per_question` each) plus the gold solutions, then plain SFT of
    `model` on that union (written to out_dir/self_training_data.json first).
    online: each step samples `samples_per_prompt` responses per prompt with the current policy and
    takes `update_epochs` optimizer steps on own_weight x NLL(correct samples) + gold_weight x
    NLL(gold solutions of the same prompts); no reference model, value head or KL.
    """

    mode: SelfTrainMode = SelfTrainMode.offline
    """offline (sample once, SFT on the filtered union) or online (sample every step)."""
    model: str = "runs/warmup/best"
    """Model trained. offline: the reference starts from the BASE model (e.g. the warm-up's
    preset:NAME with the same seed, together with sample_model=the warm-up); online: the warm-up."""
    out_dir: str = "runs/self_train"
    """Directory for checkpoints, metrics.jsonl, config.yaml and (offline) self_training_data.json."""
    max_unique_per_question: int = 10
    """offline: keep at most this many distinct correct samples per question, in sampling order
    (reference: 10; 0 = no limit)."""
    keep_gold: bool = True
    """offline: also train on each question's gold solution unless a kept sample has the same text
    (reference: yes)."""
    samples_per_prompt: int = 1
    """online: responses sampled per prompt at each step (reference: 1)."""
    update_epochs: int = 2
    """online: optimizer steps on each step's batch (reference: 2, its ppo_epochs)."""
    own_weight: float = 0.5
    """online: weight of the mean NLL of the policy's correct samples (reference: 0.5)."""
    gold_weight: float = 0.5
    """online: weight of the mean NLL of the gold solutions (reference: 0.5)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {
            "max_unique_per_question": ">= 0", "samples_per_prompt": ">= 1",
            "update_epochs": ">= 1", "own_weight": ">= 0", "gold_weight": ">= 0",
        })  # fmt: skip
        if self.mode is SelfTrainMode.offline:  # online samples every step: no micro-batch split
            self.check_micro_batches()
        if self.own_weight + self.gold_weight <= 0:
            raise ValueError("own_weight + gold_weight must be > 0")
        if self.mode is SelfTrainMode.online and self.sample_model is not None:
            raise ValueError(
                "online self-training samples with the policy it trains: unset sample_model"
            )
        sampler = self.sample_model or self.model
        if self.mode is SelfTrainMode.offline and sampler.startswith(PRESET_PREFIX):
            raise ValueError(
                f"offline self-training samples from {sampler!r}, an untrained preset: set "
                "sample_model to the warm-up checkpoint"
            )


class RMLoss(str, Enum):
    """How `reft rm train` turns classifier logits into a loss (reft.train.reward_model)."""

    pointwise = "pointwise"
    """Cross-entropy of each solution's label (the reference)."""
    listwise = "listwise"
    """Batches of whole questions; per question with correct and wrong solutions, -log of the
    probability mass a softmax over its solutions' scores puts on the correct ones."""


class RMSelectMetric(str, Enum):
    """The dev metric of `reft rm train` whose maximum selects best/ (keys of rm_dev_metrics)."""

    auc = "auc"
    """ROC AUC over all dev solutions pooled (also rewards telling easy questions from hard ones)."""
    auc_within = "auc_within"
    """AUC over (correct, wrong) pairs of solutions of the same dev question: what rerank uses."""
    rerank = "rerank"
    """Rerank accuracy over the dev questions' distinct solutions (coarse on few questions)."""


@dataclass
class RewardModelConfig(SelfSampledConfig):
    """`reft rm train`: an outcome reward model (2-class sequence classifier, "is this solution
    correct?") trained on solutions sampled for the training questions and labelled by grading.

    The classifier reads `Question:\\n{q}\\nAnswer reasoning:\\n{solution}` and is pooled at the
    solution's last token. Its dev split is made of solutions sampled the same way for the DEV
    questions (dev_data, or dev_holdout training questions held out), so no question is in both.
    """

    model: str = "runs/sft/best"
    """Causal-LM checkpoint the classifier's trunk is initialised from (reference: the SFT model);
    its classification head starts random."""
    max_unique_per_question: int = 0
    """Keep at most this many distinct solutions per question, in sampling order (0 = all, the
    reference)."""
    out_dir: str = "runs/rm"
    """Directory for checkpoints (Hugging Face sequence-classifier format), metrics and rm_data.json."""
    lr: float = 1e-4
    """Peak learning rate (reference: 1e-6 for 7B models)."""
    warmup_ratio: float = 0.1
    """Fraction of the optimizer steps spent warming the learning rate up (reference: 0.1)."""
    epochs: float = 3.0
    """Passes over the training solutions (reference: 3)."""
    loss: RMLoss = RMLoss.pointwise
    """pointwise (cross-entropy per solution, the reference) or listwise (whole questions per batch,
    -log of the softmax mass on a question's correct solutions; batch_size stays the approximate
    number of solutions per step; a question with more than micro_batch_size distinct solutions is
    split into groups of at most that many)."""
    pointwise_weight: float = 0.0
    """loss=listwise: add this times the mean cross-entropy of the batch's solutions (0: none)."""
    select_metric: RMSelectMetric = RMSelectMetric.auc
    """Dev metric whose maximum selects best/: auc (pooled), auc_within (pairs of one question's
    solutions) or rerank."""
    records_from: str | None = None
    """Reuse the labelled records of another `reft rm train` run (its out_dir or its rm_data.json)
    instead of sampling: sample_model, num_samples, sampling, train_data and dev_data are then not
    used, and the dev split is that run's. The copy in out_dir notes where it came from."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"max_unique_per_question": ">= 0", "pointwise_weight": ">= 0"})
        self.check_micro_batches()
        if self.pointwise_weight and self.loss is RMLoss.pointwise:
            raise ValueError(
                f"pointwise_weight={self.pointwise_weight}: only for loss=listwise "
                "(loss=pointwise is the cross-entropy alone)"
            )
        if any(name.startswith(PRESET_PREFIX) for name in (self.model, self.sample_model or "")):
            raise ValueError(
                "the reward model starts from, and samples with, trained causal-LM checkpoints, "
                "not a preset"
            )
