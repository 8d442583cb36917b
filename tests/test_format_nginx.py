"""NGINX JSON access logs (the `tokentrail` log_format preset): token evidence, holders,
rejects, secret hygiene and one stolen certificate-bound token classified end to end.

Expected values are read from the fixture lines (tests/fixtures/nginx/README.md tells the
story), never from tokentrail's output."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO, events_by_line, fingerprint, make_jwt, write_jsonl

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.provenance.policy import load_policy
from tokentrail.sources.registry import builtin_mappings, get_mapping
from tokentrail.sources.sniff import PREFIX_BYTES, all_wrapper_keys, choose_format, sniff_container

DIR = FIXTURES / "nginx"
ACCESS = DIR / "access.jsonl"
COMBINED = DIR / "combined-json.jsonl"
LOG_SUFFIXES = {".json", ".jsonl", ".log", ".gz"}


def raw_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def record(path: Path, line: int) -> dict[str, Any]:
    return json.loads(raw_lines(path)[line - 1])


def x5t_of_escaped_pem(escaped: str) -> str:
    """RFC 8705 x5t#S256 of the certificate in $ssl_client_escaped_cert, by hand."""
    pem = urllib.parse.unquote(escaped)
    body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    assert body
    der = base64.b64decode("".join(body.group(1).split()))
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def at(value: str) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], Case]]:
    c = Case()
    report = ingest(c, [str(ACCESS), str(COMBINED)])
    assert [(f.format, f.status) for f in report.files] == [("nginx", "ingested")] * 2
    yield events_by_line(c, ACCESS), events_by_line(c, COMBINED), c
    c.close()


# -- sniffing --------------------------------------------------------------------------------

def _sniffed(path: Path) -> list[Any]:
    with open(path, "rb") as fh:
        prefix = fh.read(PREFIX_BYTES)
    return sniff_container(prefix, all_wrapper_keys(list(builtin_mappings()))).records


def test_preset_and_common_layouts_are_sniffed_as_nginx():
    nginx = get_mapping("nginx")
    for path in (ACCESS, COMBINED):
        assert choose_format(_sniffed(path), list(builtin_mappings())) is nginx, path


def test_no_other_fixture_or_sample_log_is_taken_by_nginx():
    mappings = list(builtin_mappings())
    nginx = get_mapping("nginx")
    files = [p for p in sorted((FIXTURES).glob("*/*")) + sorted((REPO / "sample-logs").glob("*"))
             if p.suffix in LOG_SUFFIXES and p.parent.name != "nginx"]
    assert any(p.parent.name == "kong" for p in files) and any(p.parent.name == "envoy" for p in files)
    for path in files:
        records = _sniffed(path)
        assert all(nginx.sniff.score(r) == 0 for r in records), path
        assert choose_format(records, mappings) is not nginx, path


def test_nginx_lines_are_not_envoy_or_kong():
    envoy, kong = get_mapping("envoy"), get_mapping("kong")
    for path in (ACCESS, COMBINED):
        for r in _sniffed(path):
            assert envoy.sniff.score(r) == 0 and kong.sniff.score(r) == 0


# -- field mapping -----------------------------------------------------------------------------

def test_every_line_is_an_event_or_a_reject_with_its_line_and_reason(loaded):
    access, combined, case = loaded
    assert sorted(access) == [*range(1, 16), 17]
    assert sorted(combined) == [1, 2, 3]
    _, rows = case.query("SELECT r.line, r.reason FROM rejects r JOIN sources s USING (source_id) "
                         "WHERE s.path = ? ORDER BY r.line", [str(ACCESS)])
    assert rows == [(16, "invalid JSON"), (18, "no usable timestamp"), (19, "not a JSON object")]


