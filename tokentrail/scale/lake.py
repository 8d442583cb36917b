"""A case as a folder of Parquet files (a "lake"): export, and open in place.

When a case outgrows one machine, responders run detections where the data lives. A lake is
the case's tables written as Parquet, partitioned by day (events also by log format), with a
small JSON manifest that records the case schema version, the tokentrail version and every
table's columns and types:

    DIR/tokentrail-lake.json
    DIR/events/day=2026-11-02/format=envoy/data_0.parquet
    DIR/tokens/day=2026-11-02/data_0.parquet          (day of first_seen)
    DIR/token_holders/day=.../data_0.parquet          (day of first_seen)
    DIR/links/day=.../data_0.parquet                  (day of ts)
    DIR/findings/day=.../data_0.parquet               (day of first_seen)
    DIR/sources/data_0.parquet, DIR/rejects/data_0.parquet  (small, not partitioned)

Partition columns (`day`, and `format` for events) live in the folder names (Hive style), as
every lakehouse engine expects; a reader with Hive partitioning gets `format` back as a column.
A table with no rows has no files: its columns are in the manifest.

`open_lake(location)` opens a local folder or an object-store URL (s3://, gs://, az://,
https://, ...) as a case: read-only, with views over `read_parquet(..., hive_partitioning =
true)`, so `query` and the responder views work in place; or, for commands that analyse (scan,
tokens, trace, report), as an in-memory working copy of the events (the lake is never
written). The lake holds exactly what the case holds: no raw token.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson

from tokentrail import __version__
from tokentrail.case.schema import STORED_COLUMN_NAMES
from tokentrail.case.store import MEMORY, SCHEMA_VERSION, Case
from tokentrail.case.views import refresh_derived_views
from tokentrail.errors import CaseError, UsageError
from tokentrail.redact import redact_text

MANIFEST = "tokentrail-lake.json"
LAKE_FORMAT = "tokentrail-lake"
LAKE_VERSION = 1

# URL schemes an object store is read through (DuckDB httpfs / azure extensions; Spark's own
# file systems). Anything else with "://" is refused clearly.
URL_SCHEMES = ("s3://", "s3a://", "s3n://", "gs://", "gcs://", "r2://", "az://", "azure://",
               "abfss://", "abfs://", "http://", "https://", "hf://")

# table -> (column whose UTC day partitions it, or None; extra partition columns)
TABLES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "events": ("ts", ("format",)),
    "tokens": ("first_seen", ()),
    "token_holders": ("first_seen", ()),
    "links": ("ts", ()),
    "findings": ("first_seen", ()),
    "sources": (None, ()),
    "rejects": (None, ()),
}
DERIVED_TABLES = ("tokens", "token_holders", "links", "findings")
PARTITION_COLUMN = "day"


def is_url(location: str) -> bool:
    return "://" in location


def is_lake(location: str | os.PathLike[str] | None) -> bool:
    """Does `location` name a lake (rather than a DuckDB case file)? A URL always does; a
    local path does when it is a folder (a folder without a manifest is refused on open)."""
    if location is None:
        return False
    text = str(location)
    if text == MEMORY:
        return False
    return is_url(text) or Path(text).is_dir()


# ---------------------------------------------------------------------------------------------
# Export


@dataclass
class ExportReport:
    location: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def files(self) -> int:
        return sum(t["files"] for t in self.tables.values())


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()
    return {str(r[0]) for r in rows}


def missing_derived_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Derived tables (built by a scan) the case does not have yet."""
    have = _tables(con)
    return [t for t in DERIVED_TABLES if t not in have]


