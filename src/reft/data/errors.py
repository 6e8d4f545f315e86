"""The error raised for bad input data: it always names the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A dataset file that cannot be read as the format it claims to be."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = [part for part in (self.path, None if line is None else f"line {line}") if part]
        location = ":".join(where) if not field else ":".join(where) + f": field '{field}'"
        super().__init__(f"{location}: {message}" if location else message)


def read_json_file(path: str | Path) -> Any:
    """The JSON document in `path`; text that is not UTF-8 or not JSON is a DataError naming the
    file (with the line and column of the fault), not a bare decoding error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}: {error.msg}"
        raise DataError(f"not valid JSON ({where})", path) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text: {error}", path) from None
