"""The direct load (issue 12): a JSON Lines file too large for the order-keeping stage goes
straight into `events` in one parallel pass. DuckDB keeps insertion order, so the file's rows
get consecutive rowids in file order and one UPDATE numbers them; rejects and blank lines are
moved to `rejects` in the same transaction, under a memory cap of its own
(DIRECT_LOAD_MEMORY). A mixin of the Ingestor; the staged load stays the
default below half the memory limit, where it is a little faster (1 M Envoy lines: 10.2-10.6 s
staged, 11.0 s direct at half the peak memory; the UPDATE costs about 1 s at commit)."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from tokentrail.sources.compiler import (
    REJECT_MARK,
    compile_pipeline,
    direct_insert_sql,
    direct_lines_sql,
    move_rejects_sql,
)
from tokentrail.sources.discover import SourceFile
from tokentrail.sources.mapping import Mapping
from tokentrail.sources.readers import Reader, drop_csv_rejects

if TYPE_CHECKING:
    from tokentrail.case.ingest import FileResult
    from tokentrail.case.store import Case

DIRECT_LOAD_MEMORY = 1 << 30
"""DuckDB's memory_limit during a direct load, when the case's is higher, so that a file's
size does not set the peak. Given the whole limit the parallel, order-keeping insert takes it
for little gain (measured, 3.8 GiB limit, alternating runs: 10 M Envoy lines 136.8 s at 3038
MiB peak against 144.5 s at 1596 MiB under this cap; 3 M lines 44.0-52.3 s at 1355-1459 MiB
against 47.7-54.2 s at 1185-1208 MiB)."""


class DirectLoad:
    """The Ingestor's one-pass load of large JSON Lines files."""

    case: Case

    if TYPE_CHECKING:  # provided by the Ingestor
        def _csv_rejects(self, reader: Reader) -> list[tuple[int, str, str | None]]:
            ...

    if TYPE_CHECKING:  # provided by the Ingestor
        def _finish(self, src: SourceFile, reader: Reader, salvage_reason: str | None,
                    mapping: Mapping, result: FileResult,
                    csv_rejects: list[tuple[int, str, str | None]]) -> None:
            ...

    def _stage_budget(self) -> int:
        """File bytes above which the order-keeping stage (about the file's size in memory)
        is not used: half the case's memory limit. TOKENTRAIL_DIRECT_LOAD_BYTES overrides."""
        forced = os.environ.get("TOKENTRAIL_DIRECT_LOAD_BYTES")
        if forced and forced.isdigit():
            return int(forced)
        return _bytes_of(self.case.setting("memory_limit")) // 2

    def _cap_memory(self, cap: int) -> None:
        """Lower memory_limit to `cap` bytes, if it is higher, until the Ingestor restores
        the case's settings after the file's commit."""
        if _bytes_of(self.case.setting("memory_limit")) > cap:
            self.case.override("memory_limit", f"{int(cap)}B")

    def _load_direct(self, src: SourceFile, reader: Reader, salvage_reason: str | None,
                     mapping: Mapping, result: FileResult) -> bool:
        """JSON Lines straight into `events` in one pass (issue 12: no second materialisation
        of every row), rejects moved out afterwards. False, with nothing of the file left in
        the case, when the CSV reader refused or lost lines: the order-keeping stage then
        numbers around them."""
        con = self.case.con
        sid = src.source_id
        # Insertion order is what numbers the lines (direct_lines_sql): keep it, whatever
        # the session says.
        con.execute("SET preserve_insertion_order = true")
        self._cap_memory(DIRECT_LOAD_MEMORY)  # restored after the file's commit (Ingestor)
        try:
            con.execute(direct_insert_sql(compile_pipeline(mapping, reader, source_id=sid)))
        finally:
            con.execute("RESET preserve_insertion_order")
        csv_rejects = self._csv_rejects(reader)
        row = con.execute("SELECT count(*), count(*) FILTER (WHERE format = ?), min(rowid), "
                          "max(rowid) FROM events WHERE source_id = ?", [REJECT_MARK, sid]).fetchone()
        total, marked = (int(row[0]), int(row[1])) if row else (0, 0)
        if total and int(row[3]) - int(row[2]) + 1 != total:
            raise AssertionError("direct load rowids are not contiguous; line numbers would be wrong")
        unread = max(src.lines - total, 0) if src.lines is not None and reader.path == src.path else 0
        if csv_rejects or unread:
            con.execute("DELETE FROM events WHERE source_id = ?", [sid])
            drop_csv_rejects(con, reader.rejects_table)
            if unread and not csv_rejects and reader.parallel:
                # The parallel CSV reader lost lines (seen at 10 M lines in CRLF mode; see
                # Reader.crlf): the same load on one thread, still without a stage.
                return self._load_direct(src, replace(reader, parallel=False), salvage_reason,
                                         mapping, result)
            self.case.restore_settings("memory_limit")  # the stage takes over, with the case's limit
            return False
        if total:
            con.execute(direct_lines_sql(sid, int(row[2])))
        con.execute(move_rejects_sql(sid))
        if marked:
            con.execute("DELETE FROM events WHERE source_id = ? AND format = ?", [sid, REJECT_MARK])
        result.events = total - marked
        result.duplicates = 0
        self._finish(src, reader, salvage_reason, mapping, result, [])
        return True


_UNITS = {"b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _bytes_of(setting: str) -> int:
    """DuckDB's memory_limit text ('3.8 GiB', '768.0 MiB') in bytes; 1 GiB if unreadable."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", setting)
    if not m or m.group(2).lower() not in _UNITS:
        return 1 << 30
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
