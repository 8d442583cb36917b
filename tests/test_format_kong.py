"""Kong Gateway log plugins (file-log JSON Lines, http-log batch arrays): token evidence from
the custom_fields_by_lua preset and from raw credentials Kong logs, holders, rejects, secret
hygiene, and a stolen token classified end to end.

Expected values are read from the fixture records (tests/fixtures/kong/README.md tells the
story), never from tokentrail's output."""

from __future__ import annotations

import base64
import hashlib
import json
import re
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

DIR = FIXTURES / "kong"
FILE_LOG = DIR / "file-log.jsonl"
BATCH = DIR / "http-log-batch.json"
LOG_SUFFIXES = {".json", ".jsonl", ".log", ".gz"}


def record(line: int) -> dict[str, Any]:
    return json.loads(FILE_LOG.read_text(encoding="utf-8").splitlines()[line - 1])


def batch(n: int) -> dict[str, Any]:
    return json.loads(BATCH.read_text(encoding="utf-8"))[n - 1]


def x5t_of_pem(pem: str) -> str:
    body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    assert body
    der = base64.b64decode("".join(body.group(1).split()))
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def at_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], Case]]:
    c = Case()
    report = ingest(c, [str(FILE_LOG), str(BATCH)])
    assert [(f.format, f.container, f.status) for f in report.files] == [
        ("kong", "lines", "ingested"), ("kong", "array", "ingested")]
    yield events_by_line(c, FILE_LOG), events_by_line(c, BATCH), c
    c.close()


# -- sniffing --------------------------------------------------------------------------------

def _sniffed(path: Path) -> list[Any]:
    with open(path, "rb") as fh:
        prefix = fh.read(PREFIX_BYTES)
    return sniff_container(prefix, all_wrapper_keys(list(builtin_mappings()))).records


def test_file_log_lines_and_http_log_batches_are_sniffed_as_kong():
    kong = get_mapping("kong")
    for path in (FILE_LOG, BATCH):
        assert choose_format(_sniffed(path), list(builtin_mappings())) is kong, path


def test_no_other_fixture_or_sample_log_is_taken_by_kong():
    mappings = list(builtin_mappings())
    kong = get_mapping("kong")
    files = [p for p in sorted(FIXTURES.glob("*/*")) + sorted((REPO / "sample-logs").glob("*"))
             if p.suffix in LOG_SUFFIXES and p.parent.name != "kong"]
    assert any(p.parent.name == "nginx" for p in files) and any(p.parent.name == "envoy" for p in files)
    for path in files:
        records = _sniffed(path)
        assert all(kong.sniff.score(r) == 0 for r in records), path
        assert choose_format(records, mappings) is not kong, path


def test_kong_records_are_not_envoy_or_nginx():
    envoy, nginx = get_mapping("envoy"), get_mapping("nginx")
    for path in (FILE_LOG, BATCH):
        for r in _sniffed(path):
            assert envoy.sniff.score(r) == 0 and nginx.sniff.score(r) == 0


# -- field mapping -----------------------------------------------------------------------------

def test_every_record_is_an_event_or_a_reject_with_its_line_and_reason(loaded):
    lines, batched, case = loaded
    assert sorted(lines) == [*range(1, 13), 14, 16]
    assert sorted(batched) == [1, 2, 3]  # record numbers of the batch array
    _, rows = case.query("SELECT r.line, r.reason FROM rejects r JOIN sources s USING (source_id) "
                         "WHERE s.path = ? ORDER BY r.line", [str(FILE_LOG)])
    assert rows == [(13, "invalid JSON"), (15, "no usable timestamp")]