def test_verified_auth_jwt_claims_and_bound_certificate(loaded):
    access, _, _ = loaded
    src, e = record(ACCESS, 1), access[1]
    assert e["format"] == "nginx" and e["kind"] == "use" and e["outcome"] == "success"
    assert e["ts"] == at(src["msec"])  # milliseconds, not the seconds of time_iso8601
    assert e["token_key"] == e["token_id"] == src["jwt_claim_jti"]
    assert e["issuer"] == src["jwt_claim_iss"] and e["subject"] == src["jwt_claim_sub"]
    assert e["client_id"] == src["jwt_claim_azp"]
    assert e["audience"] == src["jwt_claim_aud"].split(",")
    assert e["scopes"] == src["jwt_claim_scope"].split()
    assert e["exp"] == at(src["jwt_claim_exp"]) and e["iat"] == at(src["jwt_claim_iat"])
    assert e["claims_verified"] is True and e["raw_token_logged"] is False
    assert e["token_fp"] is None
    # the token is bound to the certificate the connection presented
    thumb = x5t_of_escaped_pem(src["ssl_client_escaped_cert"])
    assert e["cnf_x5t"] == src["jwt_cnf_x5t"] == thumb
    assert e["peer_x5t"] == thumb
    assert (e["holder_id"], e["holder_tier"]) == (f"x5t:{thumb}", "mtls")
    assert e["status"] == int(src["status"]) and e["method"] == src["request_method"]
    assert e["path"] == src["request_uri"] and e["resource"] == src["host"]
    assert e["src_ip"] == src["remote_addr"] and e["user_agent"] == src["http_user_agent"]
    assert e["request_id"] == src["request_id"]
    assert e["extra"]["client_cert_s_dn"] == src["ssl_client_s_dn"]
    assert e["extra"]["client_cert_serial"] == src["ssl_client_serial"]
    assert e["extra"]["upstream_addr"] == src["upstream_addr"]


def test_traceparent_gives_trace_id_and_caller_span_id(loaded):
    access, _, _ = loaded
    for line in (1, 2, 3, 5, 14):
        version, trace, parent, _flags = record(ACCESS, line)["http_traceparent"].split("-")
        assert access[line]["trace_id"] == trace and len(trace) == 32
        assert access[line]["extra"]["caller_span_id"] == parent and len(parent) == 16
    assert access[4]["trace_id"] is None and access[4]["extra"]["caller_span_id"] is None
    # a malformed traceparent names no trace
    assert access[17]["trace_id"] is None and access[17]["extra"]["caller_span_id"] is None


def test_retries_keep_nginx_request_ids_and_the_client_id_in_extra(loaded):
    access, _, _ = loaded
    first, retry = record(ACCESS, 2), record(ACCESS, 3)
    assert first["http_x_request_id"] == retry["http_x_request_id"]
    assert access[2]["request_id"] == first["request_id"] != access[3]["request_id"]
    assert access[2]["extra"]["client_request_id"] == access[3]["extra"]["client_request_id"] \
        == first["http_x_request_id"]
    assert access[3]["extra"]["upstream_status"] == retry["upstream_status"] == "502, 201"
    assert access[2]["status"] == 503 and access[2]["outcome"] == "failure"
    assert access[2]["holder_id"] == access[3]["holder_id"] == access[1]["holder_id"]


def test_refusals_with_and_without_a_named_token(loaded):
    access, _, _ = loaded
    # auth_jwt_require refused a valid token for another audience: a deny naming the token
    src = record(ACCESS, 10)
    assert access[10]["kind"] == "deny" and access[10]["status"] == 403
    assert access[10]["token_key"] == src["jwt_claim_jti"]
    assert access[10]["audience"] == [src["jwt_claim_aud"]]
    assert access[10]["error"] == "insufficient_scope"
    # auth_jwt refused a bad token: no claims, so no token is named
    assert access[11]["kind"] == "other" and access[11]["token_key"] is None
    assert access[11]["status"] == 401 and access[11]["error"] == "invalid_token"
    assert access[7]["kind"] == "other"  # health probe, no token


def test_other_layouts_time_local_request_line_and_msec(loaded):
    _, combined, _ = loaded
    assert combined[1]["ts"] == datetime(2026, 11, 3, 9, 5, tzinfo=UTC)  # 10:05:00 +0100
    assert combined[1]["method"] == "GET" and combined[1]["path"] == "/v1/orders/77"
    assert combined[1]["extra"]["x_forwarded_for"] == record(COMBINED, 1)["http_x_forwarded_for"]
    assert combined[3]["ts"] == at(record(COMBINED, 3)["msec"])
    assert combined[3]["method"] == "POST" and combined[3]["kind"] == "deny"
    assert combined[3]["auth_scheme"] == "Basic"


