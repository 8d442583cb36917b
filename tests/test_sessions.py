"""Issue 11.2: the session view (`v_sessions`) and `tokentrail sessions`.

One row per identity-provider session with the tokens issued in it, its refresh family and
who presented them; checked against what the raw logs say (tests/fixtures/keycloak-lineage,
see its README, and the Keycloak and Okta files of sample-logs/)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, cli_ingest

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.cli import main

DIR = FIXTURES / "keycloak-lineage"
SAMPLE = FIXTURES.parent.parent / "sample-logs"
ALICE = "5f1c2a9e-8d3b-4b7a-9c61-2e0d4f8a7b13"
S1, S2, S3 = "q7Y8IQLk-8uJWuPcijrV6GeS", "Zp3mK0d9-Qw2xE7rT5yU1iO8", "Lm4nB6vC-8xZ1aS3dF5gH7jK"
AT1 = "3f9a1c2e-7b4d-4e6f-a0b1-c2d3e4f5a6b7"
AT2 = "9e8d7c6b-5a49-4827-9605-f4e3d2c1b0a9"
AT3 = "c4b3a291-8f7e-4d6c-b5a4-9382716f5e4d"
XT1 = "e1d2c3b4-a596-4877-8695-a4b3c2d1e0f9"


def _sessions(case) -> dict[str, dict]:
    cols, rows = case.query("SELECT * FROM v_sessions")
    return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}


def test_session_view_before_and_after_a_scan():
    with Case() as case:
        ingest(case, [str(DIR / "events.json")], format_name="keycloak")
        ingest(case, [str(DIR / "gateway.jsonl")], format_name="tokentrail")
        # a freshly ingested case: the view works, classifications are not known yet
        before = _sessions(case)
        assert set(before) == {S1, S2, S3}
        s1 = before[S1]
        assert s1["subjects"] == [ALICE] and s1["issuer"] == "acme"
        assert s1["tokens_issued"] == 4 and s1["token_keys"] == sorted([AT1, AT2, AT3, XT1])
        # AT2 and AT3 come from refreshes of the refresh token minted with AT1, then AT2
        assert s1["refresh_family"] == sorted([AT2, AT3]) and s1["refreshed"] == 2
        assert s1["holder_ids"] == ["client:web-portal"] and s1["uses"] == 4
        assert s1["logins"] == 1 and s1["worst_classification"] is None
        assert before[S3]["tokens_issued"] == 1 and before[S3]["refresh_family"] == []
        analyse(case.con)
        after = _sessions(case)
        assert after[S1]["worst_classification"] == "delegate"  # XT1, minted by exchange
        assert after[S1]["flagged_pairs"] is None


def test_session_view_names_a_stolen_refresh_family():
    # the refreshed token is presented from an outside address: the session's worst pair
    # is what the classifier says about that presentation, named in flagged_pairs
    gw = [json.loads(x) for x in (DIR / "gateway.jsonl").read_text().splitlines()]
    gw.append({"ts": "2026-11-02T08:20:00Z", "kind": "use", "token_id": AT3,
               "src_ip": "203.0.113.45", "user_agent": "python-requests/2.31.0",
               "resource": "profile-api", "method": "GET", "path": "/v1/me", "status": 200})
    with Case() as case, _tmp_jsonl(gw) as path:
        ingest(case, [str(DIR / "events.json")], format_name="keycloak")
        ingest(case, [path], format_name="tokentrail")
        analyse(case.con)
        s1 = _sessions(case)[S1]
        assert s1["worst_classification"] == "stolen"
        assert s1["flagged_pairs"] == [f"{AT3} ip:203.0.113.45/python-requests"]
        assert "203.0.113.0/24" in s1["networks"] and "python-requests/" in s1["devices"]
        assert _sessions(case)[S2]["worst_classification"] == "delegate"


class _tmp_jsonl:
    def __init__(self, rows):
        import tempfile
        self.f = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
        self.f.write("".join(json.dumps(r) + "\n" for r in rows))
        self.f.close()

    def __enter__(self):
        return self.f.name

    def __exit__(self, *exc):
        import os
        os.unlink(self.f.name)


KC_ISSUANCE = {"CODE_TO_TOKEN", "CLIENT_LOGIN", "REFRESH_TOKEN", "TOKEN_EXCHANGE",
               "OAUTH2_DEVICE_CODE_TO_TOKEN", "AUTHREQID_TO_TOKEN"}


def _raw_keycloak() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per sessionId, straight from the Keycloak file: the token ids its successful grants
    minted, and those minted by REFRESH_TOKEN."""
    issued: dict[str, set[str]] = defaultdict(set)
    refreshed: dict[str, set[str]] = defaultdict(set)
    for e in json.loads((SAMPLE / "keycloak-acme-events.json").read_text()):
        tid = (e.get("details") or {}).get("token_id")
        if e.get("sessionId") and tid and e["type"] in KC_ISSUANCE and not e.get("error"):
            issued[e["sessionId"]].add(tid)
            if e["type"] == "REFRESH_TOKEN":
                refreshed[e["sessionId"]].add(tid)
    return issued, refreshed


