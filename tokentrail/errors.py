"""Errors a user can cause, and the exit codes they map to.

Everything a user can get wrong (a missing file, a bad mapping, a locked case) raises a
`TokentrailError` subclass carrying where it happened. The CLI turns these into one clean line
on stderr and the exit code below; anything else is a bug and may show a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, `tokentrail --help`)."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    INPUT = 3
    INTERRUPTED = 130


MEMORY_HINT = ("out of memory under the case's memory limit; set TOKENTRAIL_MEMORY_LIMIT "
               "(e.g. 8GB) to give DuckDB more")
"""Said with every out-of-memory error, wherever DuckDB raised it (ingest, lineage, a rule)."""


def first_line(exc: BaseException) -> str:
    """The line of an exception a user is shown (DuckDB's messages go on with hints and
    context); its type's name when it says nothing. Not redacted."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """DuckDB's OutOfMemoryException, or an error whose first line says so (DuckDB wraps some)."""
    import duckdb

    return (isinstance(exc, duckdb.OutOfMemoryException)
            or "out of memory" in first_line(exc).lower())


class TokentrailError(Exception):
    """Base of every error a user can cause. Messages must never hold a raw token."""

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
            where += ": "
        if self.key:
            where += f"{self.key}: "
        return f"{where}{self.message}"


class UsageError(TokentrailError):
    """The command was called wrongly (conflicting options, unknown format name)."""

    exit_code = ExitCode.USAGE


class InputError(TokentrailError):
    """An input could not be read, or held nothing usable."""


class MappingError(TokentrailError):
    """A format mapping file is invalid (unknown key, bad SQL, wrong type)."""


class CaseError(TokentrailError):
    """The case database cannot be opened or is not a tokentrail case."""


class QueryError(TokentrailError):
    """A responder's SQL failed."""

    exit_code = ExitCode.USAGE
