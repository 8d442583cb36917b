"""`scan`, `tokens`, `holders` and `rules` through the CLI: contracts and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from tokentrail.cli import main


def write_story(path: Path) -> Path:
    events = [
        {"ts": "2026-11-02T09:00:00Z", "kind": "issue", "token_id": "t1", "client_id": "orchestrator",
         "workload": "client:orchestrator"},
        {"ts": "2026-11-02T09:00:05Z", "kind": "use", "token_id": "t1", "client_id": "orchestrator",
         "peer_spiffe": "spiffe://acme.example/ns/agents/sa/orchestrator", "request_id": "a"},
        {"ts": "2026-11-02T09:01:00Z", "kind": "use", "token_id": "t1", "client_id": "orchestrator",
         "peer_spiffe": "spiffe://acme.example/ns/agents/sa/coder", "request_id": "b"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@pytest.fixture
def run():
    def _run(*args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return _run


def test_scan_json_follows_the_output_contract_and_fails_on_high(run, tmp_path):
    log = write_story(tmp_path / "app.jsonl")
    r = run("scan", str(log), "--format", "json")
    assert r.exit_code == 1  # TT001 is high, --fail-on defaults to high
    doc = json.loads(r.stdout)
    assert doc["tool"]["name"] == "tokentrail"
    assert {"events", "tokens", "holders", "sources", "rejects", "time_range"} <= set(doc["case"])
    f = next(x for x in doc["findings"] if x["rule"] == "TT001")
    assert set(f) >= {"id", "rule", "title", "severity", "classification", "confidence", "reasons",
                      "token", "holder", "intended_holder", "first_seen", "last_seen", "count",
                      "evidence", "attack", "owasp"}
    assert f["holder"] == {"id": "spiffe://acme.example/ns/agents/sa/coder", "tier": "spiffe"}
    assert f["token"]["key"] == "t1" and f["classification"] == "forwarded"
    assert f["evidence"][0]["file"].endswith("app.jsonl") and f["evidence"][0]["line"] == 3
    assert "T1550.001" in f["attack"]


def test_fail_on_and_stable_ids_and_baseline(run, tmp_path):
    log = write_story(tmp_path / "app.jsonl")
    assert run("scan", str(log), "--fail-on", "critical", "-q").exit_code == 0
    assert run("scan", str(log), "--fail-on", "none", "-q").exit_code == 0
    a = json.loads(run("scan", str(log), "--format", "json", "--fail-on", "none").stdout)
    b = json.loads(run("scan", str(log), "--format", "json", "--fail-on", "none").stdout)
    assert [f["id"] for f in a["findings"]] == [f["id"] for f in b["findings"]]
    base = tmp_path / "baseline.json"
    run("scan", str(log), "--write-baseline", str(base), "--fail-on", "none", "-q")
    assert set(json.loads(base.read_text())) == {f["id"] for f in a["findings"]}
    r = run("scan", str(log), "--baseline", str(base), "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["findings"] == []
    assert "suppressed by baseline" in r.stderr


def test_write_baseline_keeps_a_symlink_and_refuses_a_folder(run, tmp_path):
    log = write_story(tmp_path / "app.jsonl")
    real = tmp_path / "known.json"
    real.write_text("[]")
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    r = run("scan", str(log), "--write-baseline", str(link), "--fail-on", "none", "-q")
    assert r.exit_code == 0
    assert link.is_symlink() and os.readlink(link) == "known.json"
    assert json.loads(real.read_text()), "the link's target holds the finding ids"
    r = run("scan", str(log), "--write-baseline", str(tmp_path), "--fail-on", "none", "-q")
    assert r.exit_code == 2 and "a folder" in r.stderr and "Traceback" not in r.stderr


def test_scan_with_no_usable_events_exits_3_and_says_so(run, tmp_path):
    bad = tmp_path / "junk.jsonl"
    bad.write_text("not json\n{also not\n")
    r = run("scan", str(bad), "--log-format", "tokentrail")
    assert r.exit_code == 3 and "no usable events" in r.stderr
    assert r.stdout == ""


def test_scan_of_an_existing_case_and_csv_output(run, tmp_path):
    log = write_story(tmp_path / "app.jsonl")
    db = tmp_path / "c.duckdb"
    run("ingest", str(log), "--db", str(db), "-q")
    r = run("scan", "--db", str(db), "--format", "csv", "--fail-on", "none")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("id,severity,rule") and any(",TT001," in ln for ln in lines[1:])


def test_tokens_json_lists_holders_with_classification(run, tmp_path):
    log = write_story(tmp_path / "app.jsonl")
    db = tmp_path / "c.duckdb"
    run("ingest", str(log), "--db", str(db), "-q")
    doc = json.loads(run("tokens", "--db", str(db), "--format", "json").stdout)
    t1 = next(t for t in doc if t["key"] == "t1")
    by_holder = {h["id"]: h for h in t1["holders"]}
    assert by_holder["spiffe://acme.example/ns/agents/sa/orchestrator"]["classification"] == "owner"
    coder = by_holder["spiffe://acme.example/ns/agents/sa/coder"]
    assert coder["classification"] == "forwarded" and coder["reasons"] and coder["count"] == 1
    assert set(coder) == {"id", "tier", "classification", "confidence", "reasons", "first_seen",
                          "last_seen", "count"}
    h = run("holders", "--db", str(db), "--format", "json")
    assert any(row["holder_id"].endswith("/sa/coder") for row in json.loads(h.stdout))


def test_rules_list_show_and_fixtures_pass(run):
    listed = json.loads(run("rules", "list", "--format", "json").stdout)
    ids = [r["id"] for r in listed]
    assert "TT001" in ids and "TT007" in ids
    assert run("rules", "show", "TT001").stdout.startswith('id = "TT001"')
    assert run("rules", "show", "NOPE").exit_code == 2
    r = run("rules", "test")
    assert r.exit_code == 0, r.stdout
    assert r.stdout.count("ok ") == len(ids)


def test_user_rule_dir_and_broken_rule(run, tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "X1.toml").write_text(
        'id = "X1"\ntitle = "any use"\nseverity = "info"\nclassification = "unknown"\n'
        'description = "every presentation"\nsql = """SELECT token_key, holder_id, first_seen, '
        'last_seen, count, event_ids, reasons FROM token_holders"""\n')
    log = write_story(tmp_path / "app.jsonl")
    r = run("scan", str(log), "--rules", str(d), "--format", "json", "--fail-on", "none")
    assert any(f["rule"] == "X1" for f in json.loads(r.stdout)["findings"])
    (d / "X2.toml").write_text('id = "X2"\ntitle = "t"\nseverity = "bad"\nclassification = "owner"\n'
                               'description = "d"\nsql = "select 1"\n')
    r = run("scan", str(log), "--rules", str(d))
    assert r.exit_code == 3 and "X2.toml" in r.stderr and "severity" in r.stderr


