"""Serialise rows safely: JSON, JSON Lines, CSV, and text for a terminal.

Log content is attacker-controlled. CSV cells that a spreadsheet would run as a formula are
neutralised, and text meant for a terminal loses control and bidi characters, here in the
library so every command and export gets the same protection.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

import orjson

ROW_FORMATS = ("table", "csv", "json", "jsonl")

# ANSI/VT escape sequences (CSI, OSC, single-char escapes), then remaining C0/C1 controls and
# the Unicode bidi and invisible formatting characters used in "Trojan Source" style tricks.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def sanitize_terminal(text: str) -> str:
    """Text safe to print to a terminal: no escapes, no controls, newlines shown as ⏎."""
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\n", "⏎").replace("\t", " ")
    return _CONTROL.sub("", text)


def csv_cell(value: Any) -> str:
    """One CSV cell: formulas neutralised with a leading apostrophe (OWASP CSV injection)."""
    text = _plain(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (list, tuple, dict)):
        return orjson.dumps(jsonable(value)).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Exact types JSON takes as they are: checked first, because a scan document of 40 k findings
# is millions of such values (the isinstance chain below took most of its serialisation).
_AS_IS = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _AS_IS else jsonable(v)
                for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _AS_IS else jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def _json_default(value: Any) -> Any:
    converted = jsonable(value)
    if converted is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return converted


_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def json_bytes(value: Any, *, indent: bool = False) -> bytes:
    """`value` as JSON, with datetimes, decimals and bytes written the way `jsonable` writes
    them. orjson walks plain values itself and calls back only for the others, so a large
    document (a scan's 40 k findings) needs no Python pass converting every value first."""
    options = _JSON_OPTIONS | (orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE if indent else 0)
    return orjson.dumps(value, default=_json_default, option=options)


def records(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [{c: jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def write_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str,
               stream: IO[str]) -> None:
    """Write rows as csv, json (one array) or jsonl. Tables are the CLI's job."""
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow([csv_cell(c) for c in columns])
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
    elif fmt == "json":
        stream.write(orjson.dumps(records(columns, rows), option=orjson.OPT_INDENT_2).decode())
        stream.write("\n")
    elif fmt == "jsonl":
        for rec in records(columns, rows):
            stream.write(orjson.dumps(rec).decode())
            stream.write("\n")
    else:
        raise ValueError(f"unknown row format {fmt}")


def rows_to_text(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> str:
    buf = io.StringIO()
    write_rows(columns, rows, fmt, buf)
    return buf.getvalue()


def cell_text(value: Any) -> str:
    """A value as terminal-safe text for table cells."""
    return sanitize_terminal(_plain(value))
