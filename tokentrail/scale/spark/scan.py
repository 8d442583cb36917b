"""The scan on Spark, end to end: the lake and the policy registered as views, lineage and
classification through SparkConnection, the rules' hits turned into findings by the DuckDB
engine's own code over just the rows they refer to."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from tokentrail.errors import CaseError
from tokentrail.output import json_bytes
from tokentrail.results import CASE_COUNTS_SQL, CASE_SOURCES_SQL, scan_document, summary_of
from tokentrail.rules.findings import Finding
from tokentrail.rules.incidents import Incident, build_incidents
from tokentrail.rules.model import HIT_COLUMNS, Rule
from tokentrail.rules.runner import MAX_EVIDENCE, run_rules
from tokentrail.scale.lake import MANIFEST, PARTITION_COLUMN, Lake, is_url, parse_manifest, read_manifest

from .connection import SparkConnection, StepTiming, duck_type, python_value, spark_type
from .session import DEFAULT_MASTER, SparkQueryError, _pyspark, _why, build_session

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
                   hits: dict[str, list[dict[str, Any]]]) -> tuple[list[Finding], list[Incident]]:
    """Findings from Spark's rule hits, built by rules.runner.run_rules in a DuckDB that holds
    the hits and the rows they refer to, and their incidents, grouped there by
    rules.incidents.build_incidents (which reads only the findings' own tokens, pairs, links
    and evidence events), so both carry the DuckDB engine's ids."""
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
        _stage(duck, "links", spark.table("links").join(
            keys_df.withColumnRenamed("token_key", "child_key"), "child_key", "left_semi"))
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
        findings = run_rules(duck, staged)
        return findings, build_incidents(duck, findings)
    finally:
        duck.close()


def case_summary(conn: SparkConnection) -> dict[str, Any]:
    """results.case_summary, computed on Spark."""
    row = conn.spark.sql(CASE_COUNTS_SQL).collect()[0]
    return summary_of([python_value(v) for v in row], conn.spark.sql(CASE_SOURCES_SQL).collect())


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
        findings, incidents = build_findings(conn, rules, hits)
        payload = scan_document(case_summary(conn), findings, incidents)
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
    return json_bytes(scan.payload, indent=True)