def test_hostile_strings_are_kept_as_text(loaded):
    access, _, _ = loaded
    src, e = record(ACCESS, 17), access[17]
    assert e["user_agent"] == src["http_user_agent"] and e["subject"] == src["jwt_claim_sub"]
    assert e["src_ip"] == src["remote_addr"] and e["status"] == 404
    assert e["extra"]["x_forwarded_for"] == src["http_x_forwarded_for"]


# -- holder evidence ---------------------------------------------------------------------------

def test_replicas_behind_one_address_are_told_apart_by_their_certificates(loaded):
    access, _, _ = loaded
    a, b = access[1], access[4]
    assert a["src_ip"] == b["src_ip"]
    assert a["holder_id"] != b["holder_id"] and {a["holder_tier"], b["holder_tier"]} == {"mtls"}
    assert b["peer_x5t"] == x5t_of_escaped_pem(record(ACCESS, 4)["ssl_client_escaped_cert"])
    assert b["cnf_x5t"] == b["peer_x5t"]


def test_sha1_fingerprint_is_never_a_thumbprint(loaded):
    access, _, _ = loaded
    src, e = record(ACCESS, 8), access[8]
    assert src["ssl_client_verify"] == "SUCCESS" and src["ssl_client_escaped_cert"] == ""
    assert e["peer_x5t"] is None
    assert e["holder_tier"] == "network" and e["holder_id"] == "ip:10.20.3.9/legacy-reports"
    assert e["extra"]["client_cert_sha1"] == src["ssl_client_fingerprint"]


def test_a_certificate_that_did_not_verify_is_no_evidence(loaded):
    access, _, _ = loaded
    src, e = record(ACCESS, 9), access[9]
    assert src["ssl_client_escaped_cert"] and src["ssl_client_verify"].startswith("FAILED:")
    assert e["peer_x5t"] is None and e["holder_tier"] == "network"
    assert e["error"] == src["ssl_client_verify"]
    assert e["extra"]["ssl_client_verify"] == src["ssl_client_verify"]


def test_no_certificate_means_address_and_user_agent(loaded):
    access, _, _ = loaded
    assert access[14]["peer_x5t"] is None
    assert (access[14]["holder_id"], access[14]["holder_tier"]) == (
        "ip:203.0.113.66/python-requests", "network")
    assert access[5]["holder_id"] == access[6]["holder_id"] == "ip:198.51.100.23/partner-sync"


# -- secrets -----------------------------------------------------------------------------------

def test_logged_tokens_are_fingerprinted_decoded_and_dropped(loaded):
    access, combined, _ = loaded
    ops = record(ACCESS, 12)["http_authorization"].split(" ", 1)[1]
    e = access[12]
    assert e["kind"] == "deny" and e["token_fp"] == fingerprint(ops)
    assert e["token_key"] == "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"  # its jti, decoded
    assert e["client_id"] == "ops-console" and e["claims_verified"] is False
    assert e["raw_token_logged"] is True and e["auth_scheme"] == "Bearer"
    opaque = re.search(r"access_token=([^&]+)", record(ACCESS, 13)["request_uri"]).group(1)
    assert access[13]["token_key"] == "fp:" + fingerprint(opaque)
    assert access[13]["path"] == "/v1/reports/export.csv?access_token=[REDACTED]&day=2026-11-02"
    basic = record(COMBINED, 3)["http_authorization"].split(" ", 1)[1]
    assert combined[3]["token_fp"] == fingerprint(basic)


def _db_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("case.duckdb*")))


