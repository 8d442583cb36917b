"""Line numbers for files whose records are not lines: nested envelopes (OTLP batches,
CloudTrail digests) are materialised document by document, in file order and in batches that
keep DuckDB's JSON functions within memory, then unnested level by level; concatenated pretty
documents are renumbered to the line each document starts on. A mixin of the Ingestor, kept
apart so the per-file load reads as the load.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tokentrail.sources.discover import SourceFile
from tokentrail.sources.readers import NESTED_SRC, Reader, drop_csv_rejects, nested_plan

if TYPE_CHECKING:
    from tokentrail.case.store import Case

DOCS = "tt_docs"  # a nested file's documents, in file order (rowid = position)
# JSON text per statement while a nested file's levels are expanded: DuckDB's JSON functions
# hold several times the text of a vector in memory (measured: OOM at 768 MB with 53 MB of
# OTLP documents in one statement, fine with 32 MB batches).
NESTED_BATCH_BYTES = 16 << 20


class DocumentLoad:
    """The Ingestor's nested- and concatenated-document steps."""

    case: Case
    _nested_tables: list[str]

    if TYPE_CHECKING:  # provided by the Ingestor
        def _csv_rejects(self, reader: Reader) -> list[tuple[int, str, str | None]]:
            ...

    if TYPE_CHECKING:  # provided by the Ingestor
        def _line_adjust(self, reader: Reader) -> None:
            ...

    def _documents(self, reader: Reader) -> tuple[Reader, list[tuple[int, str, str | None]]]:
        """Materialise a nested file's documents in file order (a line each, or each JSON
        value of the file) and then its outer levels (readers.nested_plan); return the
        reader of its records and the lines the CSV reader refused."""
        con = self.case.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE {DOCS} AS {reader.documents_sql()}")
        csv_rejects = self._csv_rejects(reader) if reader.reads_lines else []
        first = con.execute(f"SELECT min(rowid), max(rowid), count(*) FROM {DOCS}").fetchone()
        assert first is not None
        base = int(first[0] or 0)
        if first[2] and int(first[1]) - base + 1 != int(first[2]):
            raise AssertionError("document rowids are not contiguous; lines would be wrong")
        pos = f"(d.rowid - {base} + 1)"
        if csv_rejects:
            self._line_adjust(reader)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {DOCS}_lined AS "
                        f"SELECT {pos} + coalesce(a.k, 0) AS doc_line, d.raw FROM {DOCS} d "
                        f"ASOF LEFT JOIN tt_line_adjust a ON {pos} > a.before ORDER BY doc_line")
        steps, final = nested_plan(reader.nested_paths)
        src_table, src_cols = DOCS, f"{pos} AS doc_line, d.raw"
        if csv_rejects:
            src_table, src_cols = f"{DOCS}_lined", "d.doc_line, d.raw"
        for step in steps:
            for i, (lo, hi) in enumerate(self._batches(src_table, step.text)):
                src = (f"(SELECT {src_cols} FROM {src_table} d "
                       f"WHERE d.rowid BETWEEN {lo} AND {hi})")
                sql = step.sql.replace(NESTED_SRC, src)
                con.execute(f"CREATE OR REPLACE TEMP TABLE {step.table} AS {sql}" if i == 0
                            else f"INSERT INTO {step.table} {sql}")
            src_table, src_cols = step.table, "d.*"
        self._nested_tables = [DOCS, f"{DOCS}_lined"] + [step.table for step in steps]
        return replace(reader, nested_sql=final), csv_rejects

    def _batches(self, table: str, text: str) -> list[tuple[int, int]]:
        """Rowid ranges of `table`, in order, each holding about NESTED_BATCH_BYTES of `text`
        (a row larger than that alone); one empty range for an empty table."""
        rows = self.case.con.execute(
            f"SELECT min(rowid), max(rowid) FROM (SELECT rowid, sum(coalesce(strlen({text}), 0)) "
            f"OVER (ORDER BY rowid ROWS UNBOUNDED PRECEDING) AS c FROM {table}) "
            f"GROUP BY (c - 1) // {NESTED_BATCH_BYTES} ORDER BY 1").fetchall()
        return [(int(lo), int(hi)) for lo, hi in rows] or [(1, 0)]

    def _document_start_lines(self, src: SourceFile, sid: str) -> None:
        """Concatenated pretty documents were numbered by position; renumber each event and
        reject to the file line its document starts on, when that is plain: `jq` and
        json.dumps(indent=...) start every document at column 0 and indent everything inside.
        If the count of such lines is not the count of documents, positions stay."""
        con = self.case.con
        lines = Reader(src.path, "lines", "gzip" if src.gzip else "none",
                       rejects_table="tt_doc_csv_rejects", parallel=False,
                       crlf=src.has_cr is not False)
        con.execute("CREATE OR REPLACE TEMP TABLE tt_doc_text AS "
                    f"SELECT regexp_matches(raw, '^[{{\\[]') AS opens FROM {lines.lines_sql()}")
        con.execute("CREATE OR REPLACE TEMP TABLE tt_doc_lines AS "
                    "SELECT row_number() OVER (ORDER BY rowid) AS ord, line FROM ("
                    "SELECT rowid, rowid - (SELECT min(rowid) FROM tt_doc_text) + 1 AS line "
                    "FROM tt_doc_text WHERE opens)")
        row = con.execute(
            "SELECT (SELECT count(*) FROM tt_doc_lines), "
            "(SELECT count(*) FROM events WHERE source_id = ?) "
            "+ (SELECT count(*) FROM rejects WHERE source_id = ? AND line IS NOT NULL), "
            "(SELECT count(*) FROM temp.tt_doc_csv_rejects)", [sid, sid]).fetchone()
        if row is not None and row[0] == row[1] and row[2] == 0:
            for table in ("events", "rejects"):
                con.execute(f"UPDATE {table} SET line = d.line FROM tt_doc_lines d "
                            f"WHERE {table}.source_id = ? AND {table}.line = d.ord", [sid])
        for table in ("tt_doc_text", "tt_doc_lines"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        drop_csv_rejects(con, "tt_doc_csv_rejects")
