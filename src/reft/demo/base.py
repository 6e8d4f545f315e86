"""The demo's pretrained start: a stand-in for pretraining, built once and shared by every seed.

The paper starts every method from one pretrained LLM, whose short SFT warm-up already computes and
has not memorised its training questions. A tiny model trained from scratch on the demo's 1,000
questions only computes after it has memorised them, so RL there has nothing to generalise
(docs/demo.md "The regime"). The base stage closes that gap: `reft sft` from the preset on a corpus of story
families the target task never uses, so the base knows arithmetic and the solution format but not
the target's wording (it solves few target questions zero-shot), as a pretrained LLM knows maths but
not GSM8K's format.

A base is keyed by everything that decides its weights (model, CoT kind, corpus knobs, `reft sft`
settings), and lives in `base_cache/<key>/`: `--seeds 0,1,2`, reruns and other output directories
reuse it. A model that is not a preset is taken as already pretrained: no base stage is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from reft.config import config_to_dict
from reft.data.synthetic_stories import FAMILIES
from reft.demo.config import DemoConfig
from reft.demo.data import SynthFile, synth_knobs, write_synth_files
from reft.demo.stages import Stage, as_overrides
from reft.models.presets import PRESET_PREFIX
from reft.train.resume import RECORD_ONLY

BASE_FORMAT = 1
"""Part of the cache key: raise it when the way a base is built changes."""


@dataclass
class BasePlan:
    """Where the warm-up starts, and the stage that builds that start when it is not cached."""

    start: str
    """The model the warm-up starts from: the base's last checkpoint, or `model` itself."""
    stage: Stage | None = None
    """The base stage (None: the model is already pretrained)."""
    data_dir: Path | None = None
    """The base corpus directory (train.json, dev.json, tokenizer.json, task.yaml)."""
    corpus: dict[str, SynthFile] = dataclasses.field(default_factory=dict)
    """The corpus files by name, as `write_synth_files` wrote them."""

    def command_lines(self) -> list[str]:
        """The shell lines that build the base by hand (empty for a pretrained model): one
        `reft data synth` per corpus file (its knobs as overrides of task.yaml where they differ),
        then the base stage."""
        if self.stage is None or self.data_dir is None:
            return []
        task = self.corpus["train"][0]
        synth = []
        for name, (knobs, split, size) in self.corpus.items():
            changed = [shlex.quote(f"{f.name}={_dotlist(getattr(knobs, f.name))}")
                       for f in dataclasses.fields(knobs)
                       if getattr(knobs, f.name) != getattr(task, f.name)]  # fmt: skip
            synth.append(" ".join(["reft data synth --config", str(self.data_dir / "task.yaml"),
                                   "--split", split, "--n", str(size), *changed,
                                   "--out", str(self.data_dir / f"{name}.json")]))  # fmt: skip
        return [*synth, self.stage.command_line()]


def _dotlist(value: object) -> str:
    """A knob's value as a `key=value` override writes it ([a,b] for a list)."""
    return f"[{','.join(map(str, value))}]" if isinstance(value, list) else str(value)


KNOBS_ADDED_LATER = {"choices": 0, "literal_prob": 0.0}
"""Corpus knobs added after bases were cached, each with the value that writes the corpus as before:
left out of the key at that value, so a new knob does not rebuild every cached base."""
_ABSENT = object()


def default_base_cache() -> Path:
    """`$XDG_CACHE_HOME/reft/demo_bases` (or ~/.cache/reft/demo_bases)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "reft" / "demo_bases"


def base_key(config: DemoConfig) -> str:
    """A short hash of every setting that decides the base's weights."""
    corpus = {knob: value for knob, value in config_to_dict(config.base_task).items()
              if KNOBS_ADDED_LATER.get(knob, _ABSENT) != value}  # fmt: skip
    settings = {
        "format": BASE_FORMAT,
        "model": config.model,
        "cot": config.cot.value,
        "threads": config.workers,
        "corpus": corpus,
        "sft": {
            key: value
            for key, value in {**config.common, **config.base}.items()
            if key not in RECORD_ONLY  # what is logged or kept decides no weight
        },
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def base_cache_dir(config: DemoConfig) -> Path | None:
    """Where the base of `config` is cached (None: the model is already pretrained)."""
    if not config.model.startswith(PRESET_PREFIX):
        return None
    cache = Path(config.base_cache) if config.base_cache else default_base_cache()
    return cache / base_key(config)


def plan_base(config: DemoConfig) -> BasePlan:
    """The base stage of `config` (its corpus written on disk), or the pretrained model as start."""
    base_dir = base_cache_dir(config)
    if base_dir is None:
        return BasePlan(start=config.model)
    data_dir, corpus = base_dir / "data", base_corpus(config)
    write_synth_files(data_dir, corpus, config.cot, synth_knobs(config.base_task))
    out_dir = base_dir / "model"
    settings = {
        "model": config.model,
        "train_data": str(data_dir / "train.json"),
        "dev_data": str(data_dir / "dev.json"),
        "preset_tokenizer_data": str(data_dir / "tokenizer.json"),
        "cot": config.cot.value,
        **config.common,
        **config.base,
        "out_dir": str(out_dir),
    }
    stage = Stage("base", ["sft", *as_overrides(settings)], out_dir, settings=settings)
    return BasePlan(start=str(out_dir / "final"), stage=stage, data_dir=data_dir, corpus=corpus)


def base_corpus(config: DemoConfig) -> dict[str, SynthFile]:
    """The base corpus files: train and dev splits of `base_task`, and the tokenizer's text."""
    synth = synth_knobs(config.base_task)
    # The tokenizer's text covers every story family's words, as a pretrained tokenizer covers
    # English: drawn from the dev hash buckets, so it never holds a training question of any task.
    wording = dataclasses.replace(synth, families=sorted(FAMILIES))
    return {
        "train": (synth, "train", config.base_task.train_size),
        "dev": (synth, "dev", config.base_task.dev_size),
        "tokenizer": (wording, "dev", config.base_task.tokenizer_size),
    }