def test_no_raw_token_reaches_the_case_file(tmp_path):
    jwt_header = make_jwt({"jti": "nx-planted-1", "azp": "billing-agent", "aud": "orders-api"})
    jwt_query = make_jwt({"jti": "nx-planted-2", "azp": "partner-sync"})
    opaque = "opq_PlantedNginxSecretValue0123456789"
    rejected = make_jwt({"jti": "nx-planted-3"})
    base = record(ACCESS, 7)
    planted = write_jsonl(tmp_path / "planted.jsonl", [
        {**base, "http_authorization": f"Bearer {jwt_header}",
         "request_uri": f"/v1/orders?access_token={jwt_query}&x=1"},
        {**base, "request_uri": f"/v1/orders?key={opaque}&jwt={rejected}"},
        '{"time_iso8601": "2026-11-03T09:00:00+00:00", "remote_addr": "10.0.0.1", '
        f'"http_authorization": "Bearer {rejected}", "access_token": "{opaque}", "x": ',
    ])
    fixture_secrets = [
        record(ACCESS, 12)["http_authorization"].split(" ", 1)[1],
        re.search(r"access_token=([^&]+)", record(ACCESS, 13)["request_uri"]).group(1),
        re.search(r"access_token=(\S+) ", record(COMBINED, 2)["request"]).group(1),
        record(COMBINED, 3)["http_authorization"].split(" ", 1)[1],
    ]
    with Case(tmp_path / "case.duckdb") as case:
        report = ingest(case, [str(ACCESS), str(COMBINED), str(planted)])
        assert [f.format for f in report.files] == ["nginx"] * 3
        assert report.files[2].events == 2 and report.files[2].rejects == 1
        planted_events = events_by_line(case, planted)
        assert planted_events[1]["token_fp"] == fingerprint(jwt_header)
        assert "key=[REDACTED]" in planted_events[2]["path"]
        assert "jwt=[REDACTED]" in planted_events[2]["path"]
        case.con.execute("CHECKPOINT")
    blob = _db_bytes(tmp_path)
    for secret in [jwt_header, jwt_query, opaque, rejected, *fixture_secrets]:
        assert secret.encode() not in blob, secret[:12]
        for part in secret.split("."):  # no JWT segment (header, claims, signature) either
            assert part[:24].encode() not in blob, part[:12]
    # the Basic credentials decoded are not there either
    basic = base64.b64decode(fixture_secrets[3]).decode()
    assert basic.encode() not in blob


# -- end to end --------------------------------------------------------------------------------

def test_stolen_bound_token_is_reported_and_the_look_alikes_are_not(tmp_path):
    """Replica a's certificate-bound token used from the Internet without its certificate
    (lines 14-15) is stolen; retries, replicas behind one address and the partner's NAT are
    not flagged once the responder's policy names the partner's and the batch job's networks."""
    stolen_key = record(ACCESS, 14)["jwt_claim_jti"]
    with Case() as case:
        ingest(case, [str(ACCESS)])
        analysis = analyse(case.con, policy=load_policy(DIR / "policy.toml"))
        _, rows = case.query("SELECT token_key, holder_id, classification, confidence, reasons "
                             "FROM token_holders")
    got = {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}
    cert_a = "x5t:" + x5t_of_escaped_pem(record(ACCESS, 1)["ssl_client_escaped_cert"])
    cert_b = "x5t:" + x5t_of_escaped_pem(record(ACCESS, 4)["ssl_client_escaped_cert"])
    thief = "ip:203.0.113.66/python-requests"

    cls, conf, reasons = got[(stolen_key, thief)]
    assert cls == "stolen" and conf >= 0.7
    assert any(cert_a in r for r in reasons)  # names who it was bound to
    assert got[(stolen_key, cert_a)][0] == "owner"  # lines 1-3: the replica and its retries
    assert sorted(h for k, h in got if k == stolen_key) == sorted([cert_a, thief])
    assert got[(record(ACCESS, 4)["jwt_claim_jti"], cert_b)][0] == "owner"  # replica b
    assert got[(record(ACCESS, 10)["jwt_claim_jti"], cert_a)][0] == "owner"  # its refused token
    assert got[(record(ACCESS, 5)["jwt_claim_jti"], "ip:198.51.100.23/partner-sync")][0] == "owner"
    assert got[(record(ACCESS, 8)["jwt_claim_jti"], "ip:10.20.3.9/legacy-reports")][0] == "owner"

    findings = {(f.rule, f.token["key"], f.holder["id"] if f.holder else None)
                for f in analysis.findings}
    ops_jti = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
    opaque = re.search(r"access_token=([^&]+)", record(ACCESS, 13)["request_uri"]).group(1)
    # no certificate at all, in a log that records them: a broken binding (TT005), issue 11.4
    assert findings == {
        ("TT005", stolen_key, thief),
        ("TT013", ops_jti, "ip:10.20.5.5/curl"),
        ("TT013", "fp:" + fingerprint(opaque), "ip:10.20.5.5/curl"),
    }
