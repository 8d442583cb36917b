"""The scan on Spark: lineage, classification and the rules over a Parquet lake.

Flow (`scan_lake`):

1. a SparkSession (`local[*]` by default, or a cluster's master URL);
2. the lake's `events`, `sources` and `rejects` registered as temporary views over its Parquet
   files (Hive partitions discovered, the case's column order and types restored);
3. the policy installed in a scratch DuckDB (Policy.install, as the DuckDB engine does) and its
   `policy_*` tables copied to Spark as views;
4. the DuckDB engine's own `build_lineage` and `classify` run against `SparkConnection`, which
   takes each statement they execute, transpiles it (portable/: macros inlined, sqlglot) and
   runs it on Spark: a query returns rows to the Python code around it, `CREATE TABLE ... AS`
   becomes a persisted DataFrame registered under that name, `UPDATE` / `DELETE` rebuild the
   view from a SELECT. A step added to lineage.py runs here unchanged;
5. every rule's query, transpiled, on Spark; its hits collected;
6. the hits, and just the rows they refer to (their tokens, (token, holder) pairs, evidence
   events, sources), staged in an in-memory DuckDB, where the DuckDB engine's own
   `run_rules` builds the findings: same ids (a hash of rule, token key and holder id), same
   details, same order.

pyspark is an optional extra (`pip install 'tokentrail[spark]'`) and needs Java 17+.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import orjson

from tokentrail import __version__
from tokentrail.errors import CaseError, UsageError
from tokentrail.output import jsonable
from tokentrail.redact import redact_text
from tokentrail.rules.findings import Finding
from tokentrail.rules.model import HIT_COLUMNS, Rule
from tokentrail.rules.runner import MAX_EVIDENCE, run_rules
from tokentrail.scale.lake import MANIFEST, PARTITION_COLUMN, Lake, is_url, parse_manifest, read_manifest
from tokentrail.scale.portable import (
    Untranslatable,
    delete_as_select,
    statement_kind,
    statements,
    table_name,
    transpile,
    update_as_select,
)

DEFAULT_MASTER = "local[*]"
INSTALL_HINT = "pip install 'tokentrail[spark]'"


class SparkUnavailable(UsageError):
    """pyspark or Java is missing, or Spark cannot start (exit 2)."""


class SparkQueryError(CaseError):
    """A statement failed on Spark."""


def _pyspark() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyspark
            import pyspark.sql  # noqa: F401
    except ImportError:
        raise SparkUnavailable(f"the Spark engine needs pyspark: {INSTALL_HINT} "
                               "(and a Java 17+ runtime, e.g. apt-get install openjdk-17-jre-headless)"
                               ) from None
    return pyspark


def java_runtime() -> str | None:
    """The java executable Spark would start, or None."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def spark_available() -> str | None:
    """None when the Spark engine can run here (local mode), else why not."""
    try:
        _pyspark()
    except SparkUnavailable as exc:
        return str(exc)
    if java_runtime() is None:
        return "no Java runtime (java on PATH or $JAVA_HOME): apt-get install openjdk-17-jre-headless"
    return None


def build_session(master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None,
                  app_name: str = "tokentrail") -> Any:
    """A SparkSession configured the way the engine needs it (UTC, lenient casts like DuckDB's
    TRY_CAST, partition values kept as text, no console progress)."""
    _pyspark()
    from pyspark.sql import SparkSession

    local = master.startswith("local")
    if local and java_runtime() is None:
        raise SparkUnavailable("Spark needs a Java runtime (17 or newer): apt-get install "
                               "openjdk-17-jre-headless, or set JAVA_HOME")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "OFF",  # errors come back as exceptions, once
    }
    if local:
        settings.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"})
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spark = builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up errors have no common base class
        raise SparkUnavailable(f"cannot start Spark ({master}): {_why(exc)}") from None
    for key, value in settings.items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)  # a session that already existed keeps its own otherwise
    try:  # Spark logs every failed query as JSON on stderr, besides raising it
        jvm: Any = spark.sparkContext._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            "SQLQueryContextLogger", jvm.org.apache.logging.log4j.Level.OFF)
    except Exception:  # noqa: S110 - cosmetic only
        pass
    return spark


def _why(exc: BaseException) -> str:
    return redact_text(_first_line(exc), strict=False)


