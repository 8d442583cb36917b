"""The `entra-signin` format: Microsoft Entra ID sign-in logs from the Graph API and from Azure
Monitor diagnostic settings (Event Hub and storage-account exports).

Fixtures tests/fixtures/entra-signin/ are synthetic, written to the documented signIn schema
(README there): an interactive Azure CLI sign-in, a refresh from another address in the same
session, a service principal with a certificate, a managed identity, an agent identity,
failures, a record of another category and a cut-short line.
"""

from __future__ import annotations

import base64
import json
import tomllib
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
from tokentrail.case.ingest import IngestReport, ingest
from tokentrail.sources.registry import FORMATS_DIR

DIR = FIXTURES / "entra-signin"
PAGE = DIR / "graph-api-signins.json"
STORAGE = DIR / "diagnostic-storage.jsonl"
EVENTHUB = DIR / "diagnostic-eventhub.json"

MI_APP = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
AGENT_APP = "6d8f0a2c-4e6b-4d8f-a0c2-e4f6a8b0c2d4"
KEY_VAULT = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"


def uti_of(request_id: str) -> str:
    """A sign-in id as the token's uti: the GUID's .NET byte order, base64url, no padding."""
    return base64.urlsafe_b64encode(uuid.UUID(request_id).bytes_le).rstrip(b"=").decode()


def _page() -> list[dict[str, Any]]:
    return list(json.loads(PAGE.read_text())["value"])


def _storage(line: int) -> dict[str, Any]:
    return dict(json.loads(STORAGE.read_text().splitlines()[line - 1]))


def _eventhub() -> list[dict[str, Any]]:
    return list(json.loads(EVENTHUB.read_text())["records"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Case, IngestReport]]:
    """The three fixtures, plus the Graph API objects saved as a plain array and as JSON
    Lines, in one in-memory case, ingested once for the read-only tests."""
    tmp = tmp_path_factory.mktemp("entra")
    array = tmp / "signins-array.json"
    array.write_text(json.dumps(_page()))
    lines = write_jsonl(tmp / "signins.jsonl", _page())
    c = Case()
    report = ingest(c, [str(PAGE), str(STORAGE), str(EVENTHUB), str(array), str(lines)])
    assert [f.status for f in report.files] == ["ingested"] * 5
    yield c, report
    c.close()


@pytest.fixture(scope="module")
def case(loaded: tuple[Case, IngestReport]) -> Case:
    return loaded[0]


# --------------------------------------------------------------------------- sniffing

def test_every_envelope_is_sniffed_as_entra_signin(loaded: tuple[Case, IngestReport]) -> None:
    report = loaded[1]
    assert [(f.format, f.container) for f in report.files] == [
        ("entra-signin", "wrapper"), ("entra-signin", "lines"), ("entra-signin", "wrapper"),
        ("entra-signin", "array"), ("entra-signin", "lines")]
    assert [(f.events, f.rejects) for f in report.files] == [
        (3, 0), (2, 2), (3, 0), (3, 0), (3, 0)]


def test_sniffing_is_specific() -> None:
    for path in (PAGE, STORAGE, EVENTHUB):
        assert _sniff(path) == "entra-signin", path
    others = [p for p in sorted(FIXTURES.rglob("*")) + sorted((REPO / "sample-logs").glob("*"))
              if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".gz")
              and p.parent.name not in OURS]
    assert len(others) > 10
    for path in others:
        assert _sniff(path) not in OURS, path


def test_properties_structure_mirrors_the_signin_object() -> None:
    # Columns read coalesce(r.properties.X, r.X): both shapes must declare the same fields.
    record = tomllib.loads((FORMATS_DIR / "entra-signin.toml").read_text())["record"]
    properties = record.pop("properties")
    envelope_only = {"time", "category", "resultType", "resultDescription",
                     "callerIpAddress"}
    assert properties == {k: v for k, v in record.items() if k not in envelope_only}


# --------------------------------------------------------------------------- field mapping

