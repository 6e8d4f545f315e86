"""The error raised for bad input data: it always names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path


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
