"""The demo's configuration: the task, the model and one section of `reft` settings per stage.

A recipe (`recipes/default.yaml`, with `recipes/python.yaml` for P-CoT and `recipes/quick.yaml` for
--quick layered on it) fills every field. Stage sections are handed
to the stage's own command as `key=value` overrides, so they accept exactly what `reft sft`,
`reft train`, `reft self-train`, `reft rm train` and `reft eval` accept, and are checked there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reft.data.example import CotKind
from reft.data.synthetic import PCOT_CHOICES_ERROR, SynthConfig
from reft.models.presets import check_preset

RECIPES_DIR = Path(__file__).parent / "recipes"
"""Where the shipped recipes live (`default.yaml`; `python.yaml` layered on it for --cot python and
`quick.yaml` for --quick)."""
STUDIES = ("", "ablations", "warmup", "hacking")
"""`DemoConfig.study` values: the main comparison, then the paper's analyses (reft.demo.studies)."""


@dataclass
class TaskConfig(SynthConfig):
    """The synthetic task's difficulty knobs plus the size of each split."""

    train_size: int = 4000
    """Training questions (each with one gold chain of thought)."""
    dev_size: int = 500
    """Dev questions: every checkpoint choice and plateau decision is made on these."""
    test_size: int = 1000
    """Test questions: used for the final table only."""
    train_eval_size: int = 500
    """Training questions (the first ones) each method is also evaluated on, greedy, for the
    generalisation table: accuracy on questions it trained on against unseen ones."""
    shifted_size: int = 500
    """Questions of the shifted split: test-split problems with `shifted_steps` more operations than
    training ever has (min_steps = max_steps = max_steps + shifted_steps)."""
    shifted_steps: int = 1
    """How many more operations the shifted split's problems have than the longest training ones."""


@dataclass
class BaseTaskConfig(SynthConfig):
    """The base stage's corpus (a stand-in for pretraining data): synthetic problems of the story
    families the target task does not use, so the base never sees the target's questions."""

    train_size: int = 20000
    """Problems the base is trained on."""
    dev_size: int = 300
    """Problems of the same kind the base stage reports dev accuracy on."""
    tokenizer_size: int = 3000
    """Problems of every story family whose text (only) trains the base's tokenizer."""