def test_interactive_sign_in_issues_a_token_to_the_caller(case: Case) -> None:
    src = _storage(2)["properties"]
    assert src["uniqueTokenIdentifier"] == uti_of(src["id"])  # the fixture's own claim
    e = events_by_line(case, STORAGE)[2]
    assert (e["kind"], e["outcome"], e["error"]) == ("issue", "success", None)
    assert e["token_key"] == e["token_id"] == "JAg_0osSM0-MXH_QpqOkUA"
    assert e["ts"].isoformat() == "2026-03-10T08:02:11.437281+00:00" == e["iat"].isoformat()
    assert (e["issuer"], e["subject"], e["client_id"]) == (TENANT, ALICE, AZURE_CLI)
    assert (e["audience"], e["resource"]) == ([GRAPH], "Microsoft Graph")
    assert (e["session_id"], e["request_id"], e["host"]) == (
        SESSION, "d23f0824-128b-4f33-8c5c-7fd0a6a3a450", DEVICE)
    # A public client (clientCredentialType none): only the network says who got the token.
    assert (e["src_ip"], e["holder_id"], e["holder_tier"]) == (
        "203.0.113.24", "ip:203.0.113.24/edge", "network")
    assert e["user_agent"].startswith("Mozilla/5.0 (Windows NT 10.0")
    x = e["extra"]
    assert x["category"] == "SignInLogs" and x["is_interactive"] is True
    assert x["sign_in_event_types"] == ["interactiveUser"]
    assert x["user_principal_name"] == "alice@contoso.example"
    assert (x["session_binding"], x["session_binding_code"]) == ("unbound", 1008)
    assert (x["device_name"], x["device_trust_type"], x["country"]) == (
        "LAPTOP-ALICE07", "Azure AD joined", "FR")
    assert x["client_credential_type"] == "none" and x["incoming_token_type"] == "none"


def test_refresh_in_the_same_session_is_a_refresh_without_parent(case: Case) -> None:
    e = events_by_line(case, EVENTHUB)[1]
    assert (e["kind"], e["outcome"]) == ("refresh", "success")
    assert e["token_key"] == uti_of(_eventhub()[0]["properties"]["id"]) == "VSDdTA2Tr06U9HM_Pn0b-w"
    assert e["parent_token_key"] is None  # the refresh token presented is not named
    assert e["session_id"] == SESSION and e["client_id"] == AZURE_CLI
    assert e["holder_id"] == "ip:192.0.2.80/python-requests"
    assert e["extra"]["incoming_token_type"] == "refreshToken"
    assert e["extra"]["category"] == "NonInteractiveUserSignInLogs"
    # Granted scopes from authenticationProcessingDetails "Oauth Scope Info".
    assert e["scopes"] == ["AuditLog.Read.All", "Directory.AccessAsUser.All", "email",
                           "Group.ReadWrite.All", "openid", "profile", "User.ReadWrite.All"]


def test_service_principal_managed_identity_and_agent_are_the_client(case: Case) -> None:
    sp = events_by_line(case, PAGE)[1]
    assert (sp["kind"], sp["outcome"]) == ("issue", "success")
    assert (sp["holder_id"], sp["holder_tier"]) == (f"client:{REPORTING_APP}", "workload")
    assert sp["src_ip"] == "203.0.113.140"  # still kept: the address the client used
    assert (sp["subject"], sp["client_id"], sp["user_agent"]) == (REPORTING_SP, REPORTING_APP, None)
    x = sp["extra"]
    assert x["client_credential_type"] == "clientAssertion"
    assert x["credential_key_id"] == "5f6a7b8c-9d0e-4f1a-b2c3-d4e5f6a7b8c9"
    assert x["credential_thumbprint"] == "9F3C1E55A0B27D4C86E1F0A3B5C7D9E1F2A4B6C8"
    assert x["sign_in_event_types"] == ["servicePrincipal"]

    mi = events_by_line(case, STORAGE)[1]
    assert (mi["holder_id"], mi["holder_tier"]) == (f"client:{MI_APP}", "workload")
    assert mi["src_ip"] is None  # managed identity sign-ins log ipAddress ""
    assert (mi["audience"], mi["resource"]) == ([KEY_VAULT], "Azure Key Vault")
    assert mi["extra"]["msi_type"] == "systemAssigned"
    assert mi["extra"]["msi_resource"].endswith("/virtualMachines/vm-batch-01")

    agent = events_by_line(case, EVENTHUB)[2]
    assert agent["holder_id"] == f"client:{AGENT_APP}"
    assert agent["agent"] is None  # the IdP's record, not the agent's own telemetry
    x = agent["extra"]
    assert (x["agent_type"], x["agent_parent_app_id"]) == (
        "agenticAppInstance", "2b4d6f8a-0c2e-4a6c-8e0a-2c4e6a8c0e2a")
    assert x["client_credential_type"] == "federatedIdentityCredential"
    assert x["federated_credential_id"] == "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8"