def test_preset_fields_give_a_verified_token(loaded):
    lines, _, _ = loaded
    src, e = record(1), lines[1]
    claims = src["tokentrail"]["claims"]
    assert e["format"] == "kong" and e["kind"] == "use" and e["outcome"] == "success"
    assert e["ts"] == at_ms(src["started_at"])
    assert e["token_key"] == e["token_id"] == claims["jti"]
    assert e["token_fp"] == src["tokentrail"]["token_fp"]
    assert e["claims_verified"] is True and e["raw_token_logged"] is False
    assert e["client_id"] == claims["azp"] and e["subject"] == claims["sub"]
    assert e["issuer"] == claims["iss"] and e["audience"] == [claims["aud"]]
    assert e["scopes"] == claims["scope"].split()
    assert e["exp"] == datetime.fromtimestamp(claims["exp"], tz=UTC)
    assert e["status"] == src["response"]["status"] and e["method"] == src["request"]["method"]
    assert e["path"] == src["request"]["uri"] and e["resource"] == src["service"]["name"]
    assert e["src_ip"] == src["client_ip"]
    assert e["user_agent"] == src["request"]["headers"]["user-agent"]
    assert e["request_id"] == src["request"]["id"]
    assert (e["holder_id"], e["holder_tier"]) == ("ip:198.51.100.40/stock-agent", "network")
    x = e["extra"]
    assert x["credential_id"] == src["authenticated_entity"]["id"]  # a credential, not a token
    assert x["consumer_id"] == src["consumer"]["id"]
    assert x["consumer_username"] == src["consumer"]["username"]
    assert x["route"] == src["route"]["name"] and x["service"] == src["service"]["name"]
    assert x["upstream_status"] == src["upstream_status"] and x["workspace"] == "default"


def test_traceparent_string_or_array_gives_trace_id_and_caller_span_id(loaded):
    lines, _, _ = loaded
    for line in (1, 2):
        header = record(line)["request"]["headers"]["traceparent"]
        _v, trace, parent, _f = (header[0] if isinstance(header, list) else header).split("-")
        assert lines[line]["trace_id"] == trace
        assert lines[line]["extra"]["caller_span_id"] == parent
    assert lines[3]["trace_id"] is None
    # all-zero ids are invalid (W3C trace context)
    assert lines[14]["trace_id"] is None and lines[14]["extra"]["caller_span_id"] is None


def test_balancer_and_client_retries(loaded):
    lines, _, _ = loaded
    failed, retry = record(3), record(4)
    assert lines[3]["status"] == 503 and lines[3]["outcome"] == "failure"
    assert lines[3]["extra"]["upstream_tries"] == len(failed["tries"]) == 2
    assert lines[3]["request_id"] == failed["request"]["id"] != lines[4]["request_id"]
    assert lines[3]["extra"]["client_request_id"] == lines[4]["extra"]["client_request_id"] \
        == retry["request"]["headers"]["x-request-id"]
    assert lines[3]["holder_id"] == lines[4]["holder_id"] == lines[1]["holder_id"]


def test_refusals_and_records_without_token_evidence(loaded):
    lines, batched, _ = loaded
    assert lines[7]["kind"] == "other" and lines[7]["status"] == 401  # jwt plugin refused
    assert lines[8]["kind"] == "deny" and lines[8]["status"] == 403
    assert lines[8]["token_key"] == record(8)["tokentrail"]["claims"]["jti"]
    assert record(9)["request"]["headers"]["authorization"] == "REDACTED"
    assert lines[9]["kind"] == "other" and lines[9]["token_key"] is None  # no preset
    assert lines[16]["kind"] == "other" and lines[16]["resource"] == record(16)["service"]["name"]
    assert batched[3]["kind"] == "other" and batched[3]["status"] == 404


def test_http_log_batch_records(loaded):
    _, batched, _ = loaded
    for n in (1, 2):
        src = batch(n)
        assert batched[n]["ts"] == at_ms(src["started_at"])
        assert batched[n]["token_key"] == src["tokentrail"]["claims"]["jti"]
        assert batched[n]["holder_id"] == "ip:198.51.100.40/stock-agent"


