"""Atomic file writes: the text goes to a temporary file beside the target, then is renamed over it,
so a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json_atomic(path: str | Path, document: Any, indent: int | None = 2) -> Path:
    """Write `document` as JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(document, indent=indent))


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON line per row to `path` atomically."""
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
