"""The `k8s-audit` format: Kubernetes audit.k8s.io/v1 Events (JSON Lines, log backend).

Fixture tests/fixtures/k8s-audit/audit.log is synthetic (no public audit dataset carries
credential-id), written to the documented Event schema: a kubelet TokenRequest, uses by the
bound pod, the same JTI replayed from outside the cluster, a client-certificate admin, stage
duplicates, an RBAC 403, an admission 403, a 401, a pre-1.30 TokenRequest logged at
RequestResponse level (with the issued JWT in responseObject), an EKS user, and a line cut
short by rotation.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import builtin_mappings
from tokentrail.sources.sniff import choose_format

FIXTURE = Path(__file__).parent / "fixtures" / "k8s-audit" / "audit.log"

JTI = "2b76b98d-e185-4970-918e-6fa3f30606ab"
CI_JTI = "527476db-af47-4dc5-9e2f-aa0c89e04bbb"
REPORTER_JTI = "c1d2e3f4-0a1b-4c2d-8e3f-9a0b1c2d3e4f"
NODE_CERT = "9f2b5c1e4a7d8e3f6b0c2d9a1e5f7b3c8d4a6e2f0b9c1d7e3a5f8b2c6d0e4a1f"
ADMIN_CERT = "ce89c45675549e8c37bed92fd2fe3134a843dee38d5f1c31b7ffd1e4fb4648e0"
POD = "payments/api-7d9f8b6c4-x2kqz"


def _b64url(hex_digest: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).decode().rstrip("=")


def _rows(case: Case, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cols, rows = case.query(sql, params)
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _by_line(case: Case) -> dict[int, dict[str, Any]]:
    return {r["line"]: r for r in _rows(case, "SELECT * FROM events")}


def _issued_jwt() -> str:
    for line in FIXTURE.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        token = (event.get("responseObject") or {}).get("status", {}).get("token")
        if token:
            return str(token)
    raise AssertionError("fixture lost its RequestResponse TokenRequest")


@pytest.fixture(scope="module")
def case() -> Case:
    c = Case()
    report = ingest(c, [str(FIXTURE)])
    assert (report.files[0].format, report.files[0].container) == ("k8s-audit", "lines")
    return c


def test_events_and_the_broken_line(case: Case) -> None:
    assert case.query("SELECT count(*) FROM events")[1] == [(12,)]
    rejects = _rows(case, "SELECT line, reason FROM rejects")
    assert rejects == [{"line": 10, "reason": "invalid JSON"}]


def test_token_request_issuance_joins_the_pod_uses(case: Case) -> None:
    rows = _rows(case, "SELECT line, kind, stage, subject, pod, host FROM "
                       "(SELECT *, extra->>'stage' AS stage FROM events) "
                       "WHERE token_key = ? ORDER BY line", [JTI])
    assert [(r["line"], r["kind"], r["stage"]) for r in rows] == [
        (2, "issue", "ResponseComplete"),
        (3, "other", "RequestReceived"),
        (4, "use", "ResponseComplete"),
        (5, "other", "ResponseStarted"),
        (6, "deny", "ResponseComplete"),
        (7, "use", "ResponseComplete"),
    ]
    assert {r["subject"] for r in rows} == {"system:serviceaccount:payments:api"}
    # The bound pod and node: from the TokenRequest's boundObjectRef and requesting node on
    # the issuance, from the token's claims on every use.
    assert {(r["pod"], r["host"]) for r in rows} == {(POD, "worker-1")}


def test_issuance_details(case: Case) -> None:
    issue = _by_line(case)[2]
    assert issue["token_id"] == JTI and issue["parent_token_key"] is None
    assert issue["audience"] == ["https://kubernetes.default.svc.cluster.local"]
    assert issue["iat"] == datetime(2024, 5, 14, 9, 12, 3, 481223, tzinfo=UTC)
    # expirationSeconds 3607 after the request.
    assert issue["exp"] == datetime(2024, 5, 14, 10, 12, 10, 481223, tzinfo=UTC)
    # The kubelet received the token: its client certificate is the holder evidence.
    assert issue["peer_x5t"] == _b64url(NODE_CERT)
    assert (issue["holder_id"], issue["holder_tier"]) == (f"x5t:{_b64url(NODE_CERT)}", "mtls")
    assert issue["src_ip"] == "10.0.1.23"
    assert json.loads(issue["extra"])["bound_object"] == "Pod/api-7d9f8b6c4-x2kqz"
    # The RequestReceived duplicate of the same request is not an issuance.
    first = _by_line(case)[1]
    assert (first["kind"], first["token_key"], first["request_id"]) == (
        "other", None, issue["request_id"])


def test_stage_duplicates_are_not_counted_as_uses(case: Case) -> None:
    counts = dict(case.query("SELECT kind, count(*) FROM events WHERE token_key = ? "
                             "GROUP BY kind", [JTI])[1])
    assert counts == {"issue": 1, "use": 2, "deny": 1, "other": 2}


def test_replayed_token_shows_the_real_remote_address(case: Case) -> None:
    lines = _by_line(case)
    own, replay = lines[4], lines[7]
    assert own["holder_id"] == "ip:10.42.0.17/payments-api"
    # sourceIPs = ["10.42.0.17" (client-supplied X-Forwarded-For), "203.0.113.50" (remote)].
    assert replay["src_ip"] == "203.0.113.50"
    assert replay["holder_id"] == "ip:203.0.113.50/kubectl"
    assert json.loads(replay["extra"])["source_ips"] == ["10.42.0.17", "203.0.113.50"]
    # The claims still name the bound pod and node: they travel with the token.
    assert (replay["pod"], replay["host"]) == (own["pod"], own["host"]) == (POD, "worker-1")
    holders = case.query("SELECT holders FROM v_token_holders WHERE token_key = ?", [JTI])[1]
    assert holders == [(2,)]


def test_rbac_forbid_is_deny_admission_refusal_is_failed_use(case: Case) -> None:
    lines = _by_line(case)
    rbac = lines[6]
    assert (rbac["kind"], rbac["outcome"], rbac["status"], rbac["error"]) == (
        "deny", "failure", 403, "Forbidden")
    assert rbac["resource"] == "secrets" and rbac["method"] == "list"
    assert json.loads(rbac["extra"])["authz_decision"] == "forbid"
    admission = lines[12]
    assert (admission["kind"], admission["outcome"], admission["status"]) == (
        "use", "failure", 403)
    assert admission["token_key"] == CI_JTI


def test_unauthenticated_request(case: Case) -> None:
    denied = _by_line(case)[9]
    assert (denied["kind"], denied["outcome"], denied["status"]) == ("deny", "failure", 401)
    assert denied["token_key"] is None and denied["subject"] is None
    assert denied["holder_id"] == "ip:198.51.100.7/python-requests"


def test_client_certificate_user(case: Case) -> None:
    admin = _by_line(case)[8]
    assert admin["subject"] == "kubernetes-admin"
    # A certificate is not a token: no token key, but it names the presenter.
    assert admin["token_key"] is None
    assert admin["peer_x5t"] == _b64url(ADMIN_CERT)
    assert admin["holder_tier"] == "mtls"
    extra = json.loads(admin["extra"])
    assert extra["credential_type"] == "client-certificate"
    assert extra["groups"] == ["kubeadm:cluster-admins", "system:authenticated"]


def test_pre_1_30_annotation_and_token_minted_by_another_token(case: Case) -> None:
    issue = _by_line(case)[11]
    assert (issue["kind"], issue["token_key"]) == ("issue", REPORTER_JTI)
    assert issue["subject"] == "system:serviceaccount:payments:reporter"
    assert issue["parent_token_key"] == CI_JTI
    assert issue["audience"] == ["https://reports.example.com"]
    assert issue["exp"] == datetime(2024, 5, 14, 10, 32, 3, tzinfo=UTC)
    assert issue["pod"] is None  # not bound to a pod
    assert issue["holder_id"] == "ip:10.42.3.9/kubectl"


def test_eks_token_is_named_by_its_aws_access_key(case: Case) -> None:
    eks = _by_line(case)[13]
    assert (eks["kind"], eks["token_key"], eks["subject"]) == (
        "use", "ASIAQEXAMPLE7KEY2ID3", "alice")
    extra = json.loads(eks["extra"])
    assert extra["aws_arn"] == "arn:aws:sts::111122223333:assumed-role/PaymentsDev/alice"
    assert extra["credential_type"] == "aws-iam"


def test_issued_jwt_is_never_stored(tmp_path: Path) -> None:
    jwt = _issued_jwt()
    db = tmp_path / "case.duckdb"
    c = Case(db)
    c.con.execute("SET force_compression = 'uncompressed'")
    ingest(c, [str(FIXTURE)])
    text = "".join(str(c.con.execute(f"SELECT * FROM {t}").fetchall())
                   for t in ("events", "rejects", "sources"))
    c.close()
    raw = db.read_bytes()
    assert REPORTER_JTI.encode() in raw  # the check can see stored strings
    for part in [jwt, *jwt.split(".")]:
        assert part not in text
        assert part.encode() not in raw


def test_sniffing_is_specific() -> None:
    records = [json.loads(ln) for ln in FIXTURE.read_text().splitlines()[:5]]
    chosen = choose_format(records, list(builtin_mappings()))
    assert chosen is not None and chosen.name == "k8s-audit"
    # A Kubernetes object that is not an audit Event, and a CloudTrail record.
    pod_event = {"kind": "Event", "apiVersion": "v1", "reason": "Scheduled",
                 "metadata": {"name": "x"}, "involvedObject": {"kind": "Pod"}}
    cloudtrail = {"eventTime": "2024-06-03T09:16:30Z", "eventSource": "s3.amazonaws.com",
                  "eventName": "ListBuckets", "awsRegion": "eu-west-1",
                  "userIdentity": {"type": "IAMUser"}}
    for other in (pod_event, cloudtrail):
        chosen = choose_format([other], list(builtin_mappings()))
        assert chosen is None or chosen.name != "k8s-audit"
