"""`tokentrail export --parquet`: a case as a Parquet lake, and `--db DIR` reading it in place."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from conftest import REPO

from tokentrail import Case
from tokentrail.case.store import SCHEMA_VERSION
from tokentrail.cli import main
from tokentrail.scale.lake import MANIFEST, is_lake, open_lake

SAMPLE = REPO / "sample-logs"
TABLES = ("events", "tokens", "token_holders", "links", "findings", "sources", "rejects")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    """The sample logs ingested into a case file, scanned, exported; the case's row counts."""
    work = tmp_path_factory.mktemp("lake")
    db, lake = work / "case.duckdb", work / "lake"
    assert run("ingest", str(SAMPLE), "--db", str(db), "-q").exit_code == 0
    r = run("export", "--parquet", str(lake), "--db", str(db))
    assert r.exit_code == 0, r.output
    assert "events: " in r.stderr and MANIFEST in r.stderr
    with Case(db, read_only=True) as case:
        counts = {t: case.con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}
    return db, lake, counts


def test_export_writes_every_table_partitioned_by_day_with_the_schema_version(exported):
    db, lake, counts = exported
    manifest = json.loads((lake / MANIFEST).read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["tokentrail_version"]
    assert {t: manifest["tables"][t]["rows"] for t in TABLES} == counts
    assert counts["events"] > 100 and counts["findings"] > 0
    # events by UTC day and by log format, Hive style; derived tables by day
    formats = {p.name for p in (lake / "events" / "day=2026-11-02").iterdir()}
    assert {"format=envoy", "format=cloudtrail", "format=okta", "format=keycloak",
            "format=k8s-audit", "format=tokentrail"} <= formats
    assert list((lake / "events" / "day=2026-11-02" / "format=envoy").glob("*.parquet"))
    for table in ("tokens", "token_holders", "links", "findings"):
        assert [p.name for p in (lake / table).iterdir()] == ["day=2026-11-02"], table
    assert manifest["tables"]["events"]["partition_by"] == ["day", "format"]


def test_query_reads_the_lake_in_place_with_the_case_counts_and_views(exported):
    db, lake, counts = exported
    for table in TABLES:
        r = run("query", f"select count(*) as n from {table}", "--db", str(lake), "--format", "json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == [{"n": counts[table]}], table
    # the responder views work over the lake, with the same answers as on the case
    sql = "select token_key, holders, holder_ids from v_token_holders where holders > 1 order by 1"
    on_lake = run("query", sql, "--db", str(lake), "--format", "json").stdout
    on_case = run("query", sql, "--db", str(db), "--format", "json").stdout
    assert json.loads(on_lake) == json.loads(on_case) and json.loads(on_lake)
    ev = "select * from events order by event_id"
    assert run("query", ev, "--db", str(lake), "--format", "json").stdout == \
        run("query", ev, "--db", str(db), "--format", "json").stdout


def test_the_lake_is_read_only(exported):
    _, lake, counts = exported
    before = sorted((p, p.stat().st_size) for p in lake.rglob("*"))
    for sql in ("drop view events", "create table x as select 1"):
        r = run("query", sql, "--db", str(lake))
        assert r.exit_code == 2 and "read-only" in r.stderr, (sql, r.output)
    assert run("query", "delete from events", "--db", str(lake)).exit_code == 2
    r = run("ingest", str(SAMPLE / "okta-system-log.json"), "--db", str(lake))
    assert r.exit_code == 2 and "read-only" in r.output
    assert sorted((p, p.stat().st_size) for p in lake.rglob("*")) == before
    r = run("query", "select count(*) as n from events", "--db", str(lake), "--format", "json")
    assert json.loads(r.stdout) == [{"n": counts["events"]}]


def test_scan_and_tokens_on_the_lake_match_the_case(exported):
    db, lake, _ = exported
    on_case = json.loads(run("scan", "--db", str(db), "--format", "json", "--fail-on", "none").stdout)
    on_lake = json.loads(run("scan", "--lake", str(lake), "--format", "json", "--fail-on", "none").stdout)
    assert [f["id"] for f in on_lake["findings"]] == [f["id"] for f in on_case["findings"]]
    assert on_lake == on_case
    tokens_lake = json.loads(run("tokens", "--db", str(lake), "--format", "json").stdout)
    tokens_case = json.loads(run("tokens", "--db", str(db), "--format", "json").stdout)
    assert tokens_lake == tokens_case
    r = run("trace", "ASIALN5YQ6SWF73864KW", "--db", str(lake), "--format", "json")
    assert r.exit_code == 0 and "ASIALN5YQ6SWF73864KW" in r.stdout


def test_a_lake_from_a_newer_tokentrail_is_refused_clearly(exported, tmp_path):
    _, lake, _ = exported
    newer = tmp_path / "newer"
    newer.mkdir()
    manifest = json.loads((lake / MANIFEST).read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (newer / MANIFEST).write_bytes(orjson.dumps(manifest))
    r = run("query", "select 1", "--db", str(newer))
    assert r.exit_code == 3
    assert f"schema version {SCHEMA_VERSION + 1}" in r.stderr and "upgrade tokentrail" in r.stderr
    assert "Traceback" not in r.output


def test_a_folder_that_is_not_a_lake_and_unreadable_urls_fail_clearly(tmp_path):
    plain = tmp_path / "not-a-lake"
    plain.mkdir()
    r = run("query", "select 1", "--db", str(plain))
    assert r.exit_code == 3 and "not a tokentrail lake" in r.stderr
    # no network to DuckDB's extension repository here, or no such bucket: a message, no traceback
    r = run("query", "select 1", "--db", "s3://tokentrail-no-such-bucket/case")
    assert r.exit_code == 3 and r.stderr.startswith("error: cannot read") and "Traceback" not in r.output
    r = run("query", "select 1", "--db", "ftp://example.invalid/case")
    assert r.exit_code == 2 and "cannot read ftp:// URLs" in r.stderr
    assert is_lake("s3://bucket/case") and not is_lake(str(tmp_path / "x.duckdb"))


def test_export_refuses_to_overwrite_unless_asked_and_never_a_foreign_folder(exported, tmp_path):
    db, _, counts = exported
    lake = tmp_path / "lake"
    assert run("export", "--parquet", str(lake), "--db", str(db), "-q").exit_code == 0
    r = run("export", "--parquet", str(lake), "--db", str(db), "-q")
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert run("export", "--parquet", str(lake), "--db", str(db), "-q", "--overwrite").exit_code == 0
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    r = run("export", "--parquet", str(foreign), "--db", str(db), "-q", "--overwrite")
    assert r.exit_code == 2 and "not a tokentrail lake" in r.stderr
    assert (foreign / "cat.jpg").exists()
    with open_lake(lake) as case:
        assert case.query("select count(*) from events")[1] == [(counts["events"],)]
