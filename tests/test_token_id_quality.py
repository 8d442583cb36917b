"""Token ids that do not name one credential (issue 17 item 4): no "stolen" from them, a
data-quality note (rule TT018, severity info; table data_quality) instead.

- One placeholder Microsoft Graph SignInActivityId across three tenants (three users, three
  addresses): a token id is unique only per issuer (RFC 7519 section 4.1.7), so the records
  are three tokens. Fixture: tests/fixtures/graph-activity/placeholder-tenants.jsonl (README).
- AWS's documented example credentials in a CloudTrail trail (IAM user guide, "Manage access
  keys": AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; the SDKs' STS
  examples): test data. Fixture: tests/fixtures/cloudtrail/example-keys.json (README).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

FIX = Path(__file__).parent / "fixtures"
PLACEHOLDER = "AAAAAAAAAAAAAAAAAAAAAA"


def _scan(paths: list[Path]) -> tuple[Case, list]:
    case = Case()
    ingest(case, [str(p) for p in paths])
    return case, analyse(case.con).findings


def test_one_id_across_three_tenants_is_three_tokens_and_a_note() -> None:
    case, findings = _scan([FIX / "graph-activity" / "placeholder-tenants.jsonl"])
    with case:
        rows = case.query("SELECT token_key, holder_id, classification FROM token_holders "
                          "ORDER BY token_key")[1]
        tenants = sorted(json.loads(line)["properties"]["tenantId"] for line in
                         (FIX / "graph-activity" / "placeholder-tenants.jsonl").read_text().splitlines())
        assert [r[0] for r in rows] == [f"{PLACEHOLDER}@{t}" for t in tenants]
        assert all(r[2] != "stolen" for r in rows)
    assert [(f.rule, f.severity, f.token["key"]) for f in findings] == [
        ("TT018", "info", PLACEHOLDER)]
    assert "one token id under 3 issuers with 3 subjects" in findings[0].reasons[0]


def test_one_token_seen_by_its_idp_and_graph_is_not_split() -> None:
    """Precision: the Entra sign-in (issuer = tenant id) and Graph activity of the same tenant
    stay one token per uti, and no note is raised."""
    case, findings = _scan([FIX / "entra-signin", FIX / "graph-activity" / "diagnostic-storage.jsonl",
                            FIX / "graph-activity" / "diagnostic-eventhub.json"])
    with case:
        assert case.query("SELECT count(*) FROM events WHERE contains(token_key, '@')")[1] == [(0,)]
        assert case.query("SELECT count(*) FROM data_quality")[1] == [(0,)]
    assert not [f for f in findings if f.rule == "TT018"]


def test_aws_example_keys_are_test_data_not_stolen() -> None:
    case, findings = _scan([FIX / "cloudtrail" / "example-keys.json"])
    with case:
        assert case.query("SELECT count(*) FROM tokens WHERE token_id LIKE '%EXAMPLE'")[1] == [(0,)]
        assert case.query("SELECT count(*) FROM token_holders WHERE classification = 'stolen'")[1] == [(0,)]
        # the events are kept, with their key ids, for the responder to see
        assert case.query("SELECT count(*) FROM events WHERE token_id IN "
                          "('AKIAIOSFODNN7EXAMPLE', 'ASIAIOSFODNN7EXAMPLE')")[1] == [(5,)]
    assert sorted((f.rule, f.severity, f.token["key"]) for f in findings) == [
        ("TT018", "info", "AKIAIOSFODNN7EXAMPLE"), ("TT018", "info", "ASIAIOSFODNN7EXAMPLE")]
    assert all(f.classification != "stolen" for f in findings)


def test_the_example_secret_logged_raw_is_set_aside(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    path = tmp_path / "app.jsonl"
    path.write_text("".join(json.dumps({"ts": f"2026-01-01T00:0{i}:00Z", "kind": "use",
                                        "token": secret, "src_ip": ip, "resource": "api"}) + "\n"
                            for i, ip in enumerate(["192.0.2.1", "198.51.100.2"])))
    with Case() as case:
        ingest(case, [str(path)], format_name="tokentrail")
        found = analyse(case.con).findings
        assert case.query("SELECT count(*) FROM tokens")[1] == [(0,)]
        text = str(case.con.execute("SELECT * FROM data_quality").fetchall())
    assert [f.rule for f in found] == ["TT018"]
    assert secret not in text


def test_a_second_analysis_gives_the_same_keys_and_notes() -> None:
    case, first = _scan([FIX / "graph-activity" / "placeholder-tenants.jsonl",
                         FIX / "cloudtrail" / "example-keys.json"])
    with case:
        keys = case.query("SELECT token_key FROM events ORDER BY event_id")[1]
        second = analyse(case.con).findings
        assert case.query("SELECT token_key FROM events ORDER BY event_id")[1] == keys
    assert [f.id for f in first] == [f.id for f in second]
