"""The `graph-activity` format: Microsoft Graph activity logs from Log Analytics (PascalCase)
and Azure Monitor diagnostic exports (camelCase under properties), and one story classified end
to end with the Entra sign-ins that issued the tokens.

Fixtures tests/fixtures/graph-activity/ are synthetic, written to the documented
MicrosoftGraphActivityLogs schema (README there), continuing tests/fixtures/entra-signin/.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO, case_text, events_by_line, make_jwt, write_jsonl
from conftest import sniffed_format as _sniff
from entra_story import (
    ALICE,
    AZURE_CLI,
    DEVICE,
    GRAPH,
    OURS,
    REPORTING_APP,
    REPORTING_SP,
    SESSION,
    TENANT,
)

from tokentrail import Case
from tokentrail.analyse import Analysis, analyse
from tokentrail.case.ingest import IngestReport, ingest

DIR = FIXTURES / "graph-activity"
STORAGE = DIR / "diagnostic-storage.jsonl"
EVENTHUB = DIR / "diagnostic-eventhub.json"
LOG_ANALYTICS = DIR / "log-analytics.json"
SIGNINS = FIXTURES / "entra-signin"

CLI_SCOPES = ["AuditLog.Read.All", "Directory.AccessAsUser.All", "email", "Group.ReadWrite.All",
              "openid", "profile", "User.ReadWrite.All"]

LAPTOP = "ip:203.0.113.24/python"  # alice's Azure CLI at the office
ATTACKER = "ip:198.51.100.23/python-requests"
HOME = "ip:192.0.2.80/python"
REPORTING = "ip:203.0.113.140/contoso-reporting"


def uti_of(request_id: str) -> str:
    """A sign-in id as the token's uti: the GUID's .NET byte order, base64url, no padding."""
    return base64.urlsafe_b64encode(uuid.UUID(request_id).bytes_le).rstrip(b"=").decode()


# The tokens, from the sign-in records that issued them (tests/fixtures/entra-signin).
T_OFFICE = uti_of("d23f0824-128b-4f33-8c5c-7fd0a6a3a450")  # interactive sign-in, office
T_HOME = uti_of("4cdd2055-930d-4eaf-94f4-733f3e7d1bfb")  # refreshed at home, same session
T_REPORTING = uti_of("57ee05cd-e009-42c7-bebf-f20686734721")  # service principal


def _la_rows() -> list[dict[str, Any]]:
    return list(json.loads(LOG_ANALYTICS.read_text()))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Case, IngestReport, Analysis]]:
    """Both fixture directories (and the Log Analytics rows as JSON Lines) in one case,
    ingested and analysed once with the built-in rules."""
    tmp = tmp_path_factory.mktemp("graph")
    la_lines = write_jsonl(tmp / "MicrosoftGraphActivityLogs.jsonl", _la_rows())
    c = Case()
    report = ingest(c, [str(STORAGE), str(EVENTHUB), str(LOG_ANALYTICS), str(SIGNINS)])
    extra = ingest(c, [str(la_lines)])
    assert [f.status for f in report.files + extra.files] == ["ingested"] * 7
    yield c, IngestReport(files=report.files + extra.files), analyse(c.con)
    c.close()


@pytest.fixture(scope="module")
def case(scanned: tuple[Case, IngestReport, Analysis]) -> Case:
    return scanned[0]


# --------------------------------------------------------------------------- sniffing

def test_every_envelope_is_sniffed_as_graph_activity(
        scanned: tuple[Case, IngestReport, Analysis]) -> None:
    got = {Path(f.name).name: (f.format, f.container, f.events, f.rejects)
           for f in scanned[1].files if Path(f.name).parent != SIGNINS}
    assert got == {
        "diagnostic-storage.jsonl": ("graph-activity", "lines", 5, 2),
        "diagnostic-eventhub.json": ("graph-activity", "wrapper", 3, 0),
        "log-analytics.json": ("graph-activity", "array", 4, 0),
        "MicrosoftGraphActivityLogs.jsonl": ("graph-activity", "lines", 4, 0),
    }
    assert {f.format for f in scanned[1].files if Path(f.name).parent == SIGNINS} == {
        "entra-signin"}


def test_sniffing_is_specific() -> None:
    for path in (STORAGE, EVENTHUB, LOG_ANALYTICS):
        assert _sniff(path) == "graph-activity", path
    others = [p for p in sorted(FIXTURES.rglob("*")) + sorted((REPO / "sample-logs").glob("*"))
              if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".gz")
              and p.parent.name not in OURS]
    assert len(others) > 10
    for path in others:
        assert _sniff(path) not in OURS, path


# --------------------------------------------------------------------------- field mapping

def test_diagnostic_record_maps_every_field(case: Case) -> None:
    src = json.loads(STORAGE.read_text().splitlines()[0])["properties"]
    e = events_by_line(case, STORAGE)[1]
    assert (e["kind"], e["outcome"], e["status"], e["error"]) == ("use", "success", 200, None)
    assert e["token_key"] == e["token_id"] == src["signInActivityId"] == T_OFFICE
    assert e["ts"].isoformat() == "2026-03-10T08:03:05.118044+00:00"
    assert e["iat"].isoformat() == "2026-03-10T08:02:11+00:00"  # tokenIssuedAt
    assert (e["issuer"], e["subject"], e["client_id"]) == (TENANT, ALICE, AZURE_CLI)
    assert (e["session_id"], e["host"], e["request_id"]) == (SESSION, DEVICE, src["requestId"])
    assert (e["method"], e["path"], e["resource"]) == ("GET", "/v1.0/me", GRAPH)
    assert e["scopes"] == CLI_SCOPES
    assert (e["src_ip"], e["user_agent"]) == ("203.0.113.24", src["userAgent"])
    assert (e["holder_id"], e["holder_tier"]) == (LAPTOP, "network")
    x = e["extra"]
    assert (x["client_auth_method"], x["api_version"], x["api_host"]) == (0, "v1.0", "graph.microsoft.com")
    assert x["wids"] == ["b79fbf4d-3ef9-4689-8143-76b194e85509"]
    assert x["category"] == "MicrosoftGraphActivityLogs" and x["region"] == "France Central"
    # Session and device ids under their other spelling (c_Sid / C_DeviceId).
    other = events_by_line(case, STORAGE)[4]
    assert (other["session_id"], other["host"]) == (SESSION, DEVICE)


def test_log_analytics_row_of_an_app_only_token(case: Case) -> None:
    src = _la_rows()[0]
    e = events_by_line(case, LOG_ANALYTICS)[1]
    assert (e["kind"], e["status"], e["token_key"]) == ("use", 200, T_REPORTING)
    assert (e["subject"], e["client_id"], e["scopes"]) == (REPORTING_SP, REPORTING_APP, None)
    assert e["extra"]["roles"] == ["AuditLog.Read.All", "User.Read.All"]
    assert e["extra"]["service_principal_id"] == REPORTING_SP
    assert e["issuer"] == TENANT  # AadTenantId, not the workspace's TenantId
    assert e["ts"].isoformat() == "2026-03-10T07:56:12.331004+00:00"
    assert e["path"] == "/v1.0/auditLogs/signIns" and e["extra"]["query_dropped"] is True
    # ClientAuthMethod 2 says how the app got the token (a certificate), from the token's
    # claims: it is no evidence of who sent this request, so the holder is the network.
    assert e["extra"]["client_auth_method"] == 2 == int(src["ClientAuthMethod"])
    assert (e["holder_id"], e["holder_tier"]) == (REPORTING, "network")
    # The same rows as JSON Lines.
    path = case.query("SELECT path FROM sources "
                      "WHERE path LIKE '%/MicrosoftGraphActivityLogs.jsonl'")[1][0][0]
    lines = events_by_line(case, path)
    assert [lines[i]["token_key"] for i in (1, 2, 3, 4)] == [T_REPORTING] * 2 + [T_HOME] * 2


def test_refused_and_failed_requests(case: Case) -> None:
    laptop = events_by_line(case, STORAGE)
    throttled, retried = laptop[2], laptop[3]
    assert (throttled["kind"], throttled["outcome"], throttled["error"]) == ("use", "failure", "HTTP 429")
    assert (retried["kind"], retried["outcome"]) == ("use", "success")
    assert throttled["extra"]["client_request_id"] == retried["extra"]["client_request_id"]
    expired = laptop[6]
    assert (expired["kind"], expired["outcome"], expired["status"]) == ("deny", "failure", 401)
    forbidden = events_by_line(case, EVENTHUB)[2]
    assert (forbidden["kind"], forbidden["status"], forbidden["holder_id"]) == (
        "deny", 403, ATTACKER)


def test_both_signinactivityid_encodings_join_the_sign_in(case: Case) -> None:
    rows = _la_rows()
    assert rows[2]["SignInActivityId"].endswith("==") and "/" in rows[2]["SignInActivityId"]
    la = events_by_line(case, LOG_ANALYTICS)
    assert la[3]["token_key"] == la[4]["token_key"] == T_HOME
    signin = events_by_line(case, SIGNINS / "diagnostic-eventhub.json")[1]
    assert (signin["kind"], signin["token_key"]) == ("refresh", T_HOME)
    # The service principal's sign-in logged the older encoding (base64 of the id's text).
    page = events_by_line(case, SIGNINS / "graph-api-signins.json")[1]
    assert page["token_key"] == la[1]["token_key"] == T_REPORTING


def test_query_strings_are_not_stored(case: Case) -> None:
    text = case_text(case)
    assert "$select=displayName" not in text and "$top=999" not in text
    assert "passwordCredentials" not in text
    assert events_by_line(case, EVENTHUB)[3]["path"] == "/beta/applications"


def test_rejects_name_the_line_and_the_reason(case: Case) -> None:
    rows = case.query(
        "SELECT r.line, r.reason FROM rejects r JOIN sources s USING (source_id) "
        "WHERE s.path = ? ORDER BY r.line", [str(STORAGE)])[1]
    assert rows == [(5, "invalid JSON"), (7, "no usable timestamp")]


# --------------------------------------------------------------------------- end to end

def test_token_stolen_from_the_laptop_is_the_only_thing_flagged(
        scanned: tuple[Case, IngestReport, Analysis]) -> None:
    case, _, analysis = scanned
    pairs = {(r[0], r[1]): (r[2], r[3]) for r in case.query(
        "SELECT token_key, holder_id, classification, confidence FROM token_holders")[1]}
    assert pairs == {
        # alice's Azure CLI at the office, including the throttled request, its retry and a
        # refused call after expiry
        (T_OFFICE, LAPTOP): ("owner", 0.7),
        # the same access token replayed from another network by another client
        (T_OFFICE, ATTACKER): ("stolen", 0.75),
        # same session, new address: but a new token, refreshed from there
        (T_HOME, HOME): ("owner", 0.7),
        # the service principal from its server
        (T_REPORTING, REPORTING): ("owner", 0.7),
    }
    reasons = case.query("SELECT reasons FROM token_holders WHERE holder_id = ?", [ATTACKER])[1][0][0]
    assert reasons[0].startswith(f"unknown external holder {ATTACKER} presented a bearer token")
    owner = case.query("SELECT reasons FROM token_holders WHERE holder_id = ?", [LAPTOP])[1][0][0]
    assert owner[0] == "presented from the address that obtained it (203.0.113.24)"

    findings = [(f.rule, f.token["key"], f.holder["id"], f.severity, f.classification)
                for f in analysis.findings]
    assert findings == [("TT004", T_OFFICE, ATTACKER, "high", "stolen")]
    stolen = analysis.findings[0]
    assert [(Path(ev["file"]).name, ev["line"]) for ev in stolen.evidence] == [
        ("diagnostic-eventhub.json", 1), ("diagnostic-eventhub.json", 2),
        ("diagnostic-eventhub.json", 3)]
    assert stolen.token["client_id"] == AZURE_CLI and stolen.token["audience"] == [GRAPH]


# --------------------------------------------------------------------------- secrets

def test_no_raw_token_from_the_request_reaches_the_case(tmp_path: Path) -> None:
    jwt = make_jwt({"aud": "https://graph.microsoft.com", "uti": "planted", "oid": ALICE})
    refresh = "0.ARoA" + "Zm9vYmFyLXJlZnJlc2gtdG9rZW4tcGxhbnRlZA" * 3  # opaque, Entra-like
    rec = json.loads(STORAGE.read_text().splitlines()[0])
    p = rec["properties"]
    p["requestUri"] = (f"https://graph.microsoft.com/v1.0/users/{jwt}/photo"
                       f"?access_token={jwt}&refresh_token={refresh}")
    p["userAgent"] = f"python-requests/2.32.3 Authorization: Bearer {jwt}"
    broken = json.dumps(rec)[:-60] + f' "refresh_token": "{refresh}", "x": {jwt}'
    # and an envelope whose only timestamp is in the US form some exports write
    us_time = json.loads(STORAGE.read_text().splitlines()[5])
    del us_time["properties"]["timeGenerated"]
    us_time["time"] = "3/10/2026 9:41:20 AM"
    log = write_jsonl(tmp_path / "PT1H.jsonl", [rec, broken, us_time])
    db = tmp_path / "case.duckdb"
    with Case(db) as c:
        report = ingest(c, [str(log)])
        assert (report.files[0].format, report.events, report.rejects) == ("graph-activity", 2, 1)
        e = events_by_line(c, log)[1]
        assert e["path"] == "/v1.0/users/[REDACTED]/photo"
        assert e["holder_id"] == "ip:203.0.113.24/python-requests"
        assert events_by_line(c, log)[3]["ts"].isoformat() == "2026-03-10T09:41:20+00:00"
        text = case_text(c)
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("case.duckdb*"))
    for secret in (jwt, refresh, jwt.split(".")[1]):
        assert secret not in text
        assert secret[:24].encode() not in blob
