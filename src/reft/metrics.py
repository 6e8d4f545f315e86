"""Metrics: one JSON line per logged step, written as it happens; optional TensorBoard and wandb.

Each record is ``{"step": int, "time": seconds since the run started, "split": "train"|"dev"|..., ...}``.
On resume the file is cut back to the checkpoint's step, so a killed-and-resumed run has one
continuous curve with no duplicated steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from reft.files import write_text_atomic

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """Append-only metrics sink for the main process (other ranks pass `enabled=False`)."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.enabled = enabled
        self._tensorboard = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` extra

            self._tensorboard = SummaryWriter(str(Path(out_dir) / "tensorboard"))
        if wandb_project:
            import wandb  # needs the `wandb` extra

            self._wandb = wandb.init(project=wandb_project, config=run_config, dir=str(out_dir))

    def log(
        self, step: int, metrics: dict[str, Any], split: str = "train", elapsed: float = 0.0
    ) -> None:
        """Append one record and flush it to disk."""
        if not self.enabled:
            return
        record = {"step": step, "time": round(elapsed, 3), "split": split}
        record.update({key: _plain(value) for key, value in metrics.items()})
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tensorboard is not None:
            for key, value in numbers.items():
                self._tensorboard.add_scalar(f"{split}/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"{split}/{key}": value for key, value in numbers.items()}, step=step)

    def truncate_after(self, step: int) -> None:
        """Drop records logged after `step` (used when resuming from that step's checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step
        ]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics file (optionally only one split)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r.get("split") == split]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value
