"""Checkpoints: a Hugging Face model directory plus the trainer state to resume from it, written atomically.

Layout under a run's output directory::

    checkpoints/step_000120/   config.json, model.safetensors, tokenizer files   (loadable by HF alone)
                               trainer_state.pt   optimizer, scheduler, RNG states, step, extra modules
                               reft_meta.json     step, epoch, metrics, elapsed seconds, config
                               README.md          the model card (how it was trained, its results)
                               manifest.json      every other file's size and SHA-256, written last
    checkpoints/latest         the name of the newest complete checkpoint
    final -> checkpoints/step_N   the last checkpoint of a finished run (a symlink)
    best/                      the checkpoint with the best dev metric (a complete copy)

A checkpoint is written into a temporary directory and renamed into place, and `latest` is replaced
atomically, so a run killed at any moment leaves only complete checkpoints behind. A resume takes the
newest checkpoint whose files still match its manifest (reft.manifest), setting corrupt ones aside.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reft.files import removed_on_failure, write_text_atomic
from reft.manifest import CorruptCheckpointError, manifest_problems, write_manifest
from reft.model_card import write_model_card

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
META_FILE = "reft_meta.json"
LATEST_FILE = "latest"
FINAL_LINK = "final"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint on disk."""

    path: Path
    step: int

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / META_FILE).read_text())

    def trainer_state(self) -> dict[str, Any]:
        return torch.load(self.path / STATE_FILE, map_location="cpu", weights_only=False)