def _first_line(exc: BaseException) -> str:
    """The useful line of a (Py4J-wrapped) Spark error."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        for ln in lines[1:]:
            if "Exception" in ln or "Error" in ln:
                return ln.lstrip(": ")[:400]
    return lines[0][:400]


# ---------------------------------------------------------------------------------------------
# Types and values between DuckDB, Spark and Python


def spark_type(duck_type: str) -> str:
    """A DuckDB column type as a Spark SQL type."""
    t = duck_type.strip().upper()
    if t.endswith("[]"):
        return f"ARRAY<{spark_type(t[:-2])}>"
    base = {"VARCHAR": "STRING", "JSON": "STRING", "TEXT": "STRING", "BIGINT": "BIGINT",
            "INTEGER": "INT", "SMALLINT": "SMALLINT", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT",
            "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
            "TIMESTAMPTZ": "TIMESTAMP", "TIMESTAMP": "TIMESTAMP_NTZ", "INTERVAL": "INTERVAL DAY TO SECOND"}
    if t in base:
        return base[t]
    if t.startswith("DECIMAL"):
        return t
    raise UsageError(f"column type {duck_type} has no Spark mapping")


def duck_type(spark_data_type: Any) -> str:
    """A Spark DataType as a DuckDB column type."""
    from pyspark.sql import types as T

    t = spark_data_type
    if isinstance(t, T.ArrayType):
        return duck_type(t.elementType) + "[]"
    simple = [(T.StringType, "VARCHAR"), (T.LongType, "BIGINT"), (T.IntegerType, "INTEGER"),
              (T.ShortType, "SMALLINT"), (T.ByteType, "TINYINT"), (T.DoubleType, "DOUBLE"),
              (T.FloatType, "DOUBLE"), (T.DecimalType, "DOUBLE"), (T.BooleanType, "BOOLEAN"),
              (T.TimestampType, "TIMESTAMPTZ"), (T.DateType, "DATE"),
              (T.DayTimeIntervalType, "INTERVAL"), (T.NullType, "VARCHAR")]
    for cls, name in simple:
        if isinstance(t, cls):
            return name
    if hasattr(T, "TimestampNTZType") and isinstance(t, T.TimestampNTZType):
        return "TIMESTAMP"
    return "VARCHAR"


def python_value(value: Any) -> Any:
    """A value collected from Spark, as the DuckDB engine would have returned it: timestamps
    aware in UTC (PySpark gives naive local time; astimezone reads a naive value as local),
    decimals as floats, structs as dicts."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [python_value(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "asDict"):
        return tuple(python_value(v) for v in value)
    if hasattr(value, "asDict"):  # a struct (Row)
        return {k: python_value(v) for k, v in value.asDict().items()}
    return value


class SparkCursor:
    """What DuckDB's `execute()` returns, for the Python code around the pipeline's SQL."""

    def __init__(self, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(c, None, None, None, None, None, None) for c in columns]
        self._rows = rows
        self._at = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._at = self._rows[self._at:], len(self._rows)
        return rows


@dataclass
class StepTiming:
    kind: str
    target: str | None
    seconds: float


