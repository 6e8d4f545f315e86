"""The demo's generated data files: synthetic splits written once and kept on reruns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reft.config import save_config
from reft.data.example import CotKind
from reft.data.loaders import write_examples
from reft.data.synthetic import SynthConfig, generate_examples

SynthFile = tuple[SynthConfig, str, int]
"""(generator knobs, split, number of problems) of one file."""


def synth_knobs(task: SynthConfig) -> SynthConfig:
    """The plain generator knobs of a task section (its split sizes dropped)."""
    return SynthConfig(**{f.name: getattr(task, f.name) for f in dataclasses.fields(SynthConfig)})


def write_synth_files(
    data_dir: Path, files: dict[str, SynthFile], cot: CotKind, task: SynthConfig
) -> Path:
    """`data_dir/<name>.json` for each entry, generated only when absent (reruns keep the data that
    earlier stages were trained on), and the task's knobs in `data_dir/task.yaml`."""
    for name, (knobs, split, size) in files.items():
        path = data_dir / f"{name}.json"
        if not path.exists():
            write_examples(path, generate_examples(knobs, split, size, cot))
    save_config(task, data_dir / "task.yaml")
    return data_dir