def test_sample_logs_scan_reports_the_incidents_and_fails_on_high(run):
    """The README's first command; the full ground truth is tests/test_sample_expected.py."""
    r = run("scan", str(REPO / "sample-logs"))
    assert r.exit_code == 1
    for rule in ("TT001", "TT002", "TT005", "TT007", "TT016"):
        assert rule in r.stdout
    assert run("scan", str(REPO / "sample-logs"), "--fail-on", "none", "-q").exit_code == 0


def test_a_policy_picked_up_from_the_working_directory_is_announced(tmp_path, monkeypatch):
    """./tokentrail.toml changes classifications; a scan that applies it says so on stderr."""
    log = REPO / "sample-logs" / "envoy-acme-gateway-access.jsonl"
    monkeypatch.chdir(tmp_path)
    quiet = CliRunner().invoke(main, ["scan", str(log), "--format", "json", "--fail-on", "none"])
    assert "tokentrail.toml" not in quiet.stderr
    (tmp_path / "tokentrail.toml").write_text('max_token_lifetime = "15m"\n')
    noted = CliRunner().invoke(main, ["scan", str(log), "--format", "json", "--fail-on", "none"])
    assert noted.exit_code == 0, noted.output
    assert "using the policy ./tokentrail.toml" in noted.stderr
    assert "using the policy" not in noted.stdout
