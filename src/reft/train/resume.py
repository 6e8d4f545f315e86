"""Which settings a resumed run may change: those that do not change the computation.

A checkpoint records the config it was trained with (reft_meta.json). `resume=true` with settings
that would have trained other weights (another learning rate, batch size, data, model...) would
silently produce a run that no single config describes, so it is refused, naming the keys. Allowed:

- how a run reports and keeps its work: `RECORD_ONLY` (log and save cadence, trackers, kept
  checkpoints, the wall-clock safety net, the run directory's path);
- where it stops: `stop_epochs` always (the schedule spans `epochs` / `max_steps`, not the stop);
  `epochs` and `max_steps` only under a constant schedule without warm-up, where the learning rate
  of every step does not depend on the run's length.
"""

from __future__ import annotations

import os
from typing import Any

from reft.config import ConfigError
from reft.train.config import Schedule

RECORD_ONLY = frozenset(
    {
        "log_every",
        "save_every",
        "keep_last",
        "tensorboard",
        "wandb_project",
        "max_seconds",
        "resume",
        "out_dir",
    }
)
"""Settings that decide what is logged or kept (and where: a run directory may be moved), never a
weight."""
STOP_ONLY = frozenset({"stop_epochs"})
"""Settings that decide where the loop stops, not what any step computes."""
LENGTH = frozenset({"epochs", "max_steps"})
"""Settings the learning-rate schedule is stretched over (unless it is constant)."""


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, current value)} for every key both configs have and that differs; a
    section's settings are compared one by one, under their dotted keys (`sampling.temperature`).

    A key only one side has (a config field added or removed by another reft version) is skipped;
    a path given relative once and absolute the next time is the same setting.
    """
    saved, current = _dotted(saved), _dotted(current)
    return {
        key: (saved[key], current[key])
        for key in saved.keys() & current.keys()
        if not _same(saved[key], current[key])
    }


def _same(saved: Any, current: Any) -> bool:
    """Equal values, or two spellings of one existing path (`runs/x` and `/home/u/runs/x`)."""
    if saved == current:
        return True
    if not (isinstance(saved, str) and isinstance(current, str)):
        return False
    try:
        return os.path.samefile(saved, current)
    except (OSError, ValueError):  # not both existing paths
        return False


def _dotted(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with each section's settings as `section.name` keys."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{name}": item for name, item in value.items()}
        else:
            flat[key] = value
    return flat


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """ "key old -> new" for each change, sorted by key."""
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in sorted(changes.items()))


def check_resume(saved: dict[str, Any], current: dict[str, Any], checkpoint: str) -> dict:
    """The allowed changes between a checkpoint's config and the resumed run's; ConfigError naming
    every change that would alter the computation."""
    changes = resume_changes(saved, current)
    changes.pop("resume", None)  # false in the first run, true in every resume
    allowed = RECORD_ONLY | STOP_ONLY
    # constant_with_warmup without warm-up is the constant schedule (Schedule has no other).
    constant = Schedule.constant_with_warmup.value
    if current.get("schedule") == constant and not current.get("warmup_ratio"):
        allowed |= LENGTH
    refused = {key: change for key, change in changes.items() if key not in allowed}
    if refused:
        raise ConfigError(
            f"resume from {checkpoint}: these settings differ from the checkpoint's and would change "
            f"the computation: {describe_changes(refused)}. Resume with the checkpoint's values (its reft_meta.json), "
            f"or start a new run in another out_dir. A resume may change only "
            f"{', '.join(sorted(allowed - {'resume'}))}"
            + ("" if allowed >= LENGTH else " (and epochs / max_steps under a constant schedule)")
        )
    return changes
