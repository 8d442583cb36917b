"""The `cloudtrail` format: AWS CloudTrail records in every container AWS delivers them in.

Fixture tests/fixtures/cloudtrail/records.json is synthetic, written to the CloudTrail record
schema (S3 delivery document); the shared dataset (DataDog stratus-red-team detonations) is
real and anonymised, with syntactically invalid IPs that must be kept as logged.
"""

from __future__ import annotations

import gzip
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import FORMATS_DIR, builtin_mappings
from tokentrail.sources.sniff import choose_format

FIXTURE = Path(__file__).parent / "fixtures" / "cloudtrail" / "records.json"
DATASET = Path(__file__).parents[2] / "shared" / "datasets" / "aws-cloudtrail"

NODE_KEY = "ASIAQNODEEXAMPLE0001"
ALICE_AKIA = "AKIAQALICEEXAMPLE001"
ALICE_ROLE_KEY = "ASIAQALICEROLE000001"
POD_KEY = "ASIAQPODIDENTITY0001"
NEW_AKIA = "AKIAQBACKDOOREXAMP01"


def _rows(case: Case, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cols, rows = case.query(sql, params)
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _by_line(case: Case) -> dict[int, dict[str, Any]]:
    return {r["line"]: r for r in _rows(case, "SELECT * FROM events")}


def _session_tokens(path: Path) -> list[str]:
    """Every responseElements.credentials.sessionToken in a CloudTrail file."""
    data = json.loads(path.read_text())
    records = data["Records"] if isinstance(data, dict) else data
    return [r["responseElements"]["credentials"]["sessionToken"] for r in records
            if isinstance(r.get("responseElements"), dict)
            and "credentials" in r["responseElements"]]


def _case_text(case: Case) -> str:
    return "".join(str(case.con.execute(f"SELECT * FROM {t}").fetchall())
                   for t in ("events", "rejects", "sources"))


@pytest.fixture(scope="module")
def case() -> Case:
    c = Case()
    report = ingest(c, [str(FIXTURE)])
    assert report.files[0].format == "cloudtrail"
    assert report.files[0].container == "wrapper"
    return c


def test_detail_structure_mirrors_the_record() -> None:
    # Columns read coalesce(r.detail.X, r.X) for EventBridge events: both shapes must agree.
    record = tomllib.loads((FORMATS_DIR / "cloudtrail.toml").read_text())["record"]
    detail = record.pop("detail")
    assert detail == record


def test_records_document_is_read_and_bad_record_rejected(case: Case) -> None:
    assert case.query("SELECT count(*) FROM events")[1] == [(14,)]
    rejects = _rows(case, "SELECT line, reason, excerpt FROM rejects")
    assert [(r["line"], r["reason"]) for r in rejects] == [(15, "no usable timestamp")]
    assert '"eventName":"GetObject"' in rejects[0]["excerpt"]


def test_issued_key_joins_its_uses(case: Case) -> None:
    rows = _rows(case, "SELECT line, kind, outcome, parent_token_key, exp, iat, subject, client_id "
                       "FROM events WHERE token_key = ? ORDER BY line", [ALICE_ROLE_KEY])
    assert [(r["line"], r["kind"]) for r in rows] == [
        (5, "issue"), (6, "use"), (7, "deny"), (8, "use"), (9, "use"), (14, "use")]
    issue = rows[0]
    # The long-term key that asked for the session is its parent.
    assert issue["parent_token_key"] == ALICE_AKIA
    # "Jun 3, 2024, 10:15:02 AM" is parsed as UTC.
    assert issue["exp"] == datetime(2024, 6, 3, 10, 15, 2, tzinfo=UTC)
    assert issue["iat"] == datetime(2024, 6, 3, 9, 15, 2, tzinfo=UTC)
    # One key, one subject and one client_id across issuance and uses.
    assert {r["subject"] for r in rows} == {"arn:aws:sts::111122223333:assumed-role/Admin/alice-cli"}
    assert {r["client_id"] for r in rows} == {"arn:aws:iam::111122223333:role/Admin"}
    # A use's iat is its session's creationDate, the issuance time.
    assert {r["iat"] for r in rows} == {issue["iat"]}


def test_deny_is_an_authorisation_refusal_other_errors_are_failed_uses(case: Case) -> None:
    lines = _by_line(case)
    assert (lines[7]["kind"], lines[7]["outcome"], lines[7]["error"]) == (
        "deny", "failure", "AccessDenied")
    assert (lines[8]["kind"], lines[8]["outcome"], lines[8]["error"]) == (
        "use", "failure", "BucketNotEmpty")
    assert (lines[6]["kind"], lines[6]["outcome"]) == ("use", "success")
    assert lines[6]["resource"] == "s3.amazonaws.com" and lines[6]["method"] == "ListBuckets"


def test_holder_is_the_caller_not_the_identity(case: Case) -> None:
    lines = _by_line(case)
    # The instance's own call, through its VPC endpoint.
    own = lines[2]
    assert own["src_ip"] == "10.0.1.23"
    assert own["holder_id"] == "ip:10.0.1.23/aws-sdk-go"
    assert json.loads(own["extra"])["vpc_endpoint_id"] == "vpce-0aa11bb22cc33dd44"
    # Same instance key from outside: the claims (host, subject) still name the instance,
    # the holder evidence does not.
    stolen = lines[10]
    assert stolen["token_key"] == own["token_key"] == NODE_KEY
    assert stolen["host"] == own["host"] == "i-0a1b2c3d4e5f67890"
    assert stolen["subject"] == own["subject"]
    assert stolen["holder_id"] == "ip:203.0.113.77/aws-cli"
    assert json.loads(stolen["extra"])["ec2_role_delivery"] == "2.0"
    # IPv6 caller.
    assert lines[6]["src_ip"] == "2001:db8:85a3::8a2e:370:7334"


def test_service_names_are_not_addresses(case: Case) -> None:
    lines = _by_line(case)
    # CloudFormation acting with alice's session: the key is used, the caller is a service.
    fas = lines[9]
    assert (fas["kind"], fas["token_key"]) == ("use", ALICE_ROLE_KEY)
    assert fas["src_ip"] is None and fas["holder_id"] is None
    extra = json.loads(fas["extra"])
    assert extra["invoked_by"] == "cloudformation.amazonaws.com"
    assert extra["source_address"] == "cloudformation.amazonaws.com"
    internal = lines[14]
    assert internal["src_ip"] is None and internal["holder_id"] is None
    assert json.loads(internal["extra"])["source_address"] == "AWS Internal"


def test_instance_profile_and_pod_identity_issuance(case: Case) -> None:
    lines = _by_line(case)
    ec2 = lines[1]
    assert (ec2["kind"], ec2["token_key"], ec2["host"]) == ("issue", NODE_KEY, "i-0a1b2c3d4e5f67890")
    assert ec2["src_ip"] is None and ec2["parent_token_key"] is None
    assert json.loads(ec2["extra"])["issued_to"] == "ec2.amazonaws.com"
    # The node asking EKS for pod credentials is a use of the node's key (response not logged).
    ask = lines[3]
    assert (ask["kind"], ask["token_key"], ask["method"]) == (
        "use", NODE_KEY, "AssumeRoleForPodIdentity")
    # STS issuance for the pod: the pod is a claim (session tags), no holder evidence.
    pod = lines[4]
    assert (pod["kind"], pod["token_key"]) == ("issue", POD_KEY)
    assert pod["pod"] == "payments/api-7d9f8b6c4-x2kqz"
    assert pod["client_id"] == "arn:aws:iam::111122223333:role/payments-s3-reader"
    assert pod["holder_id"] is None
    assert json.loads(pod["extra"])["k8s_service_account"] == "api"


def test_long_term_key_created_and_revoked(case: Case) -> None:
    rows = _rows(case, "SELECT line, kind, parent_token_key, subject FROM events "
                       "WHERE token_key = ? ORDER BY line", [NEW_AKIA])
    assert [(r["line"], r["kind"]) for r in rows] == [(11, "issue"), (12, "revoke")]
    assert rows[0]["parent_token_key"] == ALICE_AKIA
    assert {r["subject"] for r in rows} == {"arn:aws:iam::111122223333:user/alice"}


def test_console_login(case: Case) -> None:
    login = _by_line(case)[13]
    assert (login["kind"], login["outcome"], login["token_key"]) == ("login", "failure", None)
    assert login["src_ip"] == "203.0.113.77"


def test_gzipped_records_document(tmp_path: Path) -> None:
    gz = tmp_path / "111122223333_CloudTrail_eu-west-1_20240603T0905Z_abc.json.gz"
    gz.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    c = Case()
    report = ingest(c, [str(gz)])
    assert (report.files[0].format, report.files[0].container) == ("cloudtrail", "wrapper")
    assert (report.events, report.rejects) == (14, 1)
    assert c.query("SELECT count(*) FROM events WHERE token_key = ?", [ALICE_ROLE_KEY])[1] == [(6,)]


def test_json_lines_lake_and_eventbridge(tmp_path: Path) -> None:
    user = {"type": "IAMUser", "principalId": "AIDAQBOBEXAMPLE00001",
            "arn": "arn:aws:iam::111122223333:user/bob", "accountId": "111122223333",
            "accessKeyId": "AKIAQBOBEXAMPLE00001", "userName": "bob"}
    issue = {"eventVersion": "1.08", "userIdentity": user, "eventTime": "2024-06-04T07:00:00Z",
             "eventSource": "sts.amazonaws.com", "eventName": "GetSessionToken",
             "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.44",
             "userAgent": "Boto3/1.34.100 md/Botocore#1.34.100 ua/2.0 os/linux#6.5.0",
             "requestParameters": {"durationSeconds": 43200,
                                   "serialNumber": "arn:aws:iam::111122223333:mfa/bob"},
             # Some pipelines rewrite the expiration as ISO-8601.
             "responseElements": {"credentials": {"accessKeyId": "ASIAQBOBSESSION00001",
                                                  "sessionToken": "FwoGZXIvYXdzEXAMPLEbobSession+/==",
                                                  "expiration": "2024-06-04T19:00:00Z"}},
             "requestID": "1d2c3b4a-0000-4000-8000-000000000001",
             "eventID": "1d2c3b4a-1111-4111-8111-000000000001", "eventType": "AwsApiCall",
             "recipientAccountId": "111122223333"}
    session_user = dict(user, accessKeyId="ASIAQBOBSESSION00001", sessionContext={
        "attributes": {"creationDate": "2024-06-04T07:00:00Z", "mfaAuthenticated": "true"}})
    use = dict(issue, userIdentity=session_user, eventTime="2024-06-04T07:05:00Z",
               eventSource="iam.amazonaws.com", eventName="ListUsers",
               requestParameters=None, responseElements=None,
               eventID="1d2c3b4a-1111-4111-8111-000000000002")
    envelope = {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "detail-type": "AWS API Call via CloudTrail", "source": "aws.sts",
                "account": "111122223333", "time": "2024-06-04T07:00:00Z",
                "region": "eu-west-1", "resources": [], "detail": issue}
    path = tmp_path / "eventbridge.jsonl"
    path.write_text(json.dumps(envelope) + "\n" + json.dumps(use) + "\n")
    c = Case()
    report = ingest(c, [str(path)])
    assert (report.files[0].format, report.files[0].container) == ("cloudtrail", "lines")
    rows = _rows(c, "SELECT line, kind, token_key, parent_token_key, subject, client_id, exp, "
                    "src_ip FROM events ORDER BY line")
    assert [(r["line"], r["kind"], r["token_key"]) for r in rows] == [
        (1, "issue", "ASIAQBOBSESSION00001"), (2, "use", "ASIAQBOBSESSION00001")]
    assert rows[0]["parent_token_key"] == "AKIAQBOBEXAMPLE00001"
    assert rows[0]["exp"] == datetime(2024, 6, 4, 19, 0, tzinfo=UTC)
    assert rows[0]["src_ip"] == "198.51.100.44"
    # A GetSessionToken session acts as the user itself, on issuance and use alike.
    assert {r["subject"] for r in rows} == {"arn:aws:iam::111122223333:user/bob"}
    assert {r["client_id"] for r in rows} == {"arn:aws:iam::111122223333:user/bob"}
    assert "FwoGZXIvYXdzEXAMPLEbobSession" not in _case_text(c)


def test_session_tokens_are_never_stored(tmp_path: Path) -> None:
    db = tmp_path / "case.duckdb"
    c = Case(db)
    # Uncompressed storage, so that a stored string shows up in the file bytes.
    c.con.execute("SET force_compression = 'uncompressed'")
    ingest(c, [str(FIXTURE)])
    secrets = _session_tokens(FIXTURE)
    assert len(secrets) == 3
    text = _case_text(c)
    c.close()
    raw = db.read_bytes()
    assert ALICE_ROLE_KEY.encode() in raw  # the check can see stored strings
    for secret in secrets:
        assert secret not in text
        assert secret.encode() not in raw
        assert secret[:24].encode() not in raw


def test_sniffing_is_specific() -> None:
    records = json.loads(FIXTURE.read_text())["Records"][:5]
    chosen = choose_format(records, list(builtin_mappings()))
    assert chosen is not None and chosen.name == "cloudtrail"
    k8s = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
           "auditID": "x", "stage": "ResponseComplete", "verb": "get",
           "requestReceivedTimestamp": "2024-05-14T09:12:09.100412Z"}
    envoy = {"start_time": "2024-05-14T09:12:09.100Z", "method": "GET", "path": "/",
             "response_code": 200, "authority": "api.example.com"}
    for other in (k8s, envoy):
        chosen = choose_format([other], list(builtin_mappings()))
        assert chosen is None or chosen.name != "cloudtrail"