def test_both_uniquetokenidentifier_encodings_give_one_token_id(case: Case) -> None:
    src = _page()[0]
    # Older exports: base64 of the request id's text (48 characters).
    assert base64.b64decode(src["uniqueTokenIdentifier"]).decode() == src["id"]
    e = events_by_line(case, PAGE)[1]
    assert e["token_id"] == uti_of(src["id"]) == "zQXuVwngx0K-v_IGhnNHIQ"


def test_failed_sign_ins_issue_no_token(case: Case) -> None:
    page = events_by_line(case, PAGE)
    secret = page[2]  # the app presented a wrong client secret
    assert (secret["kind"], secret["outcome"], secret["token_key"]) == ("deny", "failure", None)
    assert secret["error"].startswith("7000215: Invalid client secret provided.")
    assert secret["holder_id"] == "ip:198.51.100.200"  # it did not prove itself: no client:
    bob = page[3]
    assert (bob["kind"], bob["outcome"], bob["token_key"]) == ("login", "failure", None)
    assert bob["error"] == ("50126: Error validating credentials due to invalid username or "
                            "password.")
    assert bob["extra"]["error_code"] == 50126
    refused = events_by_line(case, EVENTHUB)[3]  # refresh token refused
    assert (refused["kind"], refused["outcome"], refused["token_key"]) == (
        "deny", "failure", None)
    assert refused["error"].startswith("70043: The refresh token has expired")
    assert refused["iat"] is None
    failed_utis = [_page()[1]["uniqueTokenIdentifier"], _page()[2]["uniqueTokenIdentifier"],
                   _eventhub()[2]["properties"]["uniqueTokenIdentifier"]]
    tokens = {r[0] for r in case.query(
        "SELECT DISTINCT token_key FROM events WHERE token_key IS NOT NULL")[1]}
    assert len(tokens) == 5 and not tokens & set(failed_utis)


def test_rejects_name_the_line_and_the_reason(case: Case) -> None:
    rows = case.query(
        "SELECT r.line, r.reason FROM rejects r JOIN sources s USING (source_id) "
        "WHERE s.path = ? ORDER BY r.line", [str(STORAGE)])[1]
    assert rows == [(3, "diagnostic record of another category: not a sign-in log"),
                    (4, "invalid JSON")]


# --------------------------------------------------------------------------- secrets

def test_no_raw_token_from_free_text_reaches_the_case(tmp_path: Path) -> None:
    jwt = make_jwt({"aud": "https://graph.microsoft.com", "uti": "planted", "oid": ALICE})
    refresh = "0.ARoA" + "Zm9vYmFyLXJlZnJlc2gtdG9rZW4tcGxhbnRlZA" * 3  # opaque, Entra-like
    rec = _storage(2)
    rec["properties"]["status"] = {
        "errorCode": 50089, "failureReason": f"Flow token expired: assertion {jwt}",
        "additionalDetails": f"client sent refresh_token={refresh} in the body"}
    rec["properties"]["userAgent"] = f"curl/8.5.0 Bearer {jwt}"
    rec["properties"]["deviceDetail"]["displayName"] = jwt
    broken = json.dumps(rec)[:-40] + f' "refresh_token": "{refresh}", "x": {jwt}'
    log = write_jsonl(tmp_path / "PT1H.jsonl", [rec, broken])
    db = tmp_path / "case.duckdb"
    with Case(db) as c:
        report = ingest(c, [str(log)])
        assert (report.files[0].format, report.events, report.rejects) == ("entra-signin", 1, 1)
        text = case_text(c)
        e = events_by_line(c, log)[1]
        assert e["kind"] == "login" and e["error"].startswith("50089: Flow token expired")
        assert e["holder_id"] == "ip:203.0.113.24/curl"
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("case.duckdb*"))
    for secret in (jwt, refresh, jwt.split(".")[1]):
        assert secret not in text
        assert secret[:24].encode() not in blob


def test_a_graph_page_with_odata_keys_first_is_read(tmp_path: Path) -> None:
    # What `GET /beta/auditLogs/signIns` returns: @odata.context (and a nextLink) before value.
    page = json.loads((FIXTURES / "entra-signin" / "graph-api-signins.json").read_text())
    doc = {"@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns",
           "@odata.nextLink": "https://graph.microsoft.com/beta/auditLogs/signIns?$skiptoken=x",
           "value": page["value"]}
    path = tmp_path / "signins-page.json"
    path.write_text(json.dumps(doc, indent=1))
    with Case() as c:
        report = ingest(c, [str(path)])
        f = report.files[0]
        assert (f.format, f.container) == ("entra-signin", "wrapper")
        assert f.events + f.rejects == len(page["value"]) and f.events > 0
