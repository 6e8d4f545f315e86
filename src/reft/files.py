"""Output files: atomic writes and the checks that run before any work writes them.

An atomic write puts the text in a temporary file beside the target, then renames it over the target,
so a reader (or a resumed run) never sees a half-written file; on any failure the temporary file is
removed and the target is left as it was. The checks refuse an output path that cannot be written as
asked (a folder where a file is wanted, a file where a folder is wanted, a command's own input)
before a model is loaded, rather than after the work is done.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class OutputPathError(ValueError):
    """An output path that cannot be written as asked (the CLI reports it with exit code 2)."""


class RunComplete(Exception):
    """`resume=true` on a run that already reached its end: nothing to do (the CLI exits 0)."""


class DiskFullError(OSError):
    """A write failed for want of space; the message names the path, partial files are removed."""


def check_output_dir(path: str | Path, what: str = "out_dir") -> Path:
    """`path` as an output directory: refused if it (or a parent) exists as something else."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise OutputPathError(f"{what} {path}: {part} exists and is not a directory")
    return path


def check_output_file(path: str | Path, what: str = "output", inputs: Iterable[Path] = ()) -> Path:
    """`path` as an output file: refused if it is a folder, under a non-folder, or one of `inputs`."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory: give a file path")
    check_output_dir(path.parent, f"{what} {path}: parent")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise OutputPathError(
                f"{what} {path} is the input file {source}: writing it would destroy the input; "
                "choose another output path"
            )
    return path


@contextmanager
def removed_on_failure(partial: Path, target: Path, hint: str = "") -> Iterator[None]:
    """Remove `partial` (a file or folder being written for `target`) if the block fails, and name
    a full disk as such (with `hint`: what is left, what to do): torch and safetensors report ENOSPC
    as obscure write errors."""
    try:
        yield
    except BaseException as error:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        if _out_of_space(error, target):
            raise DiskFullError(
                errno.ENOSPC, f"no space left on device ({target}); partial files removed{hint}"
            ) from error
        raise


def _out_of_space(error: BaseException, target: Path) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    # torch's zip writer says "unexpected pos" / "file write failed"; check the disk to be sure.
    existing = next((part for part in (target, *target.parents) if part.exists()), Path("."))
    return shutil.disk_usage(existing).free < 1 << 20


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with removed_on_failure(tmp, path):
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def write_json_atomic(path: str | Path, document: Any, indent: int | None = 2) -> Path:
    """Write `document` as JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(document, indent=indent))


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON line per row to `path` atomically."""
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
