"""Ingest log files into a case: one transaction and a few SQL statements per file.

Per file: hash (idempotency), sniff container and format, count records, insert good rows
into `events` and bad ones into `rejects`, record the source. Python never loops over the
records of a well-formed file; it only salvages documents DuckDB cannot parse at all.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

import duckdb

from tokentrail.case.direct_load import DirectLoad
from tokentrail.case.documents_load import DocumentLoad
from tokentrail.case.store import Case
from tokentrail.errors import (
    MEMORY_HINT,
    InputError,
    TokentrailError,
    UsageError,
    first_line,
    is_out_of_memory,
)
from tokentrail.redact import EXCERPT_CHARS, excerpt, redact_text
from tokentrail.sources.compiler import (
    STAGE,
    column_probe_sql,
    compile_pipeline,
    insert_events_sql,
    insert_rejects_sql,
    stage_sql,
)
from tokentrail.sources.discover import SourceFile, expand
from tokentrail.sources.documents import salvage_documents
from tokentrail.sources.mapping import Mapping, load_mapping
from tokentrail.sources.readers import Reader, drop_csv_rejects, lit
from tokentrail.sources.registry import builtin_mappings, get_mapping
from tokentrail.sources.salvage import (
    gzip_bomb,
    plain_despite_magic,
    read_damaged,
    salvage_array_file,
    salvage_documents_file,
    salvage_gzip_lines,
)
from tokentrail.sources.sniff import (
    Sniffed,
    all_nested_paths,
    all_wrapper_keys,
    choose_format,
    read_prefix,
    sniff_container,
)

CSV_REJECT_REASONS = {
    "INVALID ENCODING": "invalid UTF-8",
    "INVALID UNICODE": "invalid UTF-8",
    "LINE SIZE OVER MAXIMUM": "line longer than 16 MiB",
    "TOO MANY COLUMNS": "NUL byte in line",
}

Progress = Callable[[str, int, int], None]


@dataclass
class FileResult:
    name: str
    source_id: str
    format: str | None = None
    container: str | None = None
    events: int = 0
    rejects: int = 0
    duplicates: int = 0  # records repeated under the mapping's dedupe key, kept once
    status: str = "ingested"  # ingested | skipped | empty | failed
    message: str = ""


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)

    @property
    def rejects(self) -> int:
        return sum(f.rejects for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def problems(self) -> list[FileResult]:
        """Files that could not be read or held no usable record (exit 3)."""
        return [f for f in self.files if f.status in ("failed", "empty")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": [f.__dict__ for f in self.files],
            "events": self.events, "rejects": self.rejects, "duplicates": self.duplicates,
        }


def validate_mapping(case: Case, mapping: Mapping) -> None:
    """Bind every expression once, so a typo names its key instead of failing mid-ingest."""
    from tokentrail.errors import MappingError

    # [let] values first (over the record alone), so a broken one is named, not the first
    # column that happens to use it.
    names = list(mapping.let)
    probes = [(f"let.{k}", replace(mapping, let={n: mapping.let[n] for n in names[:i]}), v)
              for i, (k, v) in enumerate(mapping.let.items())]
    probes += [(f"columns.{k}", mapping, v) for k, v in mapping.columns.items()]
    probes += [(f"extra.{k}", mapping, v) for k, v in mapping.extra.items()]
    probes += [(f"dedupe[{i}]", mapping, v) for i, v in enumerate(mapping.dedupe)]
    for where, against, expr in probes:
        try:
            case.con.execute(column_probe_sql(against, where, expr)).fetchall()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise MappingError(f"SQL does not bind: {first}", file=mapping.source,
                               key=where) from None


def _select_mapping(src: SourceFile, sniffed: Sniffed, fixed: Mapping | None,
                    candidates: Sequence[Mapping]) -> Mapping:
    if fixed is not None:
        return fixed
    chosen = choose_format(sniffed.records, list(candidates))
    if chosen is None:
        if not sniffed.records:
            raise InputError("no JSON records found at the start of the file (tokentrail reads "
                             "JSON Lines, JSON arrays, {\"Records\": [...]} files and "
                             "pretty-printed JSON objects)",
                             file=src.name)
        raise InputError("format not recognised from its first records; name it with "
                         "--format NAME or describe it with --mapping FILE "
                         "(see `tokentrail formats`)", file=src.name)
    return chosen


SMALL_FILE_BYTES = 64 << 20
SMALL_FILE_DISABLED_OPTIMIZERS = ("common_subexpressions",)
"""DuckDB optimizers off while a file smaller than SMALL_FILE_BYTES loads: planning, not
reading, is most of its cost (Ingestor._pipeline_optimizers)."""


class Ingestor(DocumentLoad, DirectLoad):
    """Runs an ingest over many files into one case."""

    def __init__(self, case: Case, *, format_name: str | None = None,
                 mapping_file: str | None = None, force: bool = False, strict: bool = False,
                 progress: Progress | None = None) -> None:
        if format_name and mapping_file:
            raise UsageError("--format and --mapping both name the format; give one")
        self.case = case
        self.force = force
        self.strict = strict
        self.progress = progress
        self.fixed: Mapping | None = None
        if format_name:
            self.fixed = get_mapping(format_name)
        elif mapping_file:
            self.fixed = load_mapping(mapping_file)
            validate_mapping(case, self.fixed)
        self.candidates: tuple[Mapping, ...] = builtin_mappings()
        self._nested_tables: list[str] = []

    def run(self, paths: Iterable[str], *, stdin: BinaryIO | None = None) -> IngestReport:
        workdir = tempfile.mkdtemp(prefix="tokentrail-")
        try:
            files, unreadable = expand(paths, stdin=stdin, workdir=workdir)
            report = IngestReport()
            for bad in unreadable:
                report.files.append(FileResult(name=bad.name, source_id="", status="failed",
                                               message=bad.reason))
            total = sum(f.size for f in files)
            done = 0
            for src in files:
                if self.progress:
                    self.progress(src.name, done, total)
                report.files.append(self.ingest_file(src, workdir))
                done += src.size
            if self.progress:
                self.progress("", total, total)
            return report
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- one file --------------------------------------------------------------------------
    def ingest_file(self, src: SourceFile, workdir: str) -> FileResult:
        result = FileResult(name=src.name, source_id=src.source_id)
        con = self.case.con
        row = con.execute("SELECT events FROM sources WHERE source_id = ?",
                          [src.source_id]).fetchone()
        if row is not None and row[0] and not self.force:
            result.status = "skipped"
            result.message = "already ingested (same SHA-256); --force re-ingests"
            result.events = int(row[0])
            return result
        if src.size == 0:
            result.status, result.message = "empty", "file is empty"
            return result
        src = plain_despite_magic(src)
        bomb = gzip_bomb(src)
        if bomb:
            result.status, result.message = "failed", bomb
            return result
        try:
            prefix = read_prefix(src)
            known = list(self.candidates) + ([self.fixed] if self.fixed else [])
            sniffed = sniff_container(prefix, all_wrapper_keys(known), all_nested_paths(known))
            mapping = _select_mapping(src, sniffed, self.fixed, self.candidates)
            if sniffed.container == "nested" and not mapping.nested:
                raise InputError(f"nested JSON documents, which format {mapping.name!r} does not "
                                 "read (its mapping has no [read] nested)", file=src.name)
        except TokentrailError as exc:
            result.status, result.message = "failed", exc.message
            return result
        result.format, result.container = mapping.name, sniffed.container
        self._pipeline_optimizers(src)
        try:
            reader, salvage_reason = self._reader(src, sniffed, workdir, mapping)
            try:
                with self.case.transaction():
                    self._load(src, reader, salvage_reason, mapping, result)
            except duckdb.Error:
                if not (src.gzip and reader.reads_lines):
                    raise
                # A damaged gzip: keep every line that decompressed before the damage.
                self.case.restore_settings("memory_limit")
                reader, salvage_reason = salvage_gzip_lines(src, workdir, reader)
                with self.case.transaction():
                    self._load(src, reader, salvage_reason, mapping, result)
        except duckdb.Error as exc:
            result.status = "failed"
            first = redact_text(first_line(exc))
            result.message = (f"{first} ({MEMORY_HINT})" if is_out_of_memory(exc)
                              else "cannot read: " + first)
            return result
        finally:
            self.case.restore_settings()  # memory cap, optimizers: outside the transaction
        if result.events == 0:
            result.status = "empty"
            result.message = result.message or (
                f"no usable record ({result.rejects} rejected)" if result.rejects
                else "no records")
        return result

    def _pipeline_optimizers(self, src: SourceFile) -> None:
        """For a small file, turn off DuckDB's common-subexpression optimizer while it loads
        (restored after the file). Planning the pipeline is a fixed cost per file (0.17 s in
        DuckDB's profile of a 71-line Envoy file, of which that optimizer 0.05 s, executing
        0.01 s): 50 such files, stage statements 10.1 s -> 7.2-8.6 s. For large files the
        optimizer's effect on execution was within this machine's noise (1 M lines,
        alternating runs, either way by 10-20 %), so they keep it."""
        if src.size >= SMALL_FILE_BYTES:
            return
        before = [n for n in self.case.setting("disabled_optimizers").split(",") if n.strip()]
        names = dict.fromkeys(before + list(SMALL_FILE_DISABLED_OPTIMIZERS))
        self.case.override("disabled_optimizers", ",".join(names))

    def _reader(self, src: SourceFile, sniffed: Sniffed, workdir: str,
                mapping: Mapping) -> tuple[Reader, str | None]:
        """The reader for this file; a document DuckDB cannot parse is salvaged first.

        Probed outside the file's transaction: a failed read would abort it.
        """
        compression = "gzip" if src.gzip else "none"
        # A document is at most the file (or, gzipped, a generous multiple of it).
        expect = src.size * (20 if src.gzip else 1) + 4096
        reader = Reader(src.path, sniffed.container, compression, sniffed.wrapper_key,
                        document_bytes=expect, nested_paths=mapping.nested,
                        nested_mode=sniffed.nested_mode or "lines", crlf=src.has_cr is not False)
        if reader.reads_lines:
            return reader, None
        if reader.container == "nested":
            try:
                self.case.con.execute(
                    f"SELECT count(*) FROM ({reader.documents_sql()})").fetchall()
                return reader, None
            except duckdb.Error:
                # Whole documents: keep every complete one, as one line each.
                path, _, reason = salvage_documents_file(src, workdir)
                return replace(reader, path=path, compression="none", nested_mode="lines"), reason
        try:
            self.case.con.execute(f"SELECT count(*) FROM ({reader.sql()})").fetchall()
            return reader, None
        except duckdb.Error:
            if reader.container == "documents":
                # concatenated pretty documents: a broken one is one reject (issue 17)
                data, damage = read_damaged(src)
                path, _, _ = salvage_documents(data, workdir)
                return Reader(path, "lines", "none"), damage
            path, _, reason = salvage_array_file(src, workdir)
            return Reader(path, "lines", "none"), reason

    def _csv_rejects(self, reader: Reader) -> list[tuple[int, str, str | None]]:
        return [
            (int(r[0]), str(r[1]), r[2]) for r in self.case.con.execute(
                f"SELECT line, any_value(error_type), any_value(csv_line) "
                f"FROM temp.{reader.rejects_table} GROUP BY line ORDER BY line").fetchall()
        ]

    def _unread_lines(self, src: SourceFile, reader: Reader,
                      csv_rejects: list[tuple[int, str, str | None]]) -> int:
        """Lines of the file neither in the stage nor among the CSV rejects (0 when unknown)."""
        if src.lines is None or reader.path != src.path:
            return 0
        row = self.case.con.execute(f"SELECT count(*) FROM {STAGE}").fetchone()
        got = (int(row[0]) if row else 0) + len(csv_rejects)
        return max(src.lines - got, 0)

    def _line_adjust(self, reader: Reader) -> None:
        """Lines the CSV reader refused are missing from what it returned: a table that shifts
        later rows back to their real line numbers."""
        self.case.con.execute(
            "CREATE OR REPLACE TEMP TABLE tt_line_adjust AS "
            "SELECT before, max(k) AS k FROM (SELECT line - row_number() OVER "
            "(ORDER BY line) AS before, row_number() OVER (ORDER BY line) AS k "
            f"FROM (SELECT DISTINCT line FROM temp.{reader.rejects_table})) "
            "GROUP BY before")

    def _load(self, src: SourceFile, reader: Reader, salvage_reason: str | None,
              mapping: Mapping, result: FileResult) -> None:
        con = self.case.con
        sid = src.source_id
        for table in ("events", "rejects", "sources"):
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [sid])
        if reader.reads_lines:
            drop_csv_rejects(con, reader.rejects_table)
        csv_rejects: list[tuple[int, str, str | None]] = []
        nested = reader.container == "nested"
        if nested:
            # Documents first (their lines are file lines); the stage then holds records.
            reader, csv_rejects = self._documents(reader)
        # A file whose stage would not fit in memory goes straight into `events` instead
        # (measured, 1 M Envoy lines / 1 GiB: the stage 10.2-10.6 s, direct 11.0 s at half
        # the memory; 3 M lines / 3.2 GiB: the stage 62-67 s, direct 36.2 s).
        if (reader.container == "lines" and not mapping.dedupe
                and src.size > self._stage_budget()
                and self._load_direct(src, reader, salvage_reason, mapping, result)):
            return
        # One parallel pass over the file into an order-keeping stage; the stage's rowid
        # numbers the rows (see compiler.stage_sql).
        con.execute(stage_sql(compile_pipeline(mapping, reader, source_id=sid)))
        if reader.container == "lines":
            csv_rejects = self._csv_rejects(reader)
            unread = self._unread_lines(src, reader, csv_rejects)
            if unread and reader.parallel:
                # The parallel CSV reader lost lines (seen: 2 of 10 M in CRLF mode, at
                # buffers that begin with a line's LF; see Reader.crlf): read the file again
                # on one thread.
                con.execute(f"DROP TABLE {STAGE}")
                drop_csv_rejects(con, reader.rejects_table)
                reader = replace(reader, parallel=False)
                con.execute(stage_sql(compile_pipeline(mapping, reader, source_id=sid)))
                csv_rejects = self._csv_rejects(reader)
                unread = self._unread_lines(src, reader, csv_rejects)
            if unread:
                salvage_reason = "; ".join(filter(None, [
                    salvage_reason, f"{unread} line(s) of the file were not returned by the "
                    "CSV reader; line numbers after them may be off"]))
        line_adjust = bool(csv_rejects) and not nested
        if line_adjust:
            self._line_adjust(reader)
        first = con.execute(f"SELECT min(rowid), max(rowid), count(*) FROM {STAGE}").fetchone()
        assert first is not None
        base = int(first[0] or 0)
        if first[2] and int(first[1]) - base + 1 != int(first[2]):
            raise AssertionError("stage rowids are not contiguous; line numbers would be wrong")
        dedupe = bool(mapping.dedupe)
        inserted = con.execute(insert_events_sql(base, line_adjust, dedupe)).fetchone()
        result.events = int(inserted[0]) if inserted else 0
        result.duplicates = 0
        if dedupe:
            good = con.execute(f"SELECT count(*) FROM {STAGE} WHERE _reason IS NULL").fetchone()
            result.duplicates = (int(good[0]) if good else 0) - result.events
        con.execute(insert_rejects_sql(sid, base, line_adjust, nested=nested))
        con.execute(f"DROP TABLE {STAGE}")
        if nested:
            for table in self._nested_tables:
                con.execute(f"DROP TABLE IF EXISTS {table}")
        self._finish(src, reader, salvage_reason, mapping, result, csv_rejects)

    def _finish(self, src: SourceFile, reader: Reader, salvage_reason: str | None,
                mapping: Mapping, result: FileResult,
                csv_rejects: list[tuple[int, str, str | None]]) -> None:
        """What every load ends with: the CSV reader's own rejects, the salvage note, the
        reject count, --strict, and the file's row in `sources`."""
        con = self.case.con
        sid = src.source_id
        for line, error_type, csv_line in csv_rejects:
            reason = CSV_REJECT_REASONS.get(error_type, f"unreadable line ({error_type.lower()})")
            con.execute("INSERT INTO rejects VALUES (?, ?, ?, ?)",
                        [sid, line, reason, excerpt(csv_line or "", EXCERPT_CHARS)])
        if salvage_reason:
            con.execute("INSERT INTO rejects VALUES (?, ?, ?, ?)",
                        [sid, None, salvage_reason, ""])
        if result.container == "documents":
            self._document_start_lines(src, sid)
        rej = con.execute("SELECT count(*) FROM rejects WHERE source_id = ?", [sid]).fetchone()
        result.rejects = int(rej[0]) if rej else 0
        if self.strict and result.rejects:
            first = con.execute("SELECT line, reason FROM rejects WHERE source_id = ? "
                                "ORDER BY line NULLS LAST LIMIT 1", [sid]).fetchone()
            assert first is not None
            raise InputError(f"rejected record ({first[1]}); --strict stops at the first reject",
                             file=src.name, line=first[0])
        con.execute(
            "INSERT INTO sources (source_id, path, sha256, bytes, format, container, "
            "ingested_at, events, rejects, duplicates, provides) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [sid, src.name, src.sha256, src.size, mapping.name, reader.container
             if not salvage_reason else f"{result.container} (salvaged)",
             datetime.now(UTC), result.events, result.rejects, result.duplicates,
             json.dumps(mapping.provides, sort_keys=True)],
        )
        drop_csv_rejects(con, reader.rejects_table)


def ingest(case: Case, paths: Iterable[str], **options: Any) -> IngestReport:
    """Convenience wrapper: `ingest(case, ["logs/"], format_name="envoy")`."""
    stdin = options.pop("stdin", None)
    return Ingestor(case, **options).run(paths, stdin=stdin)


__all__ = ["FileResult", "IngestReport", "Ingestor", "ingest", "validate_mapping", "lit"]
