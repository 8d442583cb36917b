"""The `gcp-audit` format: Google Cloud Audit Logs (LogEntry with an AuditLog protoPayload).

Fixture tests/fixtures/gcp-audit/audit.jsonl is synthetic, written to the documented schema
(see its README for the story and sources). Expected values are read from the fixture, not
from tokentrail's output: GCP logs no access-token id, so the test checks the credential ids
it does log (service account keys), the synthetic keys that join a minting call to its uses,
and that look-alikes (an instance group, GKE pods, CI runners minting their own tokens) are
not read as one token with many holders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES

from tokentrail import Case
from tokentrail.analyse import Analysis, analyse
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import builtin_mappings
from tokentrail.sources.sniff import PREFIX_BYTES, all_wrapper_keys, choose_format, sniff_container

FIXTURE = FIXTURES / "gcp-audit" / "audit.jsonl"
RAW_LINES = FIXTURE.read_text(encoding="utf-8").splitlines()


def _parse(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


RECORDS: dict[int, dict[str, Any] | None] = {i: _parse(ln) for i, ln in enumerate(RAW_LINES, 1)}
AUDIT = {i: r for i, r in RECORDS.items() if r and "protoPayload" in r}


def pp(line: int) -> dict[str, Any]:
    record = AUDIT[line]
    return record["protoPayload"]


def key_id(line: int) -> str:
    """The key id at the end of serviceAccountKeyName (…/keys/<id>)."""
    return str(pp(line)["authenticationInfo"]["serviceAccountKeyName"].rsplit("/keys/", 1)[1])


def sa(name: str) -> str:
    """A service account email from a projects/-/serviceAccounts/<email> name."""
    return name.rsplit("/serviceAccounts/", 1)[1]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value[:26] + "+00:00")  # RFC 3339 nanoseconds -> microseconds


def _rows(case: Case, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cols, rows = case.query(sql, params)
    return [dict(zip(cols, r, strict=True)) for r in rows]


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[Case, Analysis, dict[int, dict[str, Any]]]]:
    with Case() as case:
        report = ingest(case, [str(FIXTURE)])
        assert (report.files[0].format, report.files[0].container) == ("gcp-audit", "lines")
        analysis = analyse(case.con)
        lines = {}
        for e in _rows(case, "SELECT * FROM events"):
            e["extra"] = json.loads(e["extra"]) if e["extra"] else {}
            lines[e["line"]] = e
        yield case, analysis, lines


# Read from the fixture: the story's credentials and holders.
CI_KEY = key_id(3)  # the key the CI job uses
OLD_KEY = key_id(1)  # the key that created it
CI_ADDR = pp(3)["requestMetadata"]["callerIp"]
THIEF_ADDR = pp(24)["requestMetadata"]["callerIp"]


def test_sniffing_takes_gcp_audit_and_nothing_else() -> None:
    mappings = list(builtin_mappings())
    records = [r for r in RECORDS.values() if r is not None]
    chosen = choose_format(records[:50], mappings)
    assert chosen is not None and chosen.name == "gcp-audit"
    keys = all_wrapper_keys(mappings)
    others = [p for p in sorted(FIXTURES.rglob("*"))
              if p.is_file() and "gcp-audit" not in p.parts
              and p.suffix in (".json", ".jsonl", ".log", ".ndjson")]
    assert others, "no other fixtures found"
    for path in others:
        sniffed = sniff_container(path.read_bytes()[:PREFIX_BYTES], keys)
        got = choose_format(sniffed.records, mappings)
        assert got is None or got.name != "gcp-audit", path
    # A LogEntry that is not an audit log, and a CloudTrail record, are not this format.
    syslog = RECORDS[28]
    cloudtrail = {"eventTime": "2026-03-02T09:00:00Z", "eventSource": "s3.amazonaws.com",
                  "eventName": "ListBuckets", "awsRegion": "eu-west-1",
                  "userIdentity": {"type": "IAMUser"}}
    for other in (syslog, cloudtrail):
        got = choose_format([other], mappings)
        assert got is None or got.name != "gcp-audit"


def test_events_and_rejects_name_the_line(scanned) -> None:
    case, _, lines = scanned
    unparsable = [i for i, r in RECORDS.items() if r is None]
    not_audit = [i for i, r in RECORDS.items() if r is not None and "protoPayload" not in r]
    assert (unparsable, not_audit) == ([16], [28])
    assert sorted(lines) == sorted(AUDIT)
    rejects = _rows(case, "SELECT line, reason, excerpt FROM rejects ORDER BY line")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (16, "invalid JSON"),
        (28, "not a Cloud Audit Logs entry (no protoPayload AuditLog with a methodName)"),
    ]
    assert '"insertId":"ksl2vbf3r0d1"' in rejects[1]["excerpt"]


def test_log_entry_fields_map_to_columns(scanned) -> None:
    _, _, lines = scanned
    for n, record in AUDIT.items():
        e, p = lines[n], record["protoPayload"]
        assert e["ts"] == when(record["timestamp"]), n
        assert (e["resource"], e["method"], e["path"]) == (
            p["serviceName"], p["methodName"], p["resourceName"]), n
        assert e["user_agent"] == p["requestMetadata"]["callerSuppliedUserAgent"], n
        assert e["request_id"] == record.get("operation", {}).get("id"), n
        assert e["extra"]["insert_id"] == record["insertId"], n
        assert e["extra"]["severity"] == record["severity"], n
        assert e["extra"]["log_type"] == record["logName"].rsplit("%2F", 1)[1], n
        assert sorted(e["extra"]["permissions"] or []) == sorted(
            {a["permission"] for a in p.get("authorizationInfo", [])}), n
        auth = p["authenticationInfo"]
        assert e["extra"]["principal_email"] == auth.get("principalEmail"), n
        assert e["extra"]["principal_subject"] == auth.get("principalSubject"), n
    # Key ids are the last segment of serviceAccountKeyName.
    for n in (3, 4, 24, 25, 26, 27):
        assert lines[n]["token_id"] == lines[n]["token_key"] == key_id(n)
        assert lines[n]["subject"] == pp(n)["authenticationInfo"]["principalEmail"]


def test_permission_denied_is_a_deny_of_the_presented_key(scanned) -> None:
    _, _, lines = scanned
    denied, p = lines[26], pp(26)
    assert p["status"]["code"] == 7
    assert (denied["kind"], denied["outcome"], denied["status"], denied["error"]) == (
        "deny", "failure", 403, "PERMISSION_DENIED")
    # The refused call is about the key presented, not the token it asked for.
    assert denied["token_key"] == key_id(26) and denied["act_chain"] is None
    assert denied["scopes"] is None and denied["parent_token_key"] is None
    assert denied["extra"]["grpc_status"] == 7
    assert denied["extra"]["status_message"] == p["status"]["message"]
    assert denied["extra"]["denied_permissions"] == [p["authorizationInfo"][0]["permission"]]
    assert denied["extra"]["identity_delegation_chain"] == [
        sa(x) for x in p["metadata"]["identityDelegationChain"]]
    # Everything else in the fixture succeeded.
    assert {e["outcome"] for n, e in lines.items() if n != 26} == {"success"}


def test_service_account_key_lifecycle(scanned) -> None:
    case, _, lines = scanned
    created, deleted = lines[1], lines[2]
    new_key = pp(1)["response"]["name"].rsplit("/keys/", 1)[1]
    assert new_key == CI_KEY
    assert (created["kind"], created["token_key"], created["parent_token_key"]) == (
        "issue", CI_KEY, OLD_KEY)
    assert created["subject"] == sa(pp(1)["request"]["name"])
    assert created["holder_id"] == f"ip:{pp(1)['requestMetadata']['callerIp']}"
    revoked = pp(2)["request"]["name"].rsplit("/keys/", 1)[1]
    assert (deleted["kind"], deleted["token_key"]) == ("revoke", revoked)
    assert revoked == OLD_KEY and deleted["extra"]["caller_key_id"] == key_id(2) == CI_KEY
    token = _rows(case, "SELECT issue_kind, parent_token_key, issued_ip FROM tokens "
                        "WHERE token_key = ?", [CI_KEY])[0]
    assert token == {"issue_kind": "issue", "parent_token_key": OLD_KEY, "issued_ip": CI_ADDR}
    assert _rows(case, "SELECT revoked_at FROM tokens WHERE token_key = ?", [OLD_KEY]) == [
        {"revoked_at": when(AUDIT[2]["timestamp"])}]


def test_impersonation_chain_is_the_act_chain(scanned) -> None:
    case, _, lines = scanned
    mint, use = lines[8], lines[9]
    p = pp(8)
    caller = p["authenticationInfo"]["principalEmail"]
    target = sa(p["request"]["name"])
    delegates = [sa(d) for d in p["request"]["delegates"]]
    assert [sa(x) for x in p["metadata"]["identityDelegationChain"]] == [*delegates, target]
    assert (mint["kind"], mint["subject"], mint["issuer"]) == (
        "exchange", target, p["serviceName"])
    # Current actor first: the last delegate, then the caller.
    assert mint["act_chain"] == [*reversed(delegates), caller]
    assert mint["scopes"] == p["request"]["scope"]
    assert mint["iat"] == when(AUDIT[8]["timestamp"])
    assert mint["exp"] == mint["iat"] + timedelta(seconds=int(p["request"]["lifetime"][:-1]))
    # The use logs the same chain, original caller first, and joins the minting call.
    logged = [d.get("firstPartyPrincipal", {}).get("principalEmail") or d["principalSubject"]
              for d in pp(9)["authenticationInfo"]["serviceAccountDelegationInfo"]]
    assert logged == [caller, *delegates]
    assert use["extra"]["delegation_chain"] == logged
    assert use["subject"] == pp(9)["authenticationInfo"]["principalEmail"] == target
    assert use["token_key"] == mint["token_key"] == (
        f"gcp:{target};via={'>'.join(logged)};from={p['requestMetadata']['callerIp']}")
    # The chain is a claim of the token (from its minting), not of the use.
    assert use["act_chain"] is None
    assert _rows(case, "SELECT act_chain, issue_kind FROM tokens WHERE token_key = ?",
                 [use["token_key"]]) == [{"act_chain": mint["act_chain"], "issue_kind": "exchange"}]


def test_workload_identity_federation_lineage(scanned) -> None:
    case, _, lines = scanned
    sts, mint, use = lines[10], lines[12], lines[14]
    mapped = pp(10)["metadata"]["mapped_principal"]
    addr = pp(10)["requestMetadata"]["callerIp"]
    assert pp(12)["authenticationInfo"]["principalSubject"] == mapped
    assert (sts["kind"], sts["subject"], sts["token_key"]) == (
        "exchange", mapped, f"gcp:{mapped};from={addr}")
    assert sts["extra"]["principal_subject"] == pp(10)["authenticationInfo"]["principalSubject"]
    assert sts["extra"]["subject_token_type"] == pp(10)["request"]["subjectTokenType"]
    assert sts["scopes"] == pp(10)["request"]["scope"].split()
    # The federated token is the parent of the service account token minted with it.
    assert (mint["kind"], mint["parent_token_key"], mint["act_chain"]) == (
        "exchange", sts["token_key"], [mapped])
    assert use["token_key"] == mint["token_key"]
    assert use["extra"]["delegation_chain"] == [
        d["principalSubject"] for d in pp(14)["authenticationInfo"]["serviceAccountDelegationInfo"]]
    links = _rows(case, "SELECT parent_key, kind FROM links WHERE child_key = ?", [mint["token_key"]])
    assert links == [{"parent_key": sts["token_key"], "kind": "exchange"}]


def test_long_running_operation_is_counted_once(scanned) -> None:
    case, _, lines = scanned
    first, last = lines[6], lines[7]
    assert AUDIT[6]["operation"]["id"] == AUDIT[7]["operation"]["id"]
    assert (first["kind"], last["kind"]) == ("use", "other")
    assert first["request_id"] == last["request_id"] and last["extra"]["operation_last"] is True
    assert first["token_key"] == lines[5]["token_key"]
    assert _rows(case, "SELECT uses FROM tokens WHERE token_key = ?", [first["token_key"]]) == [
        {"uses": 1}]


def test_holder_is_the_caller_address_never_a_placeholder(scanned) -> None:
    _, _, lines = scanned
    for n, e in lines.items():
        ip = pp(n)["requestMetadata"]["callerIp"]
        if re.fullmatch(r"[0-9.]+|[0-9A-Fa-f:]+", ip):
            assert (e["src_ip"], e["holder_id"], e["holder_tier"]) == (
                ip.lower(), f"ip:{ip.lower()}", "network"), n
        else:
            # "private", "gce-internal-ip": not addresses, no holder evidence
            assert (e["src_ip"], e["holder_id"]) == (None, None), n
            assert e["extra"]["caller_ip"] == ip, n
    assert {pp(n)["requestMetadata"]["callerIp"] for n in (20, 23)} == {"gce-internal-ip", "private"}
    assert lines[11]["src_ip"] == pp(11)["requestMetadata"]["callerIp"].lower()  # IPv6
    # The user agent is kept but does not split one caller into several holders.
    assert lines[12]["user_agent"] != lines[14]["user_agent"]
    assert lines[12]["holder_id"] == lines[14]["holder_id"]


def test_look_alikes_name_no_shared_credential(scanned) -> None:
    _, _, lines = scanned
    # Instance group VMs and GKE pods share one service account each, from several addresses.
    vms, pods = [lines[n] for n in (17, 18, 19)], [lines[n] for n in (21, 22)]
    assert len({e["src_ip"] for e in vms}) == 3 and len({e["src_ip"] for e in pods}) == 2
    assert {e["subject"] for e in vms} == {pp(17)["authenticationInfo"]["principalEmail"]}
    assert {e["subject"] for e in pods} == {pp(21)["authenticationInfo"]["principalEmail"]}
    for e in [*vms, *pods, lines[20], lines[23]]:
        assert e["token_key"] is None and e["token_id"] is None
    gke = pp(21)["authenticationInfo"]["serviceAccountDelegationInfo"][0]["principalSubject"]
    assert pods[0]["extra"]["delegation_chain"] == [gke] and ".svc.id.goog[" in gke
    assert lines[20]["kind"] == "exchange" and lines[20]["act_chain"] == [gke]
    # Two CI runners minting for the same service account: two tokens, one per runner.
    assert pp(12)["request"]["name"] == pp(13)["request"]["name"]
    assert lines[12]["token_key"] != lines[13]["token_key"]
    assert lines[14]["token_key"] == lines[12]["token_key"]
    assert lines[15]["token_key"] == lines[13]["token_key"]


def test_stolen_service_account_key_end_to_end(scanned) -> None:
    case, analysis, lines = scanned
    got = {(r["token_key"], r["holder_id"]): r for r in _rows(
        case, "SELECT token_key, holder_id, classification, confidence, reasons FROM token_holders")}
    ci, thief = got[(CI_KEY, f"ip:{CI_ADDR}")], got[(CI_KEY, f"ip:{THIEF_ADDR}")]
    # The runner that created the key is its owner, before and after the theft.
    assert ci["classification"] == "owner"
    assert any(f"ip:{CI_ADDR}" in r and "issuance" in r for r in ci["reasons"])
    # The unknown external address is a stolen credential.
    assert thief["classification"] == "stolen" and thief["confidence"] >= 0.7
    assert any("unknown external holder" in r for r in thief["reasons"])
    # Everything else presented is a delegation used where it was minted.
    others = {k: v["classification"] for k, v in got.items() if k[0] != CI_KEY}
    assert set(others.values()) == {"delegate"}
    assert {k[0] for k in others} == {lines[n]["token_key"] for n in (6, 9, 14, 15)}
    # Findings: only the thief, with the thief's lines as evidence.
    hits = {(f.rule, f.token["key"], f.holder["id"]) for f in analysis.findings}
    assert hits == {("TT004", CI_KEY, f"ip:{THIEF_ADDR}")}
    finding = analysis.findings[0]
    assert finding.severity == "high" and finding.classification == "stolen"
    thief_lines = sorted(n for n, r in AUDIT.items()
                         if r["protoPayload"]["requestMetadata"]["callerIp"] == THIEF_ADDR)
    assert thief_lines == [24, 25, 26]
    assert sorted(ev["line"] for ev in finding.evidence) == thief_lines


def test_json_array_and_sink_object_name(tmp_path: Path) -> None:
    records = [r for r in RECORDS.values() if r is not None]
    array = tmp_path / "gcloud-logging-read.json"
    array.write_text(json.dumps(records, indent=2), encoding="utf-8")
    sink = tmp_path / "09:00:00_09:59:59_S0.json"  # a Cloud Storage sink object: JSON Lines
    sink.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    with Case() as case:
        report = ingest(case, [str(array), str(sink)])
        got = {Path(f.name).name: (f.format, f.container, f.events, f.rejects) for f in report.files}
        assert got == {array.name: ("gcp-audit", "array", len(AUDIT), 1),
                       sink.name: ("gcp-audit", "lines", len(AUDIT), 2)}
        keys = case.query("SELECT count(DISTINCT token_key) FROM events WHERE token_key = ?",
                          [CI_KEY])[1]
        assert keys == [(1,)]


def _planted() -> list[str]:
    found = []
    for record in AUDIT.values():
        p = record["protoPayload"]
        found += [v for v in (p.get("request", {}).get("subjectToken"),
                              p.get("response", {}).get("accessToken")) if v]
    found += re.findall(r"ya29\.[A-Za-z0-9_.-]+", RAW_LINES[15])
    return found


def test_tokens_in_requests_and_responses_are_never_stored(tmp_path: Path) -> None:
    secrets = _planted()
    assert len(secrets) == 5 and any(s.count(".") == 2 and s.startswith("eyJ") for s in secrets)
    db = tmp_path / "case.duckdb"
    case = Case(db)
    case.con.execute("SET force_compression = 'uncompressed'")
    ingest(case, [str(FIXTURE)])
    text = "".join(str(case.con.execute(f"SELECT * FROM {t}").fetchall())
                   for t in ("events", "rejects", "sources"))
    case.close()
    raw = db.read_bytes()
    assert CI_KEY.encode() in raw  # the check can see stored strings
    for secret in secrets:
        for part in [secret, *secret.split("."), secret[:24]]:
            if len(part) < 16:
                continue
            assert part not in text
            assert part.encode() not in raw


def _entry(n: int, service: str, method: str, auth: dict[str, Any], ip: str, **more: Any) -> dict:
    payload = {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": service,
               "methodName": method, "authenticationInfo": auth, "resourceName": f"r/{n}",
               "requestMetadata": {"callerIp": ip, "callerSuppliedUserAgent": "ua/1"}, **more}
    return {"insertId": f"i{n}", "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "protoPayload": payload, "severity": "INFO", "timestamp": f"2026-03-03T10:00:0{n}.5Z"}


def test_minting_variants_and_status_codes(tmp_path: Path) -> None:
    """Shapes the story does not use: a minting call made with a key, an ID token, the fully
    qualified method name, a federated principal calling an API directly, other status codes."""
    key = "//iam.googleapis.com/projects/p/serviceAccounts/ci@p.iam.gserviceaccount.com/keys/" + "ab" * 20
    pool = ("principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/aws/"
            "subject/arn:aws:sts::1:assumed-role/etl/i-0a")
    chain = {"identityDelegationChain": ["projects/-/serviceAccounts/run@p.iam.gserviceaccount.com"]}
    records = [
        _entry(1, "iamcredentials.googleapis.com",
               "google.iam.credentials.v1.IAMCredentials.GenerateAccessToken",
               {"principalEmail": "ci@p.iam.gserviceaccount.com", "serviceAccountKeyName": key},
               "198.51.100.9", metadata=chain,
               request={"name": "projects/-/serviceAccounts/run@p.iam.gserviceaccount.com"}),
        _entry(2, "iamcredentials.googleapis.com", "GenerateIdToken",
               {"principalEmail": "ci@p.iam.gserviceaccount.com", "serviceAccountKeyName": key},
               "198.51.100.9", metadata=chain,
               request={"name": "projects/-/serviceAccounts/run@p.iam.gserviceaccount.com",
                        "audience": "https://api.example.com", "includeEmail": True}),
        _entry(3, "sts.googleapis.com", "google.identity.sts.v1.SecurityTokenService.ExchangeToken",
               {"principalSubject": "arn:aws:sts::1:assumed-role/etl/i-0a"}, "192.0.2.44",
               metadata={"mapped_principal": pool}),
        _entry(4, "bigquery.googleapis.com", "google.cloud.bigquery.v2.JobService.InsertJob",
               {"principalSubject": pool}, "192.0.2.44"),
        _entry(5, "storage.googleapis.com", "storage.objects.get", {}, "192.0.2.45",
               status={"code": 16, "message": "UNAUTHENTICATED"}),
        _entry(6, "storage.googleapis.com", "storage.objects.get",
               {"principalEmail": "ci@p.iam.gserviceaccount.com", "serviceAccountKeyName": key},
               "198.51.100.9", status={"code": 5, "message": "Not found"}),
    ]
    log = tmp_path / "variants.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with Case() as case:
        report = ingest(case, [str(log)])
        assert (report.files[0].format, report.events, report.rejects) == ("gcp-audit", 6, 0)
        e = {r["line"]: r for r in _rows(case, "SELECT * FROM events")}
    key_id_ = key.rsplit("/", 1)[1]
    # A minting call made with a key: the key is the parent, the minted token is new.
    assert (e[1]["kind"], e[1]["parent_token_key"], e[1]["token_id"]) == ("exchange", key_id_, None)
    assert e[1]["token_key"] == ("gcp:run@p.iam.gserviceaccount.com;via=ci@p.iam.gserviceaccount.com"
                                 ";from=198.51.100.9")
    assert e[1]["act_chain"] == ["ci@p.iam.gserviceaccount.com"]
    # An ID token: its own key space (never presented to Google APIs) and its audience.
    assert e[2]["token_key"].startswith("gcp-id:run@p.iam.gserviceaccount.com;")
    assert e[2]["audience"] == ["https://api.example.com"] and e[2]["exp"] is None
    # Direct resource access by a federated principal joins the STS exchange at that address.
    assert e[3]["token_key"] == e[4]["token_key"] == f"gcp:{pool};from=192.0.2.44"
    assert e[3]["extra"] and json.loads(e[3]["extra"])["principal_subject"] == (
        records[2]["protoPayload"]["authenticationInfo"]["principalSubject"])
    assert (e[4]["kind"], e[4]["subject"]) == ("use", pool)
    # UNAUTHENTICATED is a deny with no credential named; NOT_FOUND a failed use.
    assert (e[5]["kind"], e[5]["status"], e[5]["error"], e[5]["token_key"]) == (
        "deny", 401, "UNAUTHENTICATED", None)
    assert (e[6]["kind"], e[6]["outcome"], e[6]["status"], e[6]["error"], e[6]["token_key"]) == (
        "use", "failure", 404, "NOT_FOUND", key_id_)