def _raw_okta() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per externalSessionId, the token ids (target[] AT./ID./RT. entries) Okta's successful
    token grants in it name, and those of refresh_token grants."""
    issued: dict[str, set[str]] = defaultdict(set)
    refreshed: dict[str, set[str]] = defaultdict(set)
    for e in json.loads((SAMPLE / "okta-system-log.json").read_text()):
        sid = (e.get("authenticationContext") or {}).get("externalSessionId")
        if not sid or sid == "unknown" or ".token.grant" not in e["eventType"]:
            continue
        if (e.get("outcome") or {}).get("result") != "SUCCESS":
            continue
        for t in e.get("target") or []:
            if t.get("type") in ("access_token", "id_token", "refresh_token"):
                issued[sid].add(t["id"])
                if e["debugContext"]["debugData"].get("grantType") == "refresh_token":
                    refreshed[sid].add(t["id"])
    return issued, refreshed


def test_sample_sessions_are_what_the_raw_logs_say():
    issued, refreshed = _raw_keycloak()
    okta, okta_refreshed = _raw_okta()
    with Case() as case:
        ingest(case, [str(SAMPLE / "keycloak-acme-events.json")], format_name="keycloak")
        ingest(case, [str(SAMPLE / "okta-system-log.json")], format_name="okta")
        got = _sessions(case)
    raw_ids = set(issued) | {
        (e.get("authenticationContext") or {}).get("externalSessionId")
        for e in json.loads((SAMPLE / "okta-system-log.json").read_text())} - {None, "unknown"}
    raw_ids |= {e["sessionId"] for e in json.loads((SAMPLE / "keycloak-acme-events.json")
                                                   .read_text()) if e.get("sessionId")}
    assert set(got) == raw_ids
    for sid, tokens in issued.items():
        assert set(got[sid]["token_keys"]) == tokens, sid
        # Keycloak logs every refresh in the session it continues
        assert set(got[sid]["refresh_family"]) == refreshed[sid], sid
    for sid, tokens in okta.items():
        assert set(got[sid]["token_keys"]) == tokens, sid
        assert set(got[sid]["refresh_family"]) == okta_refreshed[sid], sid
    # the look-alikes (issue 11.5) give the Okta sample sessions with grants and refreshes
    assert any(okta_refreshed.values()) and any(refreshed.values())


def test_sessions_command(tmp_path):
    db = str(tmp_path / "c.duckdb")
    cli_ingest(db, (DIR / "events.json", "keycloak"), (DIR / "gateway.jsonl", "tokentrail"))
    runner = CliRunner()
    r = runner.invoke(main, ["sessions", "--db", db, "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["session_id"]: row for row in json.loads(r.output)}
    assert rows[S1]["refresh_family"] == sorted([AT2, AT3])
    assert rows[S1]["worst_classification"] == "delegate"
    r = runner.invoke(main, ["sessions", "--db", db], env={"NO_COLOR": "1"})
    assert r.exit_code == 0 and S1 in r.output and "\x1b[" not in r.output
    r = runner.invoke(main, ["sessions", "--db", db, "--format", "csv"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("session_id,")


def test_session_ids_with_control_characters_are_stripped_in_the_table(tmp_path):
    events = json.loads((DIR / "events.json").read_text())
    for e in events:
        if e["sessionId"] == S3:
            e["sessionId"] = "evil\x1b]0;owned\x07-session"
    log = tmp_path / "kc.json"
    log.write_text(json.dumps(events))
    db = str(tmp_path / "c.duckdb")
    runner = CliRunner()
    r = runner.invoke(main, ["ingest", str(log), "--format", "keycloak", "--db", db, "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["sessions", "--db", db], env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output and "evil" in r.output


def test_a_case_made_before_the_view_gets_it(tmp_path):
    db = tmp_path / "old.duckdb"
    with Case(db) as case:
        ingest(case, [str(DIR / "events.json")], format_name="keycloak")
        case.con.execute("DROP VIEW v_sessions")
        case.con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Case(db) as case:
        assert S1 in _sessions(case)


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM v_sessions"])
def test_query_before_a_scan_works(tmp_path, sql):
    db = str(tmp_path / "c.duckdb")
    runner = CliRunner()
    r = runner.invoke(main, ["ingest", str(DIR / "events.json"), "--format", "keycloak", "--db", db, "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["query", sql, "--db", db, "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1].strip() == "3"


def test_a_parquet_lake_has_the_session_view_with_classifications(tmp_path):
    from tokentrail.scale.lake import export_case, open_lake

    gw = [json.loads(x) for x in (DIR / "gateway.jsonl").read_text().splitlines()]
    with Case() as case:
        ingest(case, [str(DIR / "events.json")], format_name="keycloak")
        ingest(case, [str(DIR / "gateway.jsonl")], format_name="tokentrail")
        analyse(case.con)
        want = _sessions(case)
        export_case(case, tmp_path / "lake")
    with open_lake(tmp_path / "lake") as lake:
        got = _sessions(lake)
    assert len(gw) == 5 and set(got) == set(want)
    for sid in want:
        for col in ("token_keys", "refresh_family", "holder_ids", "worst_classification"):
            assert got[sid][col] == want[sid][col], (sid, col)