def test_hostile_values_and_types(loaded):
    lines, _, _ = loaded
    src, e = record(14), lines[14]
    assert e["src_ip"] is None and e["holder_id"] is None  # client_ip is not an address
    assert e["user_agent"] == src["request"]["headers"]["user-agent"][0]
    assert e["client_id"] is None and e["token_key"] is None  # consumer / claims not objects
    assert e["extra"]["route"] == src["route"]["name"]
    assert e["path"] == src["request"]["uri"]


# -- holder evidence ---------------------------------------------------------------------------

def test_verified_client_certificate_is_the_holder_and_matches_the_binding(loaded):
    lines, _, _ = loaded
    src, e = record(5), lines[5]
    thumb = x5t_of_pem(src["tokentrail"]["client_cert"])
    assert src["request"]["tls"]["client_verify"] == "SUCCESS"
    assert e["peer_x5t"] == thumb == src["tokentrail"]["claims"]["cnf"]["x5t#S256"] == e["cnf_x5t"]
    assert (e["holder_id"], e["holder_tier"]) == (f"x5t:{thumb}", "mtls")


def test_certificate_is_ignored_unless_kong_verified_it(case, tmp_path):
    src = record(5)
    src["request"]["tls"]["client_verify"] = "FAILED:unable to get local issuer certificate"
    ingest(case, [str(write_jsonl(tmp_path / "k.jsonl", [src]))])
    e = events_by_line(case, tmp_path / "k.jsonl")[1]
    assert e["peer_x5t"] is None and e["holder_id"] == "ip:192.0.2.10/ledger-sync"


def test_replicas_behind_one_nat_are_one_holder(loaded):
    lines, _, _ = loaded
    assert record(1)["request"]["headers"]["user-agent"] != record(2)["request"]["headers"]["user-agent"]
    assert lines[1]["holder_id"] == lines[2]["holder_id"]


# -- secrets -----------------------------------------------------------------------------------

def test_raw_credentials_kong_logs_are_fingerprinted_and_dropped(loaded):
    lines, _, _ = loaded
    apikey = record(6)["request"]["headers"]["apikey"]
    assert lines[6]["token_key"] == "fp:" + fingerprint(apikey)
    assert lines[6]["raw_token_logged"] is True
    assert lines[6]["client_id"] == record(6)["consumer"]["username"]  # the key's owner
    header = record(10)["x-original-authorization"].split(" ", 1)[1]
    assert lines[10]["token_fp"] == fingerprint(header) and lines[10]["auth_scheme"] == "Bearer"
    assert lines[10]["claims_verified"] is False and lines[10]["client_id"] == "ops-console"
    query_jwt = record(11)["request"]["querystring"]["jwt"]
    assert lines[11]["token_fp"] == fingerprint(query_jwt)
    assert lines[11]["path"] == "/v1/stock?jwt=[REDACTED]&warehouse=berlin"
    assert lines[11]["extra"]["upstream_uri"] == "/v1/stock?jwt=[REDACTED]&warehouse=berlin"


def _db_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("case.duckdb*")))