@dataclass
class DemoConfig:
    """One run of `reft demo` (one or several seeds)."""

    out: str = ""
    """Output directory (default: runs/demo-<timestamp>)."""
    seeds: str = "0"
    """Comma-separated seeds; each repeats the whole comparison and the report gives mean and std."""
    quick: bool = False
    """Smoke-test size (a few minutes): checks the pipeline and the artefacts, not the accuracy gap."""
    resume: bool = False
    """Continue a demo in `out`: finished stages are kept, unfinished ones resume from checkpoints."""
    model: str = "preset:micro-llama"
    """Model the base stage pretrains from scratch (a preset), or a pretrained model (a Hugging Face
    name or path) that the warm-up starts from directly, with no base stage."""
    cot: CotKind = CotKind.nl
    """Chain-of-thought kind: nl (N-CoT) or python (P-CoT)."""
    workers: int = 2
    """Stages run at once (each with cores / workers torch threads)."""
    k: int = 8
    """Samples per test question for the table's voting@K, rerank@K and pass@K."""
    curve_k: int = 0
    """Samples per test question of the `curve_methods`, for the accuracy-against-K figure (1, 2, 4,
    ... up to curve_k; the table reads K from the same samples' first K). 0: k."""
    curve_methods: list[str] = field(default_factory=list)
    """Methods whose test eval draws curve_k samples (the others draw k)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The synthetic task (knobs of `reft data synth` and split sizes)."""
    base_task: BaseTaskConfig = field(default_factory=BaseTaskConfig)
    """The base stage's corpus (knobs of `reft data synth` and split sizes)."""
    base_cache: str = ""
    """Directory of built bases, one per settings key (default: ~/.cache/reft/demo_bases)."""
    common: dict[str, Any] = field(default_factory=dict)
    """Settings given to every training stage (dev_limit, eval cadence, generation length, ...)."""
    base: dict[str, Any] = field(default_factory=dict)
    """`reft sft` settings of the base stage (a preset model only), shared by every seed."""
    warmup: dict[str, Any] = field(default_factory=dict)
    """`reft sft` settings of the SFT warm-up that ReFT and self-training start from."""
    sft: dict[str, Any] = field(default_factory=dict)
    """`reft sft` settings of the SFT baseline, which continues from the warm-up until dev plateaus."""
    reft: dict[str, Any] = field(default_factory=dict)
    """`reft train` settings (PPO from the warm-up)."""
    offline_self_training: dict[str, Any] = field(default_factory=dict)
    """`reft self-train mode=offline` settings."""
    online_self_training: dict[str, Any] = field(default_factory=dict)
    """`reft self-train mode=online` settings."""
    reward_model: dict[str, Any] = field(default_factory=dict)
    """`reft rm train` settings of every method's reranker (trained on the warm-up's samples)."""
    eval: dict[str, Any] = field(default_factory=dict)
    """`reft eval` settings for the test-split evaluation of every method."""
    study: str = ""
    """One of the paper's analyses instead of the main comparison, on the same stages and runner:
    `ablations` (ReFT variants from one warm-up), `warmup` (ReFT from warm-ups of several
    lengths, beside the SFT baseline) or `hacking` (ReFT on the task's multiple-choice and numeric
    forms: reward hacking). Empty: the main comparison."""
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """--study ablations: ReFT variants by name, each `reft train` settings layered on `reft`."""
    warmup_epochs: list[int] = field(default_factory=list)
    """--study warmup: warm-up lengths in epochs (the warm-up's `stop_epochs`) ReFT starts from."""
    hacking_choices: int = 4
    """--study hacking: options per question of the multiple-choice form (the task's `choices`,
    2-5; MathQA has 5)."""
    hacking_max_steps: int = 90
    """--study hacking: PPO steps of each of its three ReFT runs (the same for all). The demo's 150
    make the study ~38 minutes on 2 cores; the demo's ReFT is level on dev from step 50-70, and the
    multiple-choice runs of a 150-step study were level from their first steps."""

    def __post_init__(self) -> None:
        check_preset("model", self.model)  # before the demo writes its corpus
        if self.curve_k and self.curve_k < self.k:
            raise ValueError(f"curve_k={self.curve_k} must be 0 or at least k={self.k}")
        if self.study not in STUDIES:
            raise ValueError(f"study={self.study!r}: expected one of {', '.join(STUDIES[1:])}")
        if self.study == "hacking":
            self._check_hacking()

    def _check_hacking(self) -> None:
        """--study hacking's multiple-choice form is valid: checked before the base is built, not
        when its data is written."""
        if self.cot != CotKind.nl:
            raise ValueError(f"study=hacking: {PCOT_CHOICES_ERROR}")
        try:
            replace(self.task, choices=self.hacking_choices)  # SynthConfig checks the count
        except ValueError as error:
            raise ValueError(f"hacking_choices={self.hacking_choices}: {error}") from None

    def seed_list(self) -> list[int]:
        """The seeds as integers ("0,1,2" -> [0, 1, 2])."""
        try:
            seeds = [int(part) for part in str(self.seeds).split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"seeds must be comma-separated integers, got {self.seeds!r}"
            ) from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct integers, got {self.seeds!r}")
        return seeds

    def recipe_files(self) -> list[Path]:
        """The shipped recipe files this configuration is layered on, in order."""
        python = [RECIPES_DIR / "python.yaml"] if self.cot == CotKind.python else []
        quick = [RECIPES_DIR / "quick.yaml"] if self.quick else []
        return [RECIPES_DIR / "default.yaml", *python, *quick]
