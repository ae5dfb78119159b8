"""Errors for malformed data records, and the sink that decides whether to raise or collect them.

A dataset is only as good as its worst record: a wrong ``answerKey`` silently turns a question into
noise for both training and evaluation. So every loader reports each bad record with the file, the
line and the field at fault. Training loads in *strict* mode (the first bad record stops the run,
with a message that says where to look); ``opcod data inspect`` loads in *lenient* mode and lists
every bad record next to the good items, so a user can fix a file in one pass.
"""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """One malformed record: ``path:line: field 'name': message``."""

    def __init__(self, path: str | Path | None, line: int | None, field: str | None, message: str):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path or "<data>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        what = f"field '{self.field}': {self.message}" if self.field else self.message
        return f"{where}: {what}"

    def __str__(self) -> str:  # ValueError would print the args tuple otherwise in some paths
        return self._render()

    def to_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "field": self.field, "message": self.message}


class RecordError(Exception):
    """Raised by record parsers, which do not know the file or line; loaders attach both."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class ErrorSink:
    """Collects bad records; in strict mode the first one is raised instead."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.errors: list[DataFormatError] = []

    def add(self, path: str | Path | None, line: int | None, field: str | None, message: str) -> None:
        err = DataFormatError(path, line, field, message)
        if self.strict:
            raise err
        self.errors.append(err)
