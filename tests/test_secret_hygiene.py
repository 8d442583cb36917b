"""No raw token ever reaches the case file, the rejects, stdout or stderr.

Raw tokens (JWTs and opaque strings) are planted everywhere these logs can carry one: the
Authorization header, query strings, JSON fields, free text, and lines that are rejected. The
test then searches the DuckDB file's bytes and every command's output for them.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import make_jwt

from tokentrail.cli import main

JWT = make_jwt({"jti": "planted-jti-1", "sub": "alice", "azp": "orchestrator", "aud": "api",
                "exp": 1793610000})
JWT2 = make_jwt({"jti": "planted-jti-2", "sub": "bob", "azp": "partner", "aud": "api"})
OPAQUE = "opq_Z3k9QmVhcmVyVG9rZW5TZWNyZXQ"  # no JWT shape: only the key names can reveal it
SESSION = "IQoJb3JpZ2luX2VjEOH//////////wEaCXVzLWVhc3QtMSJIMEYCIQDzpomGZAmkp4RIzBo4RqVJGE" * 4
SECRETS = [JWT, JWT2, OPAQUE, SESSION]


def _files(tmp: Path) -> list[Path]:
    envoy = [
        {"start_time": "2026-11-02T09:00:00Z", "method": "GET", "response_code": 200,
         "path": f"/v1/x?access_token={OPAQUE}&id_token_hint={JWT2}",
         "downstream_remote_address": "10.0.0.1:1", "authorization": f"Bearer {JWT}"},
        {"start_time": "2026-11-02T09:00:01Z", "method": "GET", "response_code": 401,
         "downstream_remote_address": "10.0.0.2:1", "authorization": f"DPoP {OPAQUE}",
         "response_code_details": f"jwt_verification_fails token={JWT}"},
    ]
    keycloak = [
        {"id": "e1", "time": 1793606400000, "type": "CODE_TO_TOKEN", "realmId": "acme",
         "clientId": "orchestrator", "userId": "u1", "sessionId": "s1", "ipAddress": "10.0.0.3",
         "details": {"token_id": "kc-1", "grant_type": "authorization_code", "token": JWT,
                     "refresh_token": OPAQUE}},
        {"id": "e2", "time": 1793606401000, "type": "REFRESH_TOKEN_ERROR", "realmId": "acme",
         "clientId": "orchestrator", "ipAddress": "10.0.0.4", "error": f"invalid_token {JWT2}",
         "details": {"refresh_token_id": "rt-1", "reason": f"Stale token Bearer {OPAQUE}"}},
    ]
    okta = [
        {"uuid": "o1", "published": "2026-11-02T09:00:02.000Z",
         "eventType": "app.oauth2.as.token.grant.access_token", "actor": {"id": "0oa1",
         "type": "PublicClientApp"}, "client": {"ipAddress": "10.0.0.5",
         "userAgent": {"rawUserAgent": "curl/8"}}, "outcome": {"result": "SUCCESS"},
         "debugContext": {"debugData": {"url": f"/oauth2/v1/logout?id_token_hint={JWT}",
                                        "clientSecret": OPAQUE, "grantType": "client_credentials"}},
         "target": [{"id": "AT.planted", "type": "access_token"}]},
    ]
    cloudtrail = {"Records": [
        {"eventVersion": "1.08", "eventTime": "2026-11-02T09:00:03Z", "eventSource":
         "sts.amazonaws.com", "eventName": "AssumeRoleWithWebIdentity", "awsRegion": "us-east-1",
         "sourceIPAddress": "10.0.0.6", "userAgent": "aws-cli/2",
         "userIdentity": {"type": "WebIdentityUser", "principalId": "x"},
         "requestParameters": {"roleArn": "arn:aws:iam::1:role/r", "webIdentityToken": JWT},
         "responseElements": {"credentials": {"accessKeyId": "ASIAPLANTED0001",
                                              "sessionToken": SESSION,
                                              "expiration": "Nov 2, 2026, 10:00:03 AM"}}},
    ]}
    k8s = [
        {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
         "auditID": "a1", "stage": "ResponseComplete",
         "requestURI": "/api/v1/namespaces/agents/serviceaccounts/coder/token", "verb": "create",
         "user": {"username": "system:node:n1"}, "sourceIPs": ["10.0.0.7"],
         "objectRef": {"resource": "serviceaccounts", "namespace": "agents", "name": "coder",
                       "subresource": "token"},
         "responseStatus": {"code": 201},
         "responseObject": {"kind": "TokenRequest", "status": {"token": JWT2}},
         "requestReceivedTimestamp": "2026-11-02T09:00:04.000000Z",
         "stageTimestamp": "2026-11-02T09:00:04.100000Z",
         "annotations": {"authentication.kubernetes.io/issued-credential-id": "JTI=planted-k8s"}},
    ]
    app = [
        {"ts": "2026-11-02T09:00:05Z", "kind": "use", "token": JWT, "src_ip": "10.0.0.8",
         "path": f"/mcp?token={OPAQUE}"},
        {"ts": "2026-11-02T09:00:06Z", "kind": "use", "authorization": f"Bearer {OPAQUE}",
         "agent": "researcher", "error": f"upstream said: Authorization: Bearer {JWT2}"},
    ]
    out = []
    for name, payload in [("envoy.jsonl", envoy), ("okta.json", okta),
                          ("keycloak.json", keycloak), ("k8s.jsonl", k8s), ("app.jsonl", app)]:
        p = tmp / name
        if name.endswith(".jsonl"):
            lines = [json.dumps(r) for r in payload]
            # and a rejected line carrying tokens in a header, a JSON field and free text
            lines.append('{"broken": "Authorization: Bearer ' + JWT + '", "access_token": "'
                         + OPAQUE + '", "x": ' + SESSION)
            p.write_text("\n".join(lines) + "\n")
        else:
            p.write_text(json.dumps(payload))
        out.append(p)
    ct = tmp / "cloudtrail.json"
    ct.write_text(json.dumps(cloudtrail))
    out.append(ct)
    return out


def test_no_raw_token_in_case_file_rejects_or_any_output(tmp_path):
    files = _files(tmp_path)
    db = tmp_path / "case.duckdb"
    runner = CliRunner()
    outputs = []
    r = runner.invoke(main, ["ingest", *map(str, files), "--db", str(db)])
    outputs += [r.stdout, r.stderr]
    assert r.exit_code in (0, 3), r.output
    r = runner.invoke(main, ["ingest", *map(str, files), "--db", str(db), "--json", "--force"])
    outputs += [r.stdout, r.stderr]
    summary = json.loads(r.stdout)
    assert summary["events"] == 9 and summary["rejects"] == 3
    for sql in ["select * from events", "select * from v_rejects", "select * from sources",
                "select * from v_token_usage", "select * from v_timeline",
                f"select * from events where token_fp = '{JWT}'"]:
        for fmt in ("table", "json", "csv"):
            q = runner.invoke(main, ["query", sql, "--db", str(db), "--format", fmt])
            outputs += [q.stdout, q.stderr]
            assert q.exit_code == 0, q.output
    # an error message that would echo its input
    q = runner.invoke(main, ["query", f"select '{JWT}' +", "--db", str(db)])
    outputs += [q.stdout, q.stderr]
    r = runner.invoke(main, ["ingest", str(files[0]), "--db", str(db), "--strict", "--force"])
    outputs += [r.stdout, r.stderr]
    assert r.exit_code == 3

    # every command that reads the case, and every export it writes
    for fmt in ("table", "json", "jsonl", "csv", "sarif", "ocsf"):
        r = runner.invoke(main, ["scan", "--db", str(db), "--format", fmt, "--fail-on", "none"])
        outputs += [r.stdout, r.stderr]
        assert r.exit_code == 0, r.output
    for cmd in (["tokens", "--format", "json"], ["holders", "--format", "csv"],
                ["trace", "planted-jti-1", "--format", "json"], ["trace", "ASIAPLANTED0001"],
                ["timeline"], ["timeline", "--format", "csv"], ["timeline", "--format", "jsonl"],
                ["scan", "--wide", "--fail-on", "none"], ["policy", "suggest"]):
        r = runner.invoke(main, [*cmd, "--db", str(db)])
        outputs += [r.stdout, r.stderr]
        assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["trace", "-", "--db", str(db)], input=JWT + "\n")
    outputs += [r.stdout, r.stderr]
    reports = tmp_path / "reports"
    r = runner.invoke(main, ["report", "--db", str(db), "--html", str(reports / "r.html"),
                             "--csv", str(reports / "csv")])
    assert r.exit_code == 0, r.output
    outputs += [r.stdout, r.stderr]
    written = sorted(p for p in reports.rglob("*") if p.is_file())
    assert len(written) >= 5  # the HTML page and the CSV tables
    outputs += [p.read_text(encoding="utf-8") for p in written]

    blob = db.read_bytes()
    for wal in tmp_path.glob("case.duckdb*"):
        blob += wal.read_bytes()
    text = "\n".join(outputs)
    for secret in SECRETS:
        assert secret.encode() not in blob
        assert secret not in text
        # not even a long prefix of it
        assert secret[:24].encode() not in blob and secret[:24] not in text

    # the tokens were still recognised: fingerprinted and joined by their ids
    q = runner.invoke(main, ["query", "select count(*) n from events where raw_token_logged",
                             "--db", str(db), "--format", "json"])
    assert json.loads(q.stdout)[0]["n"] >= 4


def test_a_failed_rule_error_that_quotes_a_token_is_redacted(tmp_path):
    """A rule's runtime error can quote the value it choked on (a cast of a log field):
    the failed-rule report on stderr must not carry it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "X9.toml").write_text(
        'id = "X9"\ntitle = "t"\nseverity = "high"\nclassification = "unknown"\n'
        'description = "d"\nsql = """SELECT token_key, holder_id, first_seen, last_seen, count, '
        f"event_ids, reasons FROM token_holders WHERE CAST('{JWT}' AS INTEGER) = 1\"\"\"\n")
    r = CliRunner().invoke(main, ["scan", str(Path(__file__).parent.parent / "sample-logs"
                                              / "envoy-acme-gateway-access.jsonl"),
                                  "--rules", str(rules), "--format", "json", "--fail-on", "none"],
                           catch_exceptions=False)
    assert r.exit_code == 3 and "X9" in r.stderr and "rule SQL failed" in r.stderr
    assert JWT not in r.stderr and JWT not in r.stdout
    assert JWT.split(".")[1] not in r.stderr