class SparkConnection:
    """Runs DuckDB-dialect statements on Spark (see the module docstring, step 4).

    Tables are temporary views; a created or rebuilt table is persisted (memory and disk) and
    materialised at once, because later statements replace what it was computed from."""

    def __init__(self, spark: Any, on_step: Callable[[str], None] | None = None) -> None:
        self.spark = spark
        self.cached: dict[str, Any] = {}
        self.views: set[str] = set()
        self._schema: dict[str, dict[str, str]] | None = None
        self.timings: list[StepTiming] = []
        self.on_step = on_step

    # the DuckDB connection API the pipeline uses
    def execute(self, sql: str, parameters: Any = None) -> SparkCursor:
        if parameters:
            raise Untranslatable("a statement with parameters cannot run on Spark: "
                                 + sql.strip().splitlines()[0][:80])
        cursor = SparkCursor([], [])
        for tree in statements(sql):
            cursor = self._run(tree)
        return cursor

    sql = execute

    def _sql(self, query: Any) -> Any:
        try:
            text = transpile(query, "spark", schema=self.schema())
        except Untranslatable as exc:
            raise SparkQueryError(f"cannot run on Spark: {exc.reason}") from None
        try:
            return self.spark.sql(text)
        except Exception as exc:
            raise SparkQueryError(f"Spark refused a statement: {_why(exc)}") from None

    def schema(self) -> dict[str, dict[str, str]]:
        """Every registered view's columns and (DuckDB) types."""
        if self._schema is None:
            self._schema = {
                name: {f.name: duck_type(f.dataType) for f in self.spark.table(name).schema.fields}
                for name in sorted(self.views)}
        return self._schema

    def exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def _run(self, tree: Any) -> SparkCursor:
        kind = statement_kind(tree)
        start = time.perf_counter()
        target = None if kind in ("read", "other") else table_name(tree)
        if self.on_step and kind != "read":
            self.on_step(f"{kind} {target}")
        if kind == "read":
            df = self._sql(tree)
            rows = [tuple(python_value(v) for v in row) for row in df.collect()]
            return SparkCursor(df.columns, rows)
        if kind in ("table", "create") and tree.args.get("exists") and self.exists(target or ""):
            return SparkCursor([], [])
        if kind == "table":
            self.register(target or "", self._sql(tree.expression))
        elif kind == "create":
            cols = [(c.name, c.args["kind"].sql("duckdb")) for c in tree.this.expressions
                    if c.args.get("kind") is not None]
            self.register(target or "", self.empty(cols))
        elif kind == "update":
            columns = self.spark.table(target).columns
            self.register(target or "", self._sql(update_as_select(tree, columns)))
        elif kind == "delete":
            self.register(target or "", self._sql(delete_as_select(tree)))
        elif kind == "drop":
            old = self.cached.pop(target or "", None)
            self.spark.catalog.dropTempView(target)
            self.views.discard(target or "")
            self._schema = None
            if old is not None:
                old.unpersist()
        else:
            raise SparkQueryError(f"cannot run on Spark: {tree.sql('duckdb')[:80]}")
        self.timings.append(StepTiming(kind, target, time.perf_counter() - start))
        return SparkCursor([], [])

    def empty(self, columns: Iterable[tuple[str, str]]) -> Any:
        schema = ", ".join(f"`{c}` {spark_type(t)}" for c, t in columns)
        return self.spark.createDataFrame([], schema)

    def register(self, name: str, df: Any, *, persist: bool = True) -> Any:
        """`df` as the view `name`. persist: computed now and kept (memory, then disk) with its
        lineage cut (a local checkpoint), so later statements neither recompute it nor carry
        its whole plan: the classification's plan alone is large enough to exhaust the
        driver's memory when every rule re-analyses it."""
        if persist:
            try:
                df = df.localCheckpoint(eager=True)
            except Exception as exc:
                raise SparkQueryError(f"Spark failed building {name}: {_why(exc)}") from None
        old = self.cached.pop(name, None)
        df.createOrReplaceTempView(name)
        self.views.add(name)
        self._schema = None
        if persist:
            self.cached[name] = df
        if old is not None:
            old.unpersist()
        return df

    def release(self) -> None:
        """Unpersist and drop everything this connection registered."""
        for df in self.cached.values():
            df.unpersist()
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.cached.clear()
        self.views.clear()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the Spark engine does not provide DuckDB's connection.{name}()")


# ---------------------------------------------------------------------------------------------
# The lake on Spark


def read_lake_manifest(spark: Any, location: str) -> Lake:
    """The manifest of a lake Spark can read (local folder, or any URL Spark's file systems
    handle: s3a://, gs://, abfss://, hdfs://)."""
    if not is_url(location):
        return read_manifest(location)
    loc = location.rstrip("/")
    try:
        rows = spark.read.text(f"{loc}/{MANIFEST}", wholetext=True).collect()
    except Exception as exc:
        raise CaseError(f"cannot read the lake manifest {loc}/{MANIFEST} with Spark: "
                        f"{_why(exc)}") from None
    return parse_manifest(loc, rows[0][0] if rows else "")


def register_lake(conn: SparkConnection, lake: Lake,
                  names: Iterable[str] = ("events", "sources", "rejects")) -> None:
    """The lake's tables as Spark views, with the case's column names, order and types."""
    spark = conn.spark
    for name in names:
        info = lake.table(name)
        cols = lake.columns(name)
        if not int(info.get("rows") or 0):
            df = conn.empty(cols)
        else:
            base = lake.table_location(name)
            try:
                raw = spark.read.option("basePath", base).parquet(base)
            except Exception as exc:
                raise CaseError(f"cannot read {base} with Spark: {_why(exc)}") from None
            df = raw.selectExpr(*(f"CAST(`{c}` AS {spark_type(t)}) AS `{c}`" for c, t in cols))
        conn.register(name, df, persist=False)
    # partition columns are folder names only; nothing else is named `day`
    assert PARTITION_COLUMN not in {c for c, _ in lake.columns("events")}


