"""Errors that name where bad input came from (file, line, field)."""

from __future__ import annotations


class InstructkitError(Exception):
    """Base class: a user-facing error with a clear message (the CLI prints it without a traceback)."""


class ConfigError(InstructkitError):
    """A configuration problem; the message names the dotted key."""


class DataError(InstructkitError):
    """A bad record in an input file.

    ``reason`` is a short stable category (e.g. ``invalid_json``, ``missing_field``) used to count
    skipped records by reason with ``--on-error skip``.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, reason: str = "invalid"):
        self.path, self.line, self.field, self.reason = path, line, field, reason
        self.detail = message
        where = ":".join(str(x) for x in (path, line) if x is not None)
        loc = f"{where}: " if where else ""
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{loc}{fld}{message}")

    def at(self, path: str | None = None, line: int | None = None) -> "DataError":
        """The same error located in a file (readers add the location a validator does not know)."""
        return DataError(self.detail, path=path or self.path, line=line or self.line,
                         field=self.field, reason=self.reason)
