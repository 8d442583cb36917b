"""`tokentrail trace` and the notebook API over the sample case."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, fingerprint, make_jwt, write_jsonl

import tokentrail
from tokentrail.cli import main


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("trace") / "s.duckdb"
    r = CliRunner().invoke(main, ["ingest", str(REPO / "sample-logs"), "--db", str(db), "-q"])
    assert r.exit_code == 0, r.output
    return str(db)


def test_trace_by_aws_key_shows_role_chain_and_the_thief(sample_db):
    r = CliRunner().invoke(main, ["trace", "ASIALN5YQ6SWF73864KW", "--db", sample_db,
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    holders = {h["id"]: h for h in doc["tree"]["holders"]}
    assert holders["ip:203.0.113.45/aws-cli"]["classification"] == "stolen"
    assert holders["ip:10.20.3.44/aws-sdk-go-v2"]["classification"] == "owner"


def test_trace_follows_a_role_chain_from_the_child(sample_db):
    doc = json.loads(CliRunner().invoke(main, ["trace", "ASIA19TOMOWM6FK0P2A9", "--db", sample_db,
                                               "--format", "json"]).stdout)
    assert doc["ancestors"] == ["ASIADJ198QYAJXQ89G7Y"]
    assert doc["tree"]["key"] == "ASIADJ198QYAJXQ89G7Y"
    child = doc["tree"]["children"][0]
    assert child["key"] == "ASIA19TOMOWM6FK0P2A9" and child["focus"] and child["link"]["kind"] == "role-chain"


def test_trace_a_raw_token_from_stdin_is_never_echoed(tmp_path):
    token = make_jwt({"jti": "raw-trace-1", "azp": "app", "sub": "u"})
    log = write_jsonl(tmp_path / "app.jsonl", [
        {"ts": "2026-11-02T09:00:00Z", "kind": "use", "token_fp": fingerprint(token),
         "src_ip": "10.0.0.1"}])
    db = tmp_path / "c.duckdb"
    CliRunner().invoke(main, ["ingest", str(log), "--db", str(db), "-q"])
    r = CliRunner().invoke(main, ["trace", "-", "--db", str(db), "--format", "json"],
                           input=f"Bearer {token}\n")
    assert r.exit_code == 0, r.output
    assert token not in r.output and token[:20] not in r.output
    assert json.loads(r.stdout)["tree"]["fp"] == fingerprint(token)
    r = CliRunner().invoke(main, ["trace", "-", "--db", str(db)], input="not-a-known-token\n")
    assert r.exit_code == 3 and "not-a-known-token" not in r.output


def test_trace_unknown_id_exits_3(sample_db):
    r = CliRunner().invoke(main, ["trace", "no-such-token", "--db", sample_db])
    assert r.exit_code == 3 and "no token matches" in r.stderr


def test_notebook_api_gives_dataframes_and_the_same_trace(sample_db):
    with tokentrail.open_case(sample_db) as case:  # type: ignore[attr-defined]
        findings = case.findings()
        assert isinstance(findings, pd.DataFrame) and "TT005" in set(findings["rule"])
        tokens = case.tokens()
        assert "ASIALN5YQ6SWF73864KW" in set(tokens["token_key"])
        holders = case.holders()
        assert {"classification", "confidence", "reasons"} <= set(holders.columns)
        ev = case.events(token="ASIALN5YQ6SWF73864KW")
        assert len(ev) >= 4 and set(ev["token_key"]) == {"ASIALN5YQ6SWF73864KW"}
        t = case.trace("ASIALN5YQ6SWF73864KW")
    cli = json.loads(CliRunner().invoke(main, ["trace", "ASIALN5YQ6SWF73864KW", "--db", sample_db,
                                               "--format", "json"]).stdout)
    assert t == cli