def export_case(case: Case, dest: str | os.PathLike[str], *, overwrite: bool = False) -> ExportReport:
    """Write the case's tables as a lake at the local folder `dest`.

    The derived tables (tokens, token_holders, links, findings) must exist: run `analyse`
    first. The lake is written next to `dest` and moved into place at the end, so a failed
    export leaves no half-written lake. `overwrite` replaces an existing lake (never a folder
    that is not one).
    """
    target = Path(dest)
    if is_url(str(dest)):
        raise UsageError("export writes a local folder; copy it to object storage afterwards "
                         "(e.g. `aws s3 sync DIR s3://bucket/case/`)")
    missing = missing_derived_tables(case.con)
    if missing:
        raise CaseError(f"the case has no {', '.join(missing)} table(s) yet: analyse it first "
                        "(`tokentrail scan --db CASE`)")
    if target.exists():
        if not target.is_dir():
            raise UsageError(f"{target} exists and is not a folder")
        if any(target.iterdir()):
            if not (target / MANIFEST).is_file():
                raise UsageError(f"{target} is a folder that is not empty and not a tokentrail lake; "
                                 "choose another folder")
            if not overwrite:
                raise UsageError(f"{target} already holds a lake; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    con = case.con
    report = ExportReport(location=str(target))
    manifest_tables: dict[str, Any] = {}
    try:
        for table, (day_col, extra) in TABLES.items():
            cols = _columns(con, table)
            rows_row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            rows = int(rows_row[0]) if rows_row else 0
            partition_by = ([PARTITION_COLUMN] if day_col else []) + list(extra)
            out = work / table
            if rows:
                select = ", ".join(f'"{c}"' for c, _ in cols)
                if day_col:
                    # the UTC day (the case's session time zone is UTC)
                    select += f', CAST("{day_col}" AS DATE) AS {PARTITION_COLUMN}'
                    out.mkdir()
                    options = f"FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({', '.join(partition_by)})"
                    con.execute(f"COPY (SELECT {select} FROM {table}) TO {_sql_text(str(out))} ({options})")
                else:
                    out.mkdir()
                    target_file = _sql_text(str(out / "data_0.parquet"))
                    con.execute(f"COPY (SELECT {select} FROM {table}) TO {target_file} "
                                "(FORMAT parquet, COMPRESSION zstd)")
            files = sum(1 for _ in out.rglob("*.parquet")) if out.exists() else 0
            manifest_tables[table] = {
                "path": table, "rows": rows, "partition_by": partition_by,
                "columns": [[c, t] for c, t in cols],
            }
            report.tables[table] = {"rows": rows, "files": files, "partition_by": partition_by}
        meta = dict(con.execute("SELECT key, value FROM meta ORDER BY key").fetchall())
        manifest = {
            "format": LAKE_FORMAT,
            "lake_version": LAKE_VERSION,
            "schema_version": int(meta.get("schema_version") or SCHEMA_VERSION),
            "tokentrail_version": __version__,
            "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "case_meta": meta,
            "tables": manifest_tables,
        }
        (work / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except duckdb.Error as exc:
        raise CaseError(f"export to {target} failed: {redact_text(str(exc).splitlines()[0])}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return report


# ---------------------------------------------------------------------------------------------
# Reading a lake


@dataclass(frozen=True)
class Lake:
    """A lake's location and manifest, checked against this tokentrail."""

    location: str  # local absolute path, or URL without a trailing slash
    manifest: dict[str, Any]

    @property
    def schema_version(self) -> int:
        return int(self.manifest.get("schema_version") or 0)

    def table(self, name: str) -> dict[str, Any]:
        tables = self.manifest.get("tables") or {}
        if name not in tables:
            raise CaseError(f"lake {self.location} has no table {name!r} in its manifest")
        return dict(tables[name])

    def table_location(self, name: str) -> str:
        return f"{self.location}/{self.table(name).get('path', name)}"

    def columns(self, name: str) -> list[tuple[str, str]]:
        return [(str(c), str(t)) for c, t in self.table(name)["columns"]]

    def has_table(self, name: str) -> bool:
        return name in (self.manifest.get("tables") or {})


def _load_remote_support(con: duckdb.DuckDBPyConnection, location: str) -> None:
    """Load the DuckDB extension that reads `location`; a clear CaseError when it cannot."""
    if not is_url(location):
        return
    if not location.startswith(URL_SCHEMES):
        scheme = location.split("://", 1)[0]
        raise UsageError(f"cannot read {scheme}:// URLs; a lake is a local folder or one of "
                         + ", ".join(s for s in URL_SCHEMES))
    extension = "azure" if location.startswith(("az://", "azure://", "abfss://", "abfs://")) else "httpfs"
    errors = []
    for statement in (f"LOAD {extension}", f"INSTALL {extension}", f"LOAD {extension}"):
        try:
            con.execute(statement)
            if statement.startswith("LOAD"):
                return
        except duckdb.Error as exc:
            errors.append(str(exc).splitlines()[0])
    raise CaseError(
        f"cannot read {location}: DuckDB's {extension} extension is not installed and could not "
        "be downloaded (no network to extensions.duckdb.org?). Install it on a connected machine "
        f"(`python -c \"import duckdb; duckdb.sql('INSTALL {extension}')\"`), or copy the lake to a "
        "local folder and pass that folder to --db" + (f" [{redact_text(errors[-1])}]" if errors else ""))


def read_manifest(location: str | os.PathLike[str], con: duckdb.DuckDBPyConnection | None = None) -> Lake:
    """The lake at `location` (a folder or URL), its manifest checked: refuses a folder that is
    not a lake and a lake written by a newer or older case schema."""
    text = str(location)
    if is_url(text):
        loc = text.rstrip("/")
        own = con is None
        c = con if con is not None else duckdb.connect()
        try:
            _load_remote_support(c, loc)
            row = c.execute("SELECT content FROM read_text(?)", [f"{loc}/{MANIFEST}"]).fetchone()
            raw = str(row[0]) if row else ""
        except duckdb.Error as exc:
            raise CaseError(f"cannot read the lake manifest {loc}/{MANIFEST}: "
                            f"{redact_text(str(exc).splitlines()[0])}") from None
        finally:
            if own:
                c.close()
    else:
        path = Path(text).resolve()
        loc = str(path)
        if not path.is_dir():
            raise CaseError(f"no lake at {text}: not a folder")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CaseError(f"{text} is a folder but not a tokentrail lake (no {MANIFEST}); write one "
                            "with `tokentrail export --parquet DIR`")
        try:
            raw = manifest_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CaseError(f"cannot read {manifest_path}: {exc.strerror}") from None
    return parse_manifest(loc, raw)


def parse_manifest(loc: str, raw: str) -> Lake:
    """A lake's manifest text, checked: refuses what is not a manifest and a lake written by a
    newer or older case schema."""
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CaseError(f"{loc}/{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != LAKE_FORMAT:
        raise CaseError(f"{loc}/{MANIFEST} is not a tokentrail lake manifest")
    lake = Lake(location=loc, manifest=manifest)
    version = lake.schema_version
    if version > SCHEMA_VERSION:
        raise CaseError(f"lake {loc} has case schema version {version}, newer than this tokentrail "
                        f"({__version__}, schema version {SCHEMA_VERSION}) understands; upgrade "
                        "tokentrail")
    if version < SCHEMA_VERSION:
        raise CaseError(f"lake {loc} has case schema version {version}, older than this tokentrail's "
                        f"({SCHEMA_VERSION}); export it again from its case with this tokentrail")
    for name in ("events", "sources", "rejects"):
        lake.table(name)
    return lake


def table_sql(lake: Lake, name: str) -> str:
    """A DuckDB query over one table of the lake, with the case's column names, order and types."""
    info = lake.table(name)
    cols = lake.columns(name)
    select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols)
    if not int(info.get("rows") or 0):  # no files: typed, empty
        return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in cols) + " WHERE false"
    base = lake.table_location(name)
    partition_by = list(info.get("partition_by") or [])
    if partition_by:
        types = ", ".join(f"{_sql_text(p)}: {'DATE' if p == PARTITION_COLUMN else 'VARCHAR'}"
                          for p in partition_by)
        source = (f"read_parquet({_sql_text(base + '/**/*.parquet')}, hive_partitioning = true, "
                  f"hive_types = {{{types}}}, union_by_name = true)")
    else:
        source = f"read_parquet({_sql_text(base + '/*.parquet')}, union_by_name = true)"
    return f"SELECT {select} FROM {source}"


class LakeCase(Case):
    """A lake opened as a case. Read-only: views over the Parquet files (queried in place).
    Otherwise: an in-memory working copy of events, sources and rejects that analysis can
    rebuild derived tables in; nothing is ever written back to the lake."""

    lake: Lake

    def __init__(self, location: str | os.PathLike[str], *, read_only: bool = True,
                 memory_limit: str | None = None) -> None:
        self._view_dir: str | None = None
        probe = duckdb.connect()
        try:
            lake = read_manifest(location, probe)
        finally:
            probe.close()
        if read_only:
            self._view_dir = tempfile.mkdtemp(prefix="tokentrail-lake-")
            views_db = os.path.join(self._view_dir, "lake.duckdb")
            try:
                _write_view_db(views_db, lake)
                super().__init__(views_db, read_only=True, memory_limit=memory_limit)
            except BaseException:
                shutil.rmtree(self._view_dir, ignore_errors=True)
                raise
            _load_remote_support(self.con, lake.location)
        else:
            super().__init__(MEMORY, memory_limit=memory_limit)
            try:
                _load_remote_support(self.con, lake.location)
                self._load_working_copy(lake)
            except BaseException:
                super().close()
                raise
        self.lake = lake
        self.path = lake.location

    def _load_working_copy(self, lake: Lake) -> None:
        stored = ", ".join(f'"{c}"' for c in STORED_COLUMN_NAMES)
        try:
            with self.transaction() as con:
                events = table_sql(lake, "events")
                con.execute(f"INSERT INTO events ({stored}) SELECT {stored} FROM ({events})")
                for name in ("sources", "rejects"):
                    cols = ", ".join(f'"{c}"' for c in dict(_columns(con, name)))
                    con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM ({table_sql(lake, name)})")
        except duckdb.Error as exc:
            raise CaseError(f"cannot read the lake {lake.location}: "
                            f"{redact_text(str(exc).splitlines()[0])}") from None

    def close(self) -> None:
        super().close()
        if self._view_dir:
            shutil.rmtree(self._view_dir, ignore_errors=True)


def _write_view_db(path: str, lake: Lake) -> None:
    """A tiny DuckDB file holding only views over the lake (and the responder views), so the
    lake can be opened read-only exactly like a case file."""
    with Case(path) as case:
        con = case.con
        _load_remote_support(con, lake.location)
        try:
            for name in ("events", "sources", "rejects"):
                con.execute(f"DROP TABLE {name}")
            for name in TABLES:
                if lake.has_table(name):
                    con.execute(f"CREATE VIEW {name} AS {table_sql(lake, name)}")
            refresh_derived_views(con)  # v_sessions with classifications when the lake has them
            con.execute("INSERT OR REPLACE INTO meta VALUES ('lake', ?)", [lake.location])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('lake_exported_at', ?)",
                        [str(lake.manifest.get("exported_at") or "")])
            # fail now, clearly, if the files do not match the manifest
            con.execute("SELECT * FROM events LIMIT 0").fetchall()
        except duckdb.Error as exc:
            raise CaseError(f"cannot read the lake {lake.location}: "
                            f"{redact_text(str(exc).splitlines()[0])}") from None


def open_lake(location: str | os.PathLike[str], *, read_only: bool = True) -> LakeCase:
    """A lake as a case: read-only views (in place), or a working copy for analysis."""
    return LakeCase(location, read_only=read_only)


def lake_counts(lake: Lake) -> dict[str, int]:
    """Rows per table, as the manifest records them."""
    return {name: int(info.get("rows") or 0) for name, info in (lake.manifest.get("tables") or {}).items()}


__all__ = ["MANIFEST", "TABLES", "ExportReport", "Lake", "LakeCase", "export_case", "is_lake",
           "is_url", "open_lake", "parse_manifest", "read_manifest", "table_sql"]