def register_policy(conn: SparkConnection, policy: Any) -> Any:
    """Install the policy in a scratch DuckDB (as the DuckDB engine does), copy its tables to
    Spark; returns the PolicySQL the classifier needs."""
    from tokentrail.analyse import install_policy
    from tokentrail.case.store import Case

    with Case() as scratch:
        policy_sql = install_policy(scratch.con, policy)
        tables = [r[0] for r in scratch.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'policy\\_%' "
            "ESCAPE '\\' ORDER BY 1").fetchall()]
        for table in tables:
            cols = [(str(r[0]), str(r[1])) for r in scratch.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table]).fetchall()]
            rows = scratch.con.execute(f"SELECT * FROM {table}").fetchall()
            schema = ", ".join(f"`{c}` {spark_type(t)}" for c, t in cols)
            conn.register(table, conn.spark.createDataFrame([tuple(r) for r in rows], schema), persist=False)
    return policy_sql


# ---------------------------------------------------------------------------------------------
# Findings: the DuckDB engine's code over the rows the hits refer to


def _stage(duck: duckdb.DuckDBPyConnection, name: str, df: Any) -> None:
    fields = df.schema.fields
    cols = ", ".join(f'"{f.name}" {duck_type(f.dataType)}' for f in fields)
    duck.execute(f'CREATE OR REPLACE TABLE "{name}" ({cols})')
    rows = [tuple(python_value(v) for v in row) for row in df.collect()]
    if rows:
        marks = ", ".join("?" * len(fields))
        duck.executemany(f'INSERT INTO "{name}" VALUES ({marks})', rows)


def _quote_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"


def build_findings(conn: SparkConnection, rules: list[Rule],
                   hits: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    """Findings from Spark's rule hits, built by rules.runner.run_rules in a DuckDB that holds
    the hits and the rows they refer to."""
    spark = conn.spark
    keys = sorted({h["token_key"] for hs in hits.values() for h in hs if h["token_key"] is not None})
    holders = sorted({h["holder_id"] for hs in hits.values() for h in hs if h["holder_id"] is not None})
    refs: set[tuple[str, int]] = set()
    for hs in hits.values():
        for h in hs:
            for eid in (h["event_ids"] or [])[:MAX_EVIDENCE * 4]:
                sid, _, line = str(eid).rpartition(":")
                if line.isdigit():
                    refs.add((sid, int(line)))
    duck = duckdb.connect()
    try:
        duck.execute("SET TimeZone = 'UTC'")
        keys_df = spark.createDataFrame([(k,) for k in keys], "token_key STRING")
        holders_df = spark.createDataFrame([(h,) for h in holders], "holder_id STRING")
        refs_df = spark.createDataFrame(sorted(refs), "source_id STRING, line BIGINT")
        _stage(duck, "tokens", spark.table("tokens").join(keys_df, "token_key", "left_semi"))
        _stage(duck, "token_holders", spark.table("token_holders").join(keys_df, "token_key", "left_semi"))
        events = spark.table("events")
        evidence = events.join(refs_df, ["source_id", "line"], "left_semi")
        tiers = spark.sql(
            "SELECT holder_id, min(holder_tier) AS holder_tier FROM events "
            "WHERE holder_id IS NOT NULL GROUP BY holder_id").join(holders_df, "holder_id", "left_semi")
        tier_rows = tiers.selectExpr(*(
            f"CAST({'`' + f.name + '`' if f.name in ('holder_id', 'holder_tier') else 'NULL'} "
            f"AS {f.dataType.simpleString()}) AS `{f.name}`" for f in events.schema.fields))
        _stage(duck, "events", evidence.unionByName(tier_rows))
        _stage(duck, "sources", spark.table("sources"))
        cols = ", ".join(HIT_COLUMNS)
        duck.execute("CREATE TABLE _tt_spark_hits (rule VARCHAR, token_key VARCHAR, holder_id VARCHAR, "
                      "first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, count BIGINT, event_ids VARCHAR[], "
                      "reasons VARCHAR[])")
        rows = [(rule_id, h["token_key"], h["holder_id"], h["first_seen"], h["last_seen"], h["count"],
                 [str(e) for e in (h["event_ids"] or [])], [str(r) for r in (h["reasons"] or [])])
                for rule_id, hs in hits.items() for h in hs]
        if rows:
            duck.executemany("INSERT INTO _tt_spark_hits VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        staged = [replace(rule, sql=f"SELECT {cols} FROM _tt_spark_hits WHERE rule = "
                                    f"'{rule.id.replace(chr(39), chr(39) * 2)}'") for rule in rules]
        return run_rules(duck, staged)
    finally:
        duck.close()


