"""The Spark engine against the DuckDB engine on the sample logs: the same finding ids and the
same class for every (token, holder) pair. Local mode, one SparkSession for the module.

Marked `spark` (pyspark and a Java 17+ runtime; about a minute): `pytest -m "not spark"`
leaves them out. They are skipped, with the reason, where pyspark or Java is missing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import REPO

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.cli import main
from tokentrail.results import scan_payload
from tokentrail.scale.lake import export_case

SAMPLE = REPO / "sample-logs"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DuckDB engine's results on the sample logs, and the case exported as a lake."""
    lake = tmp_path_factory.mktemp("spark") / "lake"
    with Case() as case:
        ingest(case, [str(SAMPLE)])
        analysis = analyse(case.con)
        export_case(case, lake)
        pairs = set(case.con.execute(
            "SELECT token_key, holder_id, classification FROM token_holders").fetchall())
        return {"lake": lake, "payload": scan_payload(case.con, analysis.findings, analysis.incidents),
                "pairs": pairs}


TEST_CONF = {"spark.sql.shuffle.partitions": "4", "spark.sql.codegen.wholeStage": "false"}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from tokentrail.scale.spark import build_session, spark_available

    why = spark_available()
    if why:
        pytest.skip(f"Spark engine not available here: {why}")
    session = build_session("local[2]", TEST_CONF)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_scan(spark: Any, duck: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`tokentrail scan --engine spark` run once through the CLI (the module's session is
    picked up), with the engine's full result recorded on the way for the pair comparison."""
    from tokentrail.scale import spark as engine

    out = tmp_path_factory.mktemp("spark-out") / "findings.json"
    captured: dict[str, Any] = {}
    real = engine.scan_lake

    def recording(*args: Any, **kwargs: Any) -> Any:
        captured["scan"] = real(*args, **kwargs)
        return captured["scan"]

    conf = [x for k, v in TEST_CONF.items() for x in ("--spark-conf", f"{k}={v}")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "scan_lake", recording)
        r = run("scan", "--engine", "spark", "--lake", str(duck["lake"]), "--spark-master", "local[2]",
                *conf, "--format", "json", "-o", str(out))
    assert out.exists() and "scan" in captured, r.output
    return r, json.loads(out.read_text()), captured["scan"]


@pytest.mark.spark
def test_scan_engine_spark_writes_the_same_finding_ids_as_duckdb(spark_scan, duck, spark):
    r, doc, _ = spark_scan
    assert r.exit_code == 1, r.output  # high findings, --fail-on high
    want = [f["id"] for f in duck["payload"]["findings"]]
    assert want, "the sample logs hold incidents"
    assert [f["id"] for f in doc["findings"]] == want
    got = {(f["rule"], f["token"]["key"], f["holder"]["id"]) for f in doc["findings"]}
    assert got == {(f["rule"], f["token"]["key"], f["holder"]["id"]) for f in duck["payload"]["findings"]}
    n = len(duck["payload"]["incidents"])
    from tokentrail.rules import load_rules

    rules = len(load_rules())
    assert f"{len(want)} finding(s) in {n} incident(s) from {rules} rules over" in r.stderr
    assert spark.sparkContext._jsc is not None  # the module's session was used, not stopped


@pytest.mark.spark
def test_spark_and_duckdb_classify_every_token_holder_pair_alike(spark_scan, duck):
    got = {(t, h, c) for t, h, c, _ in spark_scan[2].pairs}
    assert got == duck["pairs"], (sorted(got - duck["pairs"]), sorted(duck["pairs"] - got))
    assert any(c == "stolen" for _, _, c in got) and any(c == "delegate" for _, _, c in got)


@pytest.mark.spark
def test_spark_findings_json_is_the_duckdb_json(spark_scan, duck):
    spark_doc, duck_doc = spark_scan[1], duck["payload"]
    assert spark_doc["tool"] == duck_doc["tool"] and spark_doc["case"] == duck_doc["case"]
    # Incidents too: grouped by the DuckDB engine's code over the rows the findings refer to,
    # so the same ids, members, reasons and related incidents.
    assert spark_doc["incidents"] and spark_doc["incidents"] == duck_doc["incidents"]
    for got, want in zip(spark_doc["findings"], duck_doc["findings"], strict=True):
        for key in want:  # reasons too: durations and timestamps as DuckDB writes them
            assert got[key] == want[key], (want["rule"], key)
    assert spark_doc == duck_doc


def test_scan_engine_spark_without_pyspark_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    r = run("scan", "--engine", "spark", "--lake", str(tmp_path))
    assert r.exit_code == 2
    assert "pip install 'tokentrail[spark]'" in r.stderr and "Traceback" not in r.output


def test_scan_engine_spark_needs_a_lake(tmp_path):
    r = run("scan", "--engine", "spark")
    assert r.exit_code == 2 and "--lake" in r.stderr
    r = run("scan", str(Path(tmp_path)), "--lake", str(tmp_path))
    assert r.exit_code == 2 and "no log paths" in r.stderr