def test_no_raw_token_reaches_the_case_file(tmp_path):
    header_jwt = make_jwt({"jti": "kg-planted-1", "azp": "stock-agent", "aud": "inventory-api"})
    query_jwt = make_jwt({"jti": "kg-planted-2", "azp": "stock-agent"})
    opaque = "opq_PlantedKongSecretValue0123456789"
    rejected = make_jwt({"jti": "kg-planted-3"})
    base = record(9)
    first = json.loads(json.dumps(base))
    first["request"]["headers"]["authorization"] = [f"Bearer {header_jwt}", "Basic Zm9vOmJhcg=="]
    first["request"]["uri"] = f"/v1/stock?access_token={query_jwt}&apikey={opaque}"
    first["request"]["querystring"] = {"access_token": query_jwt, "apikey": opaque}
    second = json.loads(json.dumps(base))
    second["request"]["headers"]["apikey"] = [opaque, opaque]
    planted = write_jsonl(tmp_path / "planted.jsonl", [
        first, second,
        '{"started_at": 1793700000000, "client_ip": "10.0.0.1", "request": {"headers": '
        f'{{"authorization": "Bearer {rejected}", "apikey": "{opaque}"}}, "x": ',
    ])
    secrets = json.loads(json.dumps([record(6)["request"]["headers"]["apikey"],
                                     record(10)["x-original-authorization"].split(" ", 1)[1],
                                     record(11)["request"]["querystring"]["jwt"]]))
    # the record cut off mid-write (a reject) holds the start of a raw header
    cut = FILE_LOG.read_text(encoding="utf-8").splitlines()[12]
    secrets.append(re.search(r"Bearer (eyJ[A-Za-z0-9_.-]+)", cut).group(1))
    with Case(tmp_path / "case.duckdb") as case:
        report = ingest(case, [str(FILE_LOG), str(planted)])
        assert [f.format for f in report.files] == ["kong"] * 2
        assert report.files[1].events == 2 and report.files[1].rejects == 1
        got = events_by_line(case, planted)
        assert got[1]["token_fp"] == fingerprint(header_jwt)  # first of the repeated headers
        assert got[2]["token_fp"] == fingerprint(opaque)
        case.con.execute("CHECKPOINT")
    blob = _db_bytes(tmp_path)
    for secret in [header_jwt, query_jwt, opaque, rejected, *secrets]:
        assert secret.encode() not in blob, secret[:12]
        for part in secret.split("."):
            assert part[:24].encode() not in blob, part[:12]


# -- end to end --------------------------------------------------------------------------------

def test_stolen_token_is_reported_and_the_look_alikes_are_not(loaded):
    """stock-agent's token exported the stock list from 203.0.113.99 (line 12): stolen. Its
    replicas behind the site's NAT, their retries, the refused admin call, the mTLS partner
    and the key-auth batch are not flagged once the policy names the NAT and the batch subnet;
    the raw credentials in the log are (TT013)."""
    stolen_key = record(12)["tokentrail"]["claims"]["jti"]
    thief = "ip:203.0.113.99/go-http-client"
    nat = "ip:198.51.100.40/stock-agent"
    case = loaded[2]  # both files, as ingested for the tests above
    analysis = analyse(case.con, policy=load_policy(DIR / "policy.toml"))
    _, rows = case.query("SELECT token_key, holder_id, classification, confidence, reasons "
                         "FROM token_holders")
    got = {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}

    cls, conf, reasons = got[(stolen_key, thief)]
    assert cls == "stolen" and conf >= 0.7
    assert any("client:stock-agent" in r for r in reasons)
    assert sorted(h for k, h in got if k == stolen_key) == sorted([nat, thief])
    assert got[(stolen_key, nat)][0] == "owner"
    assert got[(batch(1)["tokentrail"]["claims"]["jti"], nat)][0] == "owner"
    ledger = "x5t:" + x5t_of_pem(record(5)["tokentrail"]["client_cert"])
    assert got[(record(5)["tokentrail"]["claims"]["jti"], ledger)][:2] == ("owner", 0.95)
    apikey_key = "fp:" + fingerprint(record(6)["request"]["headers"]["apikey"])
    assert got[(apikey_key, "ip:10.40.3.3/python-urllib3")][0] == "owner"

    findings = {(f.rule, f.token["key"], f.holder["id"] if f.holder else None)
                for f in analysis.findings}
    assert findings == {
        ("TT004", stolen_key, thief),
        ("TT013", apikey_key, "ip:10.40.3.3/python-urllib3"),
        ("TT013", "kg-4f6b8d0a-2a3c-4e5f-9a7b-8c9d0e1f2a3b", "ip:10.40.5.5/curl"),
        ("TT013", "kg-5a7c9e1b-3b4d-4f6a-8b8c-9d0e1f2a3b4c", "ip:10.40.5.5/curl"),
    }
