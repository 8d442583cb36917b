"""Open or create a case database; schema migrations; transactions.

A case is one DuckDB file (or an in-memory database for one-shot CI scans). Its schema is
created by ordered, named migrations recorded in `meta`, so a case written by an older
tokentrail opens in a newer one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from tokentrail import __version__
from tokentrail.case.schema import EVENT_COLUMNS, VIRTUAL_COLUMNS
from tokentrail.case.sqlmacros import install_macros
from tokentrail.case.views import create_views_sql, refresh_derived_views
from tokentrail.errors import CaseError, QueryError, UsageError, first_line
from tokentrail.redact import redact_text

DEFAULT_DB = "tokentrail.duckdb"
MEMORY_LIMIT_CAP = 4 << 30  # half of RAM, at most 4 GiB: room for joins without spilling
MEMORY_LIMIT_FLOOR = 512 << 20
FALLBACK_MEMORY_LIMIT = "768MB"  # when the machine's memory cannot be read


def default_memory_limit() -> str:
    """DuckDB's memory_limit when TOKENTRAIL_MEMORY_LIMIT is not set: half of the machine's
    RAM (or of the container's cgroup limit, if lower), between 512 MiB and 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return FALLBACK_MEMORY_LIMIT
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            cap = fh.read().strip()
        if cap.isdigit():
            total = min(total, int(cap))
    except OSError:
        pass
    if total <= 0:
        return FALLBACK_MEMORY_LIMIT
    limit = min(max(total // 2, MEMORY_LIMIT_FLOOR), MEMORY_LIMIT_CAP)
    return f"{limit >> 20}MB"
MEMORY = ":memory:"


def resolve_db_path(db: str | None) -> str:
    """--db, else $TOKENTRAIL_DB, else ./tokentrail.duckdb."""
    if db:
        return db
    env = os.environ.get("TOKENTRAIL_DB")
    if env:
        return env
    return DEFAULT_DB


def _m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE sources (
            source_id VARCHAR PRIMARY KEY, path VARCHAR, sha256 VARCHAR, bytes BIGINT,
            format VARCHAR, container VARCHAR, ingested_at TIMESTAMPTZ, events BIGINT,
            rejects BIGINT)""")
    cols = ", ".join(
        f"{name} {typ} GENERATED ALWAYS AS ({VIRTUAL_COLUMNS[name]}) VIRTUAL"
        if name in VIRTUAL_COLUMNS else f"{name} {typ}"
        for name, typ, _ in EVENT_COLUMNS
    )
    con.execute(f"CREATE TABLE events ({cols})")
    con.execute("""
        CREATE TABLE rejects (source_id VARCHAR, line BIGINT, reason VARCHAR, excerpt VARCHAR)""")
    for stmt in create_views_sql():
        con.execute(stmt)


# Tables the analysis (scan, tokens, report, ...) builds; not there in a freshly ingested case.
_DERIVED = frozenset({"tokens", "token_holders", "findings", "links", "data_quality"})

def _m003_source_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """sources.duplicates: records a file repeated under its format's dedupe key (kept once;
    see mapping.py `dedupe`). Older cases read 0: they were ingested without the key."""
    con.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS duplicates BIGINT DEFAULT 0")


def _m004_source_provides(con: duckdb.DuckDBPyConnection) -> None:
    """sources.provides: what the file's format says it can show (its mapping's [provides]:
    token_id, holder, issuance, limits), stored at ingest so reports read it from the case,
    not from the mapping registry (a custom --mapping is described too). Older cases read
    NULL: re-ingest with --force to fill it."""
    con.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS provides JSON")


Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]
MIGRATIONS: tuple[Migration, ...] = (
    ("001_initial", _m001_initial),
    # v_sessions (issue 11.2) for cases made before it; later views can ride the same step
    ("002_session_view", refresh_derived_views),
    ("003_source_duplicates", _m003_source_duplicates),
    ("004_source_provides", _m004_source_provides),
)
SCHEMA_VERSION = len(MIGRATIONS)


_OPEN: weakref.WeakSet[Case] = weakref.WeakSet()  # open cases, for interrupt_open_cases()


def interrupt_open_cases() -> None:
    """Ask every open case's running query to stop (DuckDB then raises InterruptException
    in the thread that runs it). DuckDB checks no signal of its own while it computes, so a
    Ctrl-C handler calls this from another thread."""
    for case in list(_OPEN):
        con = getattr(case, "con", None)
        if con is not None:
            try:
                con.interrupt()
            except duckdb.Error:
                pass


_SPILL: list[Any] = [None, 0]  # the process's spill folder and how many cases use it


def _acquire_spill() -> str:
    if _SPILL[0] is None or not os.path.isdir(_SPILL[0]):
        _SPILL[0] = tempfile.mkdtemp(prefix="tokentrail-spill-")
    _SPILL[1] += 1
    return str(_SPILL[0])


def _release_spill() -> None:
    _SPILL[1] = max(_SPILL[1] - 1, 0)
    if _SPILL[1] == 0 and _SPILL[0] is not None:
        shutil.rmtree(_SPILL[0], ignore_errors=True)
        _SPILL[0] = None


class _CaseLocked(Exception):
    """Another process holds the case file's lock."""


