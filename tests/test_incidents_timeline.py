"""Incidents, the compact 80-column view, time windows and `tokentrail timeline`, on the
shipped sample (sample-logs/README.md, "Incidents") through the real CLI.

The expected grouping comes from EXPECTED.json's `why` texts, which name the story's incident
letter ("a: ...", "g: ..."); the code groups from evidence only and never reads that file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from tokentrail import Case
from tokentrail.analyse import Analysis, analyse
from tokentrail.case.ingest import ingest
from tokentrail.case.timeline import parse_time
from tokentrail.cli import main

SAMPLE = REPO / "sample-logs"
EXPECTED = json.loads((SAMPLE / "EXPECTED.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def analysed() -> Iterator[tuple[Case, Analysis]]:
    with Case() as case:
        ingest(case, [str(SAMPLE)])
        yield case, analyse(case.con)


@pytest.fixture(scope="module")
def case_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("story") / "acme.duckdb"
    res = CliRunner().invoke(main, ["scan", str(SAMPLE), "--db", str(db), "-q", "--fail-on", "none"])
    assert res.exit_code == 0, res.output
    return db


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_the_14_sample_findings_read_as_the_storys_11_incidents(analysed):
    _, analysis = analysed
    by_letter: dict[str, set[tuple[str, str, str]]] = {}
    for f in EXPECTED["findings"]:
        letter = f["why"].split(":", 1)[0]
        by_letter.setdefault(letter, set()).add((f["rule"], f["token_key"], f["holder_id"]))
    want = sorted(sorted(group) for group in by_letter.values())
    findings = {f.id: f for f in analysis.findings}
    got = sorted(sorted((findings[i].rule, findings[i].token["key"], findings[i].holder["id"])
                        for i in inc.findings) for inc in analysis.incidents)
    assert len(analysis.findings) == 14 and len(by_letter) == 11
    assert got == want
    # every finding names its incident, and the grouping explains itself
    assert all(f.incident in {i.id for i in analysis.incidents} for f in analysis.findings)
    g = next(i for i in analysis.incidents if set(i.rules) == {"TT006", "TT010"})
    assert any("exchanges requested by mcp-files" in r for r in g.reasons)
    ec2 = next(i for i in analysis.incidents if "ASIALN5YQ6SWF73864KW" in i.tokens)
    assert ec2.rules == ["TT004", "TT016"] and "same token ASIALN5YQ6SWF73864KW" in ec2.reasons[0]
    # the intruder's other incidents are related through the address, not merged
    assert any("same address 203.0.113.45" in r["reason"] for r in ec2.related)


def test_incident_ids_are_stable_and_carried_by_json_sarif_ocsf(case_db):
    a = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q").output)
    b = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q").output)
    assert [i["id"] for i in a["incidents"]] == [i["id"] for i in b["incidents"]]
    assert len(a["incidents"]) == 11
    assert {f["incident"] for f in a["findings"]} == {i["id"] for i in a["incidents"]}
    sarif = json.loads(run("scan", "--db", str(case_db), "--format", "sarif", "-q",
                           "--sarif-root", str(SAMPLE)).output)
    (srun,) = sarif["runs"]
    assert {r["properties"]["incident"] for r in srun["results"]} == {i["id"] for i in a["incidents"]}
    # every built-in rule is listed, fired or not; URIs relative to --sarif-root
    assert len(srun["tool"]["driver"]["rules"]) == 18
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"]
            for r in srun["results"] for loc in r.get("locations", [])}
    assert "envoy-acme-gateway-access.jsonl" in uris and not any("/" in u for u in uris)
    ocsf = json.loads(run("scan", "--db", str(case_db), "--format", "ocsf", "-q").output)
    assert {o["unmapped"]["tokentrail"]["incident"] for o in ocsf} == {i["id"] for i in a["incidents"]}


def test_table_fits_80_columns_two_lines_a_finding_and_leads_with_incidents(case_db):
    res = run("scan", "--db", str(case_db), "-q", env={"COLUMNS": "80"})
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("11 incident(s) from 14 finding(s)")
    assert "\x1b[" not in res.output  # piped: no colour
    rule_lines = [n for n, line in enumerate(lines) if re.match(r"^  \S+\s+TT0\d\d ", line)]
    assert len(rule_lines) == 14
    for n in rule_lines:  # the line after a finding is its title, then a new finding or block
        assert lines[n + 1].startswith("    ") and not re.match(r"^  \S+\s+TT0\d\d ", lines[n + 1])
        assert n + 2 >= len(lines) or not lines[n + 2].startswith("    ")
    incident_heads = [line for line in lines if line.startswith("TTI-")]
    assert len(incident_heads) == 11 and "CRITICAL" in incident_heads[0]
    wide = run("scan", "--db", str(case_db), "-q", "--wide", env={"COLUMNS": "200"}).output
    assert "incident" in wide and "TTI-" in wide and "classification" in wide


def test_scan_time_window_keeps_findings_active_in_it(case_db):
    doc = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q",
                         "--since", "2026-11-02T09:50:00Z").output)
    assert {f["rule"] for f in doc["findings"]} == {"TT004", "TT007", "TT008"}
    assert all(f["last_seen"] >= "2026-11-02T09:50:00" for f in doc["findings"])
    assert {f["incident"] for f in doc["findings"]} == {i["id"] for i in doc["incidents"]}
    # relative: back from the latest event (09:57:12 logout), not from the wall clock
    rel = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q",
                         "--since", "-7m").output)
    assert [f["id"] for f in rel["findings"]] == [f["id"] for f in doc["findings"]]
    bad = run("scan", "--db", str(case_db), "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_parse_time_absolute_and_relative():
    anchor = parse_time("2026-11-02T10:00:00Z", None)
    assert parse_time("-2h", anchor).isoformat() == "2026-11-02T08:00:00+00:00"
    assert parse_time("30m", anchor).isoformat() == "2026-11-02T09:30:00+00:00"
    assert parse_time("1d", anchor).isoformat() == "2026-11-01T10:00:00+00:00"
    assert parse_time("2026-11-02 09:30", None).isoformat() == "2026-11-02T09:30:00+00:00"


def test_timeline_pivots_windows_and_formats(case_db):
    res = run("timeline", "--db", str(case_db), "--ip", "203.0.113.45", "--format", "jsonl")
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows and all(r["src_ip"] == "203.0.113.45" for r in rows)
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    # the intruder's morning: M2 replay and bearer use, instance key, K0, then revoked P1
    assert rows[0]["ts"].startswith("2026-11-02T09:37:21") and rows[-1]["ts"] < "2026-11-02T09:58"
    assert {r["token_key"] for r in rows} == {
        "aa79c94a-6ab3-430a-ab11-57040a0365a0", "ASIALN5YQ6SWF73864KW",
        "c2e22549-7e6a-4f61-b3ba-24b4a1b6ea15", "AT.H25ZwaCnZW2NQEoAqwAbce_2kDJtqrvQThAJrfighIg"}
    win = run("timeline", "--db", str(case_db), "--ip", "203.0.113.45", "--since",
              "2026-11-02T09:47:00Z", "--until", "2026-11-02T09:49:00Z", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(win.output)))
    assert {r["token_key"] for r in table} == {"ASIALN5YQ6SWF73864KW"} and len(table) == 4
    doc = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q").output)
    ec2 = next(i for i in doc["incidents"] if "ASIALN5YQ6SWF73864KW" in i["tokens"])
    inc = run("timeline", "--db", str(case_db), "--incident", ec2["id"], "--format", "jsonl")
    kinds = [json.loads(line)["holder_id"] for line in inc.output.splitlines()]
    assert kinds and set(kinds) == {"ip:203.0.113.45/aws-cli"}
    missing = run("timeline", "--db", str(case_db), "--incident", "TTI-000000000000")
    assert missing.exit_code == 3 and "no incident" in missing.output
    table80 = run("timeline", "--db", str(case_db), env={"COLUMNS": "80"}).output.splitlines()
    assert len(table80) > 100 and max(len(line) for line in table80) <= 80


def test_timeline_output_is_safe_for_hostile_log_content(tmp_path):
    db = tmp_path / "hostile.duckdb"
    src = REPO / "tests" / "fixtures" / "export" / "awkward.jsonl"
    assert run("ingest", str(src), "--db", str(db), "-q").exit_code == 0
    out = run("timeline", "--db", str(db), "--format", "csv").output
    for row in csv.reader(io.StringIO(out)):
        assert not any(cell.startswith(("=", "+", "@")) for cell in row), row
    table = run("timeline", "--db", str(db)).output
    assert "\u202e" not in table and "\x1b" not in table


def test_baseline_entries_carry_a_reason_and_stop_suppressing_after_expiry(case_db, tmp_path):
    doc = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q").output)
    tt013 = next(f["id"] for f in doc["findings"] if f["rule"] == "TT013")
    tt007 = next(f["id"] for f in doc["findings"] if f["rule"] == "TT007")
    base = tmp_path / "accepted.json"
    base.write_text(json.dumps([
        {"id": tt013, "reason": "partner-api logging fixed, ticket SEC-12", "expires": "2999-01-01"},
        {"id": tt007, "reason": "accepted once", "expires": "2020-01-01"},
    ]))
    res = run("scan", "--db", str(case_db), "--format", "json", "--baseline", str(base))
    ids = {f["id"] for f in json.loads(res.stdout)["findings"]}
    assert tt013 not in ids and tt007 in ids and len(ids) == 13
    assert "1 suppressed by baseline" in res.stderr
    base.write_text(json.dumps([{"id": tt013, "expires": "soon"}]))
    bad = run("scan", "--db", str(case_db), "--baseline", str(base))
    assert bad.exit_code == 3 and "YYYY-MM-DD" in bad.output


def test_policy_suggest_round_trips_and_names_the_workloads_without_new_findings(case_db, tmp_path):
    from tokentrail.provenance.policy import load_policy

    out = tmp_path / "suggested.toml"  # not ./tokentrail.toml, which scan would pick up
    res = run("policy", "suggest", "--db", str(case_db), "-o", str(out))
    assert res.exit_code == 0, res.output
    text = out.read_text()
    policy = load_policy(out)  # the existing loader accepts it as written
    names = {w.name: w for w in policy.workloads}
    assert {"orchestrator", "mcp-files", "coder", "researcher"} <= set(names)
    # the alias the graph lacked: client id and SPIFFE id are one workload, with evidence
    ids = set(names["mcp-files"].identifiers)
    assert {"client:mcp-files", "spiffe://acme.example/ns/tools/sa/mcp-files"} <= ids
    assert "alias: 2 token(s) issued to client mcp-files" in text
    # nothing an incident is about is blessed: no outsider, no notebook, no jkt holder
    for bad in ("203.0.113", "notebook", "jkt:"):
        assert bad not in text
    assert all(line.startswith("#") or "#" in line or not line.strip() or "=" in line
               or line.strip() in ("[[workloads]]", "]") for line in text.splitlines())
    plain = list(csv.DictReader(io.StringIO(run(
        "holders", "--db", str(case_db), "--format", "csv").output)))
    assert not any(h["workload"] for h in plain), [(h["holder_id"], h["workload"]) for h in plain if h["workload"]]
    before = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q").output)
    after = json.loads(run("scan", "--db", str(case_db), "--format", "json", "-q",
                           "--policy", str(out)).output)
    assert {f["id"] for f in after["findings"]} == {f["id"] for f in before["findings"]}
    holders = list(csv.DictReader(io.StringIO(run(
        "holders", "--db", str(case_db), "--format", "csv", "--policy", str(out)).output)))
    workload = {h["holder_id"]: h["workload"] for h in holders}
    assert workload["spiffe://acme.example/ns/tools/sa/mcp-files"] == "mcp-files"
    assert workload["spiffe://acme.example/ns/agents/sa/orchestrator"] == "orchestrator"


def test_html_report_opens_with_incidents_and_counts_the_holders_it_lists(case_db, tmp_path):
    out = tmp_path / "r.html"
    res = run("report", "--db", str(case_db), "--html", str(out))
    assert res.exit_code == 0 and "11 incidents, 14 findings" in res.stderr
    html = out.read_text(encoding="utf-8")
    assert html.index('id="incidents"') < html.index('id="coverage"') < html.index('id="findings"')
    assert html.count('<li class="incident"') == 11
    table = html[html.index('id="holders-table"'):]
    table = table[:table.index("</table>")]
    rows = table.count("<tr>") - 1  # minus the header row
    assert f'<a href="#holders">{rows} holders</a>' in html and rows == 29  # 19 + 10 look-alike holders
    assert "<th>workload</th>" not in table  # no policy: no empty column
    assert "received it at issuance</text>" in html
    assert "TT009 · asked for it at the token endpoint: refused" in html
    late = run("report", "--db", str(case_db), "--html", str(out), "--since", "-10m")
    assert "4 incidents, 5 findings" in late.stderr
