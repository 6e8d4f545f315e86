"""Checkpoints that prove their integrity: a manifest of every file's size and SHA-256.

An atomic rename guarantees that a checkpoint was complete when it was written, not that its bytes
are still the same: a copy cut short, a full disk on another tool's side or a failing drive leaves a
file whose load fails with a safetensors or zip traceback naming no file, or, worse, loads wrong
weights without a word. `manifest.json` is written last, once every other file of the checkpoint is
in place; `manifest_problems` rereads the files and names each that differs. A directory without a
manifest (written by an older reft, or by another tool) is not checked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from reft.config import ConfigError
from reft.files import write_json_atomic
from reft.model_card import CARD_FILE

MANIFEST_FILE = "manifest.json"
_CHUNK = 1 << 20


class CorruptCheckpointError(ConfigError):
    """A checkpoint's files differ from its manifest (the CLI exits with code 2)."""


def file_digest(path: Path) -> dict[str, Any]:
    """{"size": bytes, "sha256": hex digest} of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def write_manifest(directory: str | Path) -> Path:
    """Record every file under `directory` (sub-folders included) in its manifest.json; call it
    after the last of them is written. The model card is left out: `reft eval` adds to it later."""
    directory = Path(directory)
    files = {
        str(path.relative_to(directory)): file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in (MANIFEST_FILE, CARD_FILE)
    }
    return write_json_atomic(directory / MANIFEST_FILE, {"files": files})


def manifest_problems(directory: str | Path) -> list[str]:
    """One line per file of `directory` that is missing or differs from its manifest ([] when all
    match, or when there is no manifest to check against)."""
    directory = Path(directory)
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        return []
    try:
        recorded = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return [f"{manifest}: not a readable manifest"]
    problems = []
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, {expected['size']} written")
        elif file_digest(path)["sha256"] != expected["sha256"]:
            problems.append(f"{path}: its SHA-256 differs from the one written (bytes changed)")
    return problems


def verify_checkpoint(directory: str | Path, what: str = "checkpoint") -> None:
    """Raise CorruptCheckpointError naming every file of `directory` that differs from its manifest."""
    problems = manifest_problems(directory)
    if problems:
        raise CorruptCheckpointError(f"{what} {directory} is corrupt: {'; '.join(problems)}")