class Case:
    """A tokentrail case database. Use as a context manager or call close()."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
                 memory_limit: str | None = None, wait: float = 0.0,
                 on_wait: Callable[[], None] | None = None) -> None:
        """`wait`: seconds to keep retrying while another process holds the case (DuckDB
        allows one writer per file); `on_wait` is called once when waiting starts."""
        self.path = str(path) if path is not None else MEMORY
        self.read_only = read_only
        if read_only and self.path != MEMORY and not Path(self.path).exists():
            raise CaseError(f"no such case: {self.path} (run `tokentrail ingest` first "
                            "or pass --db)")
        # Bounded memory whatever the input size: DuckDB spills to a private temp folder
        # instead of growing, within a limit taken from the machine (default_memory_limit).
        # One folder per process, so opening the same file twice (a notebook re-running a
        # cell) gives DuckDB the same configuration and it shares the open database.
        self._spill = _acquire_spill()
        config: dict[str, Any] = {
            "memory_limit": memory_limit or os.environ.get("TOKENTRAIL_MEMORY_LIMIT")
            or default_memory_limit(),
            "temp_directory": self._spill,
        }
        self.memory_limit = str(config["memory_limit"])  # as opened (DuckDB prints it rounded)
        self._overridden: dict[str, str] = {}  # override(): the values restore_settings() puts back
        try:
            self.con = self._connect_waiting(config, wait, on_wait)
        finally:
            if not hasattr(self, "con"):
                _release_spill()
        _OPEN.add(self)
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")
        install_macros(self.con)
        self._migrate()

    def _connect_waiting(self, config: dict[str, Any], wait: float,
                         on_wait: Callable[[], None] | None) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + max(wait, 0.0)
        told = False
        while True:
            try:
                return self._connect(config)
            except _CaseLocked:
                if time.monotonic() >= deadline:
                    more = f" for {wait:g} s" if wait > 0 else ""
                    raise CaseError(
                        f"case {self.path} is open in another process{more} (DuckDB allows one "
                        "writer at a time); wait for it to finish and retry, or set "
                        "TOKENTRAIL_LOCK_WAIT=SECONDS to wait longer") from None
                if not told and on_wait is not None:
                    on_wait()
                told = True
                time.sleep(0.25)

    def _connect(self, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(self.path, read_only=self.read_only and self.path != MEMORY,
                                  config=config)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise _CaseLocked() from None
            raise CaseError(f"cannot open case {self.path}: {redact_text(text)}") from None
        except duckdb.Error as exc:
            text = redact_text(first_line(exc))
            env = os.environ.get("TOKENTRAIL_MEMORY_LIMIT")
            if env and str(config.get("memory_limit")) == env and "memory" in text.lower():
                raise UsageError(f"TOKENTRAIL_MEMORY_LIMIT={env!r} is not a memory size "
                                 f"(e.g. 768MB, 8GB): {text}") from None
            raise CaseError(f"cannot open case {self.path}: {text}") from None

    # -- session settings ------------------------------------------------------------------
    def setting(self, name: str) -> str:
        """A DuckDB setting as DuckDB prints it ('3.8 GiB'; '' when empty)."""
        row = self.con.execute("SELECT value FROM duckdb_settings() WHERE name = ?",
                               [name]).fetchone()
        return str(row[0]) if row and row[0] is not None else ""

    def override(self, name: str, value: str) -> None:
        """Set a DuckDB setting until restore_settings(), which puts back the value it had
        before the first override (memory_limit: as the case was opened, which DuckDB would
        print rounded). Ingest scopes its per-file settings with this; call the restore
        outside a transaction that may have failed, where DuckDB refuses any SET."""
        if name not in self._overridden:
            self._overridden[name] = (self.memory_limit if name == "memory_limit"
                                      else self.setting(name))
        self.con.execute(f"SET {name} = ?", [value])

    def restore_settings(self, *names: str) -> None:
        """Undo override() for `names`, or for every overridden setting."""
        for name in names or tuple(self._overridden):
            if name in self._overridden:
                self.con.execute(f"SET {name} = ?", [self._overridden.pop(name)])

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.con.close()
        _release_spill()

    def sandbox(self) -> None:
        """From now on this database reads and writes nothing but itself: no COPY TO, no
        read_text/read_csv/read_parquet of other files, no ATTACH, no INSTALL/LOAD, and the
        setting cannot be turned back (`lock_configuration`). For running a responder's SQL.
        The case file is already open, and the spill folder stays usable."""
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One file = one transaction: an interrupted ingest leaves the case as it was."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- schema ----------------------------------------------------------------------------
    def _tables(self) -> set[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        return {r[0] for r in rows}

    def _migrate(self) -> None:
        tables = self._tables()
        if tables and "meta" not in tables:
            raise CaseError(f"{self.path} is a DuckDB database but not a tokentrail case "
                            "(no meta table); choose another --db")
        if "meta" not in tables:
            if self.read_only:
                raise CaseError(f"{self.path} is not a tokentrail case")
            self.con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            self._set_meta("created", datetime.now(UTC).isoformat())
            self._set_meta("schema_version", "0")
        version = int(self.meta("schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise CaseError(f"case {self.path} has schema version {version}, newer than this "
                            f"tokentrail ({__version__}) understands; upgrade tokentrail")
        if version < SCHEMA_VERSION and self.read_only:
            raise CaseError(f"case {self.path} needs a schema upgrade; open it once without "
                            "read-only (e.g. `tokentrail ingest` with no paths is not needed: "
                            "any write command upgrades it)")
        for index, (name, migrate) in enumerate(MIGRATIONS, start=1):
            if index <= version:
                continue
            with self.transaction():
                migrate(self.con)
                self._set_meta(f"migration:{name}", datetime.now(UTC).isoformat())
                self._set_meta("schema_version", str(index))
                self._set_meta("tokentrail_version", __version__)

    def _set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    # -- reading ---------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a responder's SQL; return column names and rows. Errors become QueryError."""
        try:
            cur = self.con.execute(sql, params or [])
            if cur.description is None:
                return [], []
            columns = [d[0] for d in cur.description]
            return columns, cur.fetchall()
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            if isinstance(exc, duckdb.CatalogException):
                missing = _DERIVED.intersection(re.findall(r"[A-Za-z_]+", first))
                if missing:
                    first += (f" ({', '.join(sorted(missing))} is built by analysis: run "
                              f"`tokentrail scan --db {self.path}` first)")
            raise QueryError(redact_text(first)) from None

    def stats(self) -> dict[str, Any]:
        """Counts a summary shows: what the case holds, and over what time. Tokens are counted
        as analysis will key them (lineage.ALIAS_SQL: a fingerprint seen elsewhere with one
        token id is that token), so `ingest` and `scan` report the same number."""
        row = self.con.execute("""
            SELECT (SELECT count(*) FROM events),
                   (SELECT count(*) FROM rejects),
                   (SELECT count(DISTINCT coalesce(a.token_id, e.token_key)) FROM events e
                    LEFT JOIN (SELECT 'fp:' || token_fp AS key, min(token_id) AS token_id
                               FROM events WHERE token_fp IS NOT NULL AND token_id IS NOT NULL
                               GROUP BY token_fp HAVING count(DISTINCT token_id) = 1) a
                      ON e.token_key = a.key),
                   (SELECT count(DISTINCT holder_id) FROM events),
                   (SELECT min(ts) FROM events), (SELECT max(ts) FROM events),
                   (SELECT count(*) FROM sources)
        """).fetchone()
        assert row is not None
        return {
            "events": row[0], "rejects": row[1], "tokens": row[2], "holders": row[3],
            "time_range": [_iso(row[4]), _iso(row[5])], "sources": row[6],
        }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)