class Checkpointer:
    """Writes, lists, prunes and finds checkpoints of one run."""

    def __init__(self, out_dir: str | Path, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(out_dir) / "checkpoints"
        self.best_dir = Path(out_dir) / "best"
        self.keep_last = keep_last

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        tokenizer: Any,
        state: dict[str, Any],
        meta: dict[str, Any],
        save_extra: Callable[[Path], None] | None = None,
    ) -> Checkpoint:
        """Write checkpoint `step` atomically, point `latest` at it and prune old ones.

        `save_extra(directory)` writes files beside the model (e.g. a value head) before the rename.
        """
        name = f"step_{step:06d}"
        final = self.root / name
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        previous = self.latest()
        hint = (
            f". The previous checkpoint ({previous.path.name}) is intact: free space, then rerun "
            "with resume=true"
            if previous is not None
            else ""
        )
        with removed_on_failure(tmp, final, hint):
            save_hf_model(model, tokenizer, tmp)
            if save_extra is not None:
                save_extra(tmp)
            torch.save(state, tmp / STATE_FILE)
            meta = {"step": step, "saved_at": time.time(), **meta}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            write_model_card(tmp, meta)
            write_manifest(tmp)  # last: it vouches for every file above but the card
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        write_text_atomic(self.root / LATEST_FILE, name)
        self._prune()
        return Checkpoint(final, step)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None."""
        pointer = self.root / LATEST_FILE
        if pointer.is_file():
            path = self.root / pointer.read_text().strip()
            if (path / META_FILE).is_file():
                return Checkpoint(path, _step_of(path))
        complete = self.list()
        return complete[-1] if complete else None

    def latest_intact(self) -> Checkpoint | None:
        """The newest checkpoint whose files match its manifest, or None when there is none at all.

        A corrupt newer one is renamed `corrupt-step_N` (kept, never resumed from or pruned) with a
        warning naming its files; CorruptCheckpointError when checkpoints exist but none is intact.
        """
        newest = self.latest()
        candidates = ([newest] if newest else []) + self.list()[::-1]
        for checkpoint in dict.fromkeys(candidates):
            problems = manifest_problems(checkpoint.path)
            if not problems:
                return checkpoint
            aside = checkpoint.path.with_name(f"corrupt-{checkpoint.path.name}")
            shutil.rmtree(aside, ignore_errors=True)
            checkpoint.path.rename(aside)
            logger.warning("checkpoint %s is corrupt (%s); moved to %s, trying the one before",
                           checkpoint.path.name, "; ".join(problems), aside)  # fmt: skip
        if candidates:
            raise CorruptCheckpointError(
                f"no intact checkpoint in {self.root}: every one differs from its manifest (moved to "
                "corrupt-step_*). Start the run again without resume=true in a new out_dir"
            )
        return None

    def list(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            Checkpoint(path, _step_of(path))
            for path in self.root.glob("step_*")
            if (path / META_FILE).is_file()
        ]
        return sorted(found, key=lambda checkpoint: checkpoint.step)

    def mark_best(self, checkpoint: Checkpoint) -> Path:
        """Copy `checkpoint` to `best/` (replacing the previous best atomically)."""
        tmp = self.best_dir.with_name(f".tmp-best-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with removed_on_failure(tmp, self.best_dir):
            shutil.copytree(checkpoint.path, tmp)
        old = self.best_dir.with_name(f".old-best-{os.getpid()}")
        if self.best_dir.exists():
            self.best_dir.rename(old)
        tmp.rename(self.best_dir)
        shutil.rmtree(old, ignore_errors=True)
        return self.best_dir

    def best_step(self) -> int | None:
        """The step `best/` holds, or None when there is no complete best/."""
        meta = self.best_dir / META_FILE
        return json.loads(meta.read_text())["step"] if meta.is_file() else None

    def repair_best(self, best_step: int) -> None:
        """Make `best/` hold step `best_step` (the run state's record) after a kill.

        A run killed between writing the best checkpoint and copying it to best/ (or inside that
        copy) resumes from that very checkpoint, so it is still there to copy; the leftovers of the
        interrupted copy are removed.
        """
        for stale in self.best_dir.parent.glob(".tmp-best-*"):
            shutil.rmtree(stale, ignore_errors=True)
        problems = manifest_problems(self.best_dir) if self.best_dir.is_dir() else []
        if problems:  # copied again below from its checkpoint, if that is still kept
            logger.warning("best/ is corrupt (%s); removing it", "; ".join(problems))
            shutil.rmtree(self.best_dir)
        if best_step >= 0 and self.best_step() != best_step:
            source = next((c for c in self.list() if c.step == best_step), None)
            if source is not None:
                self.mark_best(source)
        for stale in self.best_dir.parent.glob(".old-best-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def link_final(self) -> Path | None:
        """Point `out_dir/final` (a symlink) at the newest checkpoint: a stable path for recipes."""
        latest = self.latest()
        if latest is None:
            return None
        final = self.root.parent / FINAL_LINK
        tmp = final.with_name(f".{FINAL_LINK}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(latest.path.relative_to(self.root.parent))
        tmp.replace(final)
        return final

    def _prune(self) -> None:
        for checkpoint in self.list()[: -self.keep_last]:
            shutil.rmtree(checkpoint.path, ignore_errors=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)


def save_hf_model(model: torch.nn.Module, tokenizer: Any, directory: str | Path) -> None:
    """Save `model` (a Hugging Face PreTrainedModel) and `tokenizer` in the standard format.

    The result loads with `AutoModelForCausalLM.from_pretrained(directory)` alone, also for a model
    read from a GGUF file (see `_without_gguf_record`).
    """
    with _without_gguf_record(model):
        model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


@contextmanager
def _without_gguf_record(model: torch.nn.Module) -> Iterator[None]:
    """Hide a GGUF quantizer record from `save_pretrained` while the model's weights are dense.

    `from_pretrained(..., gguf_file=...)` without `GgufConfig(dequantize=True)` leaves a GGUF
    quantizer on the model (and its config in `model.config.quantization_config`) even when every weight
    was unpacked into a plain tensor; `save_pretrained` then refuses ("quantized with gguf and is not
    serializable"), and a config.json carrying it would not load without the file. Weights still
    packed in GGUF blocks cannot be written as a normal checkpoint: that is an error.
    reft.models.load.load_causal_lm never attaches the record; this covers models loaded elsewhere.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is None or getattr(method, "value", method) != "gguf":
        yield
        return
    packed = [
        name for name, module in model.named_modules() if type(module).__name__ == "GgufLinear"
    ]
    if packed:
        raise ValueError(
            f"{len(packed)} layers (e.g. {packed[0]}) still hold GGUF-packed weights; load the model "
            "with reft.models.load.load_causal_lm, which unpacks them, to save a normal checkpoint"
        )
    config = model.config
    record = config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    try:
        yield
    finally:
        model.hf_quantizer = quantizer
        if record is not None:
            config.quantization_config = record


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step_"))