@pytest.mark.skipif(not DATASET.is_dir(), reason="shared/datasets/aws-cloudtrail not present")
def test_stratus_red_team_dataset(tmp_path: Path) -> None:
    db = tmp_path / "stratus.duckdb"
    c = Case(db)
    c.con.execute("SET force_compression = 'uncompressed'")
    report = ingest(c, [str(DATASET)])
    assert {f.format for f in report.files} == {"cloudtrail"}
    assert {f.container for f in report.files} == {"array"}
    assert (report.events, report.rejects) == (55, 0)

    # AssumeRole issued ASIANQQ...; the 30 GetPasswordData calls used it (and were refused).
    rows = _rows(c, "SELECT kind, count(*) AS n, any_value(parent_token_key) AS parent "
                    "FROM events WHERE token_key = 'ASIANQQHHS551LWULIWD' GROUP BY kind")
    assert {r["kind"]: r["n"] for r in rows} == {"issue": 1, "deny": 30}
    assert [r["parent"] for r in rows if r["kind"] == "issue"] == ["AKIAWOGXN38MFN92ING5"]
    # The other key issued at the same moment was never used.
    assert c.query("SELECT kind FROM events WHERE token_key = 'ASIA7RQR64ZW9JXKWPUO'")[1] == [
        ("issue",)]
    # GetFederationToken -> GetCallerIdentity as the federated user.
    fed = _rows(c, "SELECT kind, method, subject, exp FROM events "
                   "WHERE token_key = 'ASIASTJKC5GCM7ZE6LUP' ORDER BY ts")
    assert [(r["kind"], r["method"]) for r in fed] == [
        ("issue", "GetFederationToken"), ("use", "GetCallerIdentity")]
    assert {r["subject"] for r in fed} == {
        "arn:aws:sts::742491224508:federated-user/stratus_red_team"}
    assert fed[0]["exp"] == datetime(2024, 11, 30, 20, 43, 17, tzinfo=UTC)
    # Failed AssumeRole attempts are refusals of the presenting long-term key.
    assert c.query("SELECT count(*) FROM events WHERE token_key = 'AKIAWOGXN38MFN92ING5' "
                   "AND kind = 'deny' AND method = 'AssumeRole'")[1] == [(2,)]
    # Invalid IP strings are kept as logged.
    ips = {r[0] for r in c.query("SELECT DISTINCT src_ip FROM events")[1]}
    assert ips == {"255.090.254.5", "200.249.253.51", "255.18.064.253"}

    secrets = [s for p in sorted(DATASET.glob("*.json")) for s in _session_tokens(p)]
    assert len(secrets) == 5
    text = _case_text(c)
    c.close()
    raw = db.read_bytes()
    assert b"ASIANQQHHS551LWULIWD" in raw
    for secret in secrets:
        assert secret not in text
        assert secret.encode() not in raw
        assert secret[:24].encode() not in raw
