"""Where a model setting points, checked before any work (torch-free).

A model setting is a reft checkpoint or any local Hugging Face directory, a `.gguf` file, a hub
repository id (`NAME` or `ORG/NAME`, optionally `ORG/NAME/FILE.gguf`), or `preset:NAME` for a
trainer (its name is checked by the config, reft.models.presets.check_preset). The commands call
`check_model_settings` right after building their config, so a typo or an uncached hub model fails
with one line and exit code 2 before data is loaded or any directory is written. A model that passes
but still cannot be loaded (a directory without weights, a network failure) is reported by
reft.models.load the same way.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from reft.config import ConfigError
from reft.models.presets import PRESET_PREFIX

GGUF_SUFFIX = ".gguf"
"""File extension of GGUF checkpoints; a model source ending in it names a GGUF file."""

MODEL_SETTINGS = ("model", "ref_model", "sample_model", "rerank")
"""Config fields that name a model, in every stage config that has them (null: unused)."""

MODEL_CONFIG_FILE = "config.json"
"""The file every Hugging Face model directory (and cached hub model) but a GGUF file has."""


def split_gguf_source(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(directory or hub repository, GGUF file name or None), as `from_pretrained` takes them.

    `DIR/model.gguf` -> (`DIR`, `model.gguf`); `ORG/REPO/model.gguf` -> (`ORG/REPO`, `model.gguf`); a
    source not ending in `.gguf`, or one given together with `gguf_file`, is returned unchanged.
    """
    if gguf_file is not None or not name_or_path.endswith(GGUF_SUFFIX):
        return name_or_path, gguf_file
    path = PurePosixPath(name_or_path)
    return str(path.parent), path.name


def check_model_settings(config: Any) -> None:
    """Raise ConfigError for the first model setting of `config` (MODEL_SETTINGS) that points
    nowhere. `model` is not checked when resuming: the run's own checkpoint loads instead."""
    for setting in MODEL_SETTINGS:
        source = getattr(config, setting, None)
        if source and not (setting == "model" and getattr(config, "resume", False)):
            check_model_source(setting, source)


def check_model_source(setting: str, source: str) -> None:
    """Raise ConfigError if `source` is neither a local model, nor a hub repository id that can be
    fetched: one that looks like a path (`./x`, `/x`, `~/x`, `a/b/c`) must exist, a directory must
    hold a config.json, and with the hub offline (HF_HUB_OFFLINE=1) a repository id must be in the
    local cache."""
    if source.startswith(PRESET_PREFIX) or Path(source).is_file():
        return
    if Path(source).is_dir():
        if not (Path(source) / MODEL_CONFIG_FILE).is_file():
            raise ConfigError(
                f"{setting}={source}: a directory without {MODEL_CONFIG_FILE}, so not a model "
                "(a reft run keeps its models in best/, final/ and checkpoints/step_N/)"
            )
        return
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repository, gguf_file = split_gguf_source(source)
    try:
        validate_repo_id(repository)
    except HFValidationError:  # not a repository id, so a local path
        raise ConfigError(f"{setting}={source}: path does not exist") from None
    if not constants.HF_HUB_OFFLINE:
        return  # fetched at load time; a failure then is reported by reft.models.load
    cached = try_to_load_from_cache(repository, gguf_file or MODEL_CONFIG_FILE)
    if not isinstance(cached, str):
        raise ConfigError(
            f"{setting}={source}: not found locally and the hub is offline (HF_HUB_OFFLINE=1): "
            "no such local path, and no cached copy of that Hugging Face repository "
            "(download it with the hub online, or give a local path)"
        )