def case_summary(conn: SparkConnection) -> dict[str, Any]:
    """results.case_summary, computed on Spark."""
    row = conn.spark.sql("""
        SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT token_key) FROM events),
               (SELECT count(DISTINCT holder_id) FROM events), (SELECT count(*) FROM rejects),
               (SELECT min(ts) FROM events), (SELECT max(ts) FROM events)""").collect()[0]
    values = [python_value(v) for v in row]
    sources = conn.spark.sql(
        "SELECT path, format, events, rejects, sha256 FROM sources ORDER BY path").collect()
    return {
        "events": values[0], "tokens": values[1], "holders": values[2], "rejects": values[3],
        "time_range": jsonable([values[4], values[5]]),
        "sources": [{"path": s[0], "format": s[1], "events": s[2], "rejects": s[3], "sha256": s[4]}
                    for s in sources],
    }


@dataclass
class SparkScan:
    findings: list[Finding]
    payload: dict[str, Any]
    pairs: list[tuple[str, str, str, float | None]]
    timings: dict[str, float] = field(default_factory=dict)
    steps: list[StepTiming] = field(default_factory=list)


def scan_lake(location: str, *, spark: Any = None, master: str = DEFAULT_MASTER,
              conf: dict[str, str] | None = None, policy: Any = None,
              rules: list[Rule] | None = None,
              on_step: Callable[[str], None] | None = None) -> SparkScan:
    """Lineage, classification and the rules on Spark over the lake at `location`; findings
    as the DuckDB engine builds them."""
    from tokentrail.provenance.classify import classify
    from tokentrail.provenance.lineage import build_lineage
    from tokentrail.rules import load_rules

    rules = load_rules() if rules is None else rules
    timings: dict[str, float] = {}
    clock = time.perf_counter
    t0 = clock()
    own_session = False
    session = spark
    if session is None:
        _pyspark()
        from pyspark.sql import SparkSession

        own_session = SparkSession.getActiveSession() is None
        session = build_session(master, conf)
    timings["session"] = clock() - t0
    conn = SparkConnection(session, on_step=on_step)
    try:
        t = clock()
        lake = read_lake_manifest(session, location)
        register_lake(conn, lake)
        policy_sql = register_policy(conn, policy)
        timings["load"] = clock() - t
        t = clock()
        build_lineage(conn)  # type: ignore[arg-type]
        timings["lineage"] = clock() - t
        t = clock()
        classify(conn, policy_sql)  # type: ignore[arg-type]
        timings["classify"] = clock() - t
        t = clock()
        hits: dict[str, list[dict[str, Any]]] = {}
        cols = ", ".join(HIT_COLUMNS)
        for rule in rules:
            if on_step:
                on_step(f"rule {rule.id}")
            try:
                df = conn._sql(f"SELECT {cols} FROM ({rule.sql}) AS _tt_rule")
                rows = df.collect()
            except SparkQueryError as exc:
                raise SparkQueryError(f"{rule.source}: {exc}") from None
            except Exception as exc:
                raise SparkQueryError(f"{rule.source}: Spark failed running the rule: "
                                      f"{_why(exc)}") from None
            hits[rule.id] = [dict(zip(HIT_COLUMNS, (python_value(v) for v in row), strict=True))
                             for row in rows]
        timings["rules"] = clock() - t
        t = clock()
        findings = build_findings(conn, rules, hits)
        payload = {"tool": {"name": "tokentrail", "version": __version__},
                   "case": case_summary(conn),
                   "findings": [jsonable(f.as_dict()) for f in findings]}
        pairs = [(r[0], r[1], r[2], r[3]) for r in session.sql(
            "SELECT token_key, holder_id, classification, confidence FROM token_holders").collect()]
        timings["findings"] = clock() - t
        return SparkScan(findings=findings, payload=payload, pairs=pairs, timings=timings,
                         steps=list(conn.timings))
    finally:
        conn.release()
        if own_session:
            session.stop()


def payload_json(scan: SparkScan) -> bytes:
    return orjson.dumps(scan.payload, option=orjson.OPT_INDENT_2) + b"\n"
