"""A directory of CSV files for spreadsheets and other tools: findings, tokens, holders, events.

RFC 4180: comma separated, CRLF record ends, fields with a comma, quote, CR or LF quoted and
inner quotes doubled, so multi-line log values stay one field; UTF-8, no byte-order mark.
Every cell goes through `output.csv_cell`, which neutralises spreadsheet formulas. Each file is
written to a temporary file in the same directory and renamed into place, so a reader never
sees half a file and an interrupted report leaves the previous file as it was.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import duckdb

from tokentrail.case.schema import EVENT_COLUMN_NAMES
from tokentrail.rules.findings import Finding

from ..errors import InputError
from ..output import csv_cell
from ..results import FINDING_CSV_COLUMNS, finding_rows, holder_rows, token_rows

CSV_FILES = ("findings.csv", "tokens.csv", "holders.csv", "events.csv")
EVENT_BATCH = 10_000

# Every column of `events` in table order, with the source file's path after source_id (a
# source id alone means nothing to a reader); `extra` is its JSON text.
EVENT_CSV_COLUMNS: tuple[str, ...] = tuple(
    c for name in EVENT_COLUMN_NAMES for c in ((name, "file") if name == "source_id" else (name,))
)


def write_csv(stream: IO[str], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Header and rows as RFC 4180 CSV with formulas neutralised; returns the row count."""
    writer = csv.writer(stream, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([csv_cell(c) for c in columns])
    n = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        n += 1
    return n


def write_atomic(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write one CSV file through a temporary file in the same directory and a rename. The
    temporary file is created exclusively (mode "x"), so it gets the usual umask permissions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            n = write_csv(fh, columns, rows)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", file=str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def event_rows(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[Any, ...]]:
    """Every event in time order, streamed in batches (a case may hold millions)."""
    cols = ", ".join("s.path AS file" if c == "file" else f"e.{c}" for c in EVENT_CSV_COLUMNS)
    cur = con.cursor()
    cur.execute(f"SELECT {cols} FROM events e LEFT JOIN sources s USING (source_id) "
                "ORDER BY e.ts NULLS LAST, e.source_id, e.line")
    while True:
        batch = cur.fetchmany(EVENT_BATCH)
        if not batch:
            break
        yield from batch
    cur.close()


def write_csv_dir(con: duckdb.DuckDBPyConnection, findings: list[Finding],
                  directory: str | os.PathLike[str]) -> dict[str, int]:
    """Write findings.csv, tokens.csv, holders.csv and events.csv into `directory` (created
    if missing). Returns the number of data rows written per file name."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputError("not a directory", file=str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the directory: {exc.strerror}", file=str(out)) from None
    counts: dict[str, int] = {}
    counts["findings.csv"] = write_atomic(out / "findings.csv", FINDING_CSV_COLUMNS,
                                          finding_rows(findings))
    columns, rows = token_rows(con)
    counts["tokens.csv"] = write_atomic(out / "tokens.csv", columns, rows)
    columns, rows = holder_rows(con)
    counts["holders.csv"] = write_atomic(out / "holders.csv", columns, rows)
    counts["events.csv"] = write_atomic(out / "events.csv", EVENT_CSV_COLUMNS, event_rows(con))
    return counts
