"""Auth0 tenant logs (Management API array, JSON Lines, Log Streams records): what a responder
reads from them, and the refresh-token replay and stolen Management API token they must show.

Expected values are read from the fixtures (tests/fixtures/auth0, see its README), not from
tokentrail's output.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, case_text, events_by_line, fingerprint, write_jsonl

from tokentrail import Case
from tokentrail.analyse import Analysis, analyse
from tokentrail.case.ingest import IngestReport, ingest
from tokentrail.sources.registry import FORMATS_DIR, builtin_mappings, get_mapping
from tokentrail.sources.sniff import PREFIX_BYTES, all_wrapper_keys, choose_format, sniff_container

DIR = FIXTURES / "auth0"
API = DIR / "logs.json"  # GET /api/v2/logs
LINES = DIR / "logs.jsonl"  # JSON Lines of events
STREAM = DIR / "stream.jsonl"  # Log Streams records, JSON Lines
BATCH = DIR / "stream-batch.json"  # Log Streams records, a webhook's JSON array batch
FILES = [API, LINES, STREAM, BATCH]

JWT_RE = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def _records(path: Path) -> dict[int, Any]:
    """The fixture's records by line (JSON Lines) or position (array); unparseable lines as
    their text. Log Streams records are unwrapped to their event."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        items = json.loads(text)
    else:
        items = []
        for line in text.splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                items.append(line)
    return {i: (r["data"] if isinstance(r, dict) and "data" in r else r)
            for i, r in enumerate(items, start=1)}


def _lines_of(path: Path, type_: str) -> list[int]:
    return [n for n, r in _records(path).items() if isinstance(r, dict) and r.get("type") == type_]


def _one(path: Path, type_: str) -> tuple[int, dict[str, Any]]:
    (line,) = _lines_of(path, type_)
    return line, _records(path)[line]


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Case, Analysis, IngestReport]]:
    """All four fixtures in one case file, ingested and analysed once for the read-only tests."""
    db = tmp_path_factory.mktemp("auth0") / "case.duckdb"
    c = Case(db)
    report = ingest(c, [str(p) for p in FILES])
    yield c, analyse(c.con), report
    c.close()


def _ev(scanned: tuple[Case, Analysis, IngestReport], path: Path) -> dict[int, dict[str, Any]]:
    return events_by_line(scanned[0], path)


# ---------------------------------------------------------------------------------------------
# Recognising the files


def test_api_array_json_lines_and_log_streams_are_sniffed_as_auth0(scanned) -> None:
    report = scanned[2]
    assert [f.status for f in report.files] == ["ingested"] * 4
    assert [(f.format, f.container) for f in report.files] == [
        ("auth0", "array"), ("auth0", "lines"), ("auth0", "lines"), ("auth0", "array")]
    assert [f.events for f in report.files] == [11, 10, 3, 2]
    assert [f.rejects for f in report.files] == [0, 3, 0, 0]


def _sniffed(path: Path) -> list[Any]:
    with open(path, "rb") as fh:
        prefix = fh.read(PREFIX_BYTES)
    return sniff_container(prefix, all_wrapper_keys(list(builtin_mappings()))).records


def test_other_formats_fixtures_are_not_taken_and_ours_not_by_them() -> None:
    auth0 = get_mapping("auth0")
    mappings = list(builtin_mappings())
    for path in FILES:
        assert choose_format(_sniffed(path), mappings) is auth0, path
    others = [p for p in sorted(FIXTURES.rglob("*.json*"))
              if p.is_file() and DIR not in p.parents]
    assert len(others) >= 8
    for path in others:
        records = _sniffed(path)
        assert all(auth0.sniff.score(r) == 0 for r in records), path
        assert choose_format(records, mappings) is not auth0, path
    # Look-alikes of other IdPs' events do not match.
    assert auth0.sniff.score({"time": 1, "type": "LOGIN", "realmId": "acme"}) == 0
    assert auth0.sniff.score({"published": "x", "eventType": "app.oauth2.token.grant"}) == 0
    assert auth0.sniff.score({"ts": "x", "kind": "use", "token_id": "jti-1"}) == 0


def test_log_streams_data_repeats_the_event_structure() -> None:
    """Columns read coalesce(r.data.X, r.X): both structures must stay the same."""
    record = tomllib.loads((FORMATS_DIR / "auth0.toml").read_text(encoding="utf-8"))["record"]
    top = {k: v for k, v in record.items() if k != "data"}
    assert record["data"] == top


# ---------------------------------------------------------------------------------------------
# Field mapping


def test_code_exchange_and_refreshes_name_the_minted_token_and_the_refresh_token_presented(
        scanned) -> None:
    ev, recs = _ev(scanned, API), _records(API)
    code, raw = ev[2], recs[2]  # the SPA's code exchange
    assert raw["type"] == "seacft"
    assert (code["kind"], code["outcome"]) == ("issue", "success")
    assert code["token_key"] == code["token_id"] == raw["details"]["access_token_jti"]
    assert code["client_id"] == raw["client_id"] and code["subject"] == raw["user_id"]
    assert code["issuer"] == f"https://{raw['hostname']}/"
    assert code["audience"] == [raw["audience"]]
    assert code["scopes"] == raw["scope"].split()
    assert code["src_ip"] == raw["ip"] and code["user_agent"] == raw["user_agent"]
    assert code["ts"] == datetime.fromisoformat(raw["date"].replace("Z", "+00:00"))
    assert code["extra"]["log_id"] == raw["log_id"]
    assert code["extra"]["client_name"] == raw["client_name"]
    assert "code" not in code["extra"]  # the (masked) authorization code is not kept

    spa_refreshes = [n for n in _lines_of(API, "sertft") if recs[n]["client_id"] == raw["client_id"]]
    assert len(spa_refreshes) == 2
    for n in spa_refreshes:
        d = recs[n]["details"]
        e = ev[n]
        assert (e["kind"], e["outcome"]) == ("refresh", "success")
        assert e["token_key"] == d["access_token_jti"]
        assert e["parent_token_key"] == f"{d['familyId']}#{d['tokenCounter']}"
        assert e["session_id"] == d["refresh_token"]["session_id"]
        assert e["extra"]["family_id"] == d["familyId"]
        assert e["extra"]["refresh_token_access"] == d["refresh_token"]["access"]
    # Rotation: each refresh presents a different refresh token of one family.
    first, second = (ev[n]["parent_token_key"] for n in spa_refreshes)
    assert first != second and first.split("#")[0] == second.split("#")[0]


def test_reuse_detection_is_a_refused_refresh_of_the_replayed_refresh_token(scanned) -> None:
    ev, recs = _ev(scanned, API), _records(API)
    line, raw = _one(API, "ferrt")
    reuse = ev[line]
    d = raw["details"]
    assert (reuse["kind"], reuse["outcome"]) == ("refresh", "failure")
    assert "reuse" in reuse["error"] and raw["description"] in reuse["error"]
    assert reuse["token_key"] == f"{d['familyId']}#{d['tokenCounter']}"
    assert (reuse["extra"]["token_counter"], reuse["extra"]["latest_counter"]) == (
        d["tokenCounter"], d["latestCounter"])
    # The replayed token is the one the SPA presented on its first refresh.
    presented = {ev[n]["parent_token_key"]: n for n in _lines_of(API, "sertft")}
    assert reuse["token_key"] in presented
    assert recs[presented[reuse["token_key"]]]["ip"] != raw["ip"]
    assert reuse["holder_id"] == f"ip:{raw['ip']}/python"
    assert reuse["extra"]["country_code"] == raw["location_info"]["country_code"]
    assert reuse["extra"]["ja3"] == raw["security_context"]["ja3"]

    line, raw = _one(API, "fertft")  # revoked family: the token presented cannot be named
    failed = ev[line]
    assert (failed["kind"], failed["outcome"], failed["error"]) == (
        "refresh", "failure", raw["description"])
    assert failed["token_key"] is None and failed["holder_tier"] == "network"

    line, raw = _one(API, "srrt")
    revoke = ev[line]
    assert (revoke["kind"], revoke["outcome"]) == ("revoke", "success")
    assert revoke["token_key"] == raw["details"]["credential_id"]
    assert revoke["path"] == raw["details"]["originalUrl"]


def test_holder_is_the_client_only_where_the_grant_requires_client_authentication(
        scanned) -> None:
    api, lines, stream = _ev(scanned, API), _ev(scanned, LINES), _ev(scanned, STREAM)
    # Client credentials: only a confidential client that proved itself gets a token.
    line, raw = _one(LINES, "seccft")
    cc = lines[line]
    assert (cc["holder_id"], cc["holder_tier"]) == (f"client:{raw['client_id']}", "workload")
    assert cc["subject"] == f"{raw['client_id']}@clients"
    assert cc["audience"] == [raw["audience"]] and cc["scopes"] == raw["scope"].split()
    # On-behalf-of exchange: the client must authenticate; the act claim names the chain.
    line, raw = _one(LINES, "success_on_behalf_of_token_exchange")
    obo = lines[line]
    assert (obo["kind"], obo["token_key"]) == ("exchange", raw["details"]["access_token_jti"])
    assert obo["holder_id"] == f"client:{raw['client_id']}"
    assert obo["act_chain"] == [raw["details"]["actor"]["sub"], raw["details"]["actor"]["act"]["sub"]]
    assert obo["subject"] == raw["user_id"] and obo["audience"] == [raw["audience"]]
    assert obo["extra"]["agent_id"] == raw["agent_id"] and obo["agent"] is None
    assert obo["extra"]["subject_token_type"] == raw["details"]["subject_token_type"]
    # Public clients (SPA code exchange, custom token exchange by the iOS app) and failures
    # (a wrong client secret, a refused exchange) are only an address and a user agent.
    assert api[2]["holder_id"] == f"ip:{_records(API)[2]['ip']}/chrome"
    for path, type_ in ((LINES, "secte"), (API, "feccft"),
                        (LINES, "failed_on_behalf_of_token_exchange")):
        line, raw = _one(path, type_)
        e = _ev(scanned, path)[line]
        assert e["holder_tier"] == "network" and e["src_ip"] == raw["ip"], type_
    secte = lines[_one(LINES, "secte")[0]]
    assert secte["scopes"] == _one(LINES, "secte")[1]["scope"]  # scope given as an array
    # mTLS client authentication: the certificate is the presenter.
    line, raw = _one(STREAM, "seacft")
    assert (stream[line]["holder_id"], stream[line]["holder_tier"]) == (
        f"x5t:{raw['mtls_thumbprint_sha256']}", "mtls")
    assert stream[line]["peer_x5t"] == raw["mtls_thumbprint_sha256"]


def test_management_api_calls_present_the_token_they_were_made_with(scanned) -> None:
    lines, recs = _ev(scanned, LINES), _records(LINES)
    issued = lines[_one(LINES, "seccft")[0]]["token_key"]
    for type_, kind in (("sapi", "use"), ("fapi", "deny"), ("mgmt_api_read", "use")):
        for n in _lines_of(LINES, type_):
            req, resp = recs[n]["details"]["request"], recs[n]["details"]["response"]
            e = lines[n]
            assert e["kind"] == kind, type_
            assert e["token_key"] == req["auth"]["credentials"]["jti"] == issued
            assert e["method"] == req["method"].upper() and e["status"] == resp["statusCode"]
            assert e["path"] == req["path"].split("?")[0]  # query strings are not stored
            assert e["src_ip"] == recs[n]["ip"] and e["issuer"] is None
            assert e["extra"]["mgmt_auth_strategy"] == req["auth"]["strategy"]
    fapi = lines[_lines_of(LINES, "fapi")[0]]
    assert fapi["outcome"] == "failure" and fapi["error"].startswith("Insufficient scope")
    read = lines[_lines_of(LINES, "mgmt_api_read")[0]]
    assert read["extra"]["accessed_secrets"] == ["client_secret"]  # names, not values


def test_log_streams_records_are_read_from_data(scanned) -> None:
    stream, batch = _ev(scanned, STREAM), _ev(scanned, BATCH)
    envelopes = [json.loads(x) for x in STREAM.read_text().splitlines()]
    for n, env in enumerate(envelopes, start=1):
        e, data = stream[n], env["data"]
        assert e["extra"]["log_id"] == env["log_id"]
        assert e["ts"].strftime("%Y-%m-%dT%H:%M:%S") == data["date"][:19]
        assert e["client_id"] == data["client_id"] and e["src_ip"] == data["ip"]
    line, raw = _one(STREAM, "sertft")
    assert stream[line]["parent_token_key"] == f"{raw['details']['familyId']}#1"
    line, raw = _one(STREAM, "seccft")
    assert stream[line]["scopes"] == raw["scope"]  # an array here
    # The next token the worker was issued (stream) is the one it then used (batch).
    line, raw = _one(BATCH, "sapi")
    assert batch[line]["token_key"] == stream[_one(STREAM, "seccft")[0]]["token_key"]
    assert batch[_one(BATCH, "w")[0]]["kind"] == "other"


def test_rejects_name_the_line_and_the_reason(scanned) -> None:
    case = scanned[0]
    rows = case.con.execute(
        "select r.line, r.reason, r.excerpt from rejects r join sources s using (source_id) "
        "where s.path = ? order by r.line", [str(LINES)]).fetchall()
    assert [(line, reason) for line, reason, _ in rows] == [
        (10, "invalid JSON"), (11, "no usable timestamp"), (12, "no type: not an Auth0 log event")]
    assert "[REDACTED]" in rows[0][2]
    # the line after the rejects keeps its own number
    assert _ev(scanned, LINES)[13]["extra"]["event_type"] == _records(LINES)[13]["type"]


# ---------------------------------------------------------------------------------------------
# Secret hygiene


def test_no_raw_token_or_secret_reaches_the_case_file(scanned) -> None:
    case = scanned[0]
    text = "".join(p.read_text(encoding="utf-8") for p in FILES)
    jwts = sorted(set(JWT_RE.findall(text)))
    assert len(jwts) == 2
    recs = _records(LINES)
    body = recs[_lines_of(LINES, "sapi")[0]]["details"]["request"]["body"]
    refresh_token = body["app_metadata"]["legacy_refresh_token"]
    client_secret = recs[_lines_of(LINES, "mgmt_api_read")[0]]["details"]["response"]["body"][
        "client_secret"]
    assert refresh_token in recs[10] and client_secret in text  # planted where we think
    case.con.execute("CHECKPOINT")
    db = Path(case.path)
    blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    stored = case_text(case) + "".join(
        str(case.con.execute(f"select * from {t}").fetchall())
        for t in ("tokens", "token_holders", "links", "findings"))
    for secret in [*jwts, refresh_token, client_secret]:
        assert secret.encode() not in blob and secret not in stored
        assert secret[:24].encode() not in blob and secret[:24] not in stored
    for jwt in jwts:
        assert jwt.split(".")[1] not in stored and jwt.split(".")[2] not in stored


def test_a_logged_jwt_is_fingerprinted_joined_by_its_jti_and_dropped(scanned) -> None:
    lines = _ev(scanned, LINES)
    line, raw = _one(LINES, "fecte")  # the subject token in the Action's rejection reason
    subject_token = JWT_RE.search(raw["description"]).group(0)
    e = lines[line]
    assert (e["kind"], e["outcome"]) == ("exchange", "failure")
    assert e["raw_token_logged"] is True and e["token_fp"] == fingerprint(subject_token)
    assert e["token_key"] == _claims(subject_token)["jti"]
    assert e["error"] == "Invalid subject token: [REDACTED]"
    line, raw = _one(LINES, "slo")  # a JWT without jti in the return_to URL
    logged = JWT_RE.search(raw["details"]["return_to"]).group(0)
    assert lines[line]["token_key"] == "fp:" + fingerprint(logged)
    assert lines[line]["session_id"] == raw["details"]["session_id"]
    assert "return_to" not in lines[line]["extra"]
    assert [n for n in lines if lines[n]["raw_token_logged"]] == sorted(
        (_one(LINES, "fecte")[0], line))


# ---------------------------------------------------------------------------------------------
# End to end: the cross-holder cases a responder expects, and the look-alikes left alone


def test_refresh_token_replay_and_stolen_management_token_are_reported_look_alikes_are_not(
        scanned) -> None:
    case, analysis, _ = scanned
    api, lines = _ev(scanned, API), _ev(scanned, LINES)
    by_rule: dict[str, list[Any]] = {}
    for f in analysis.findings:
        by_rule.setdefault(f.rule, []).append(f)

    # 1. The SPA's rotated refresh token replayed from another country: Auth0 detected the
    #    reuse and revoked the family; the replayer is named.
    reuse = api[_one(API, "ferrt")[0]]
    (tt009,) = by_rule.pop("TT009")
    assert (tt009.token["key"], tt009.holder["id"]) == (reuse["token_key"], reuse["holder_id"])
    assert tt009.classification == "stolen" and tt009.severity == "high"
    assert any("reuse" in r for r in tt009.reasons)
    assert [e["line"] for e in tt009.evidence] == [_one(API, "ferrt")[0]]

    # 2. The billing worker's Management API token presented from an unknown address.
    seccft = lines[_one(LINES, "seccft")[0]]
    thief = lines[_lines_of(LINES, "fapi")[0]]["holder_id"]
    owner = lines[_lines_of(LINES, "sapi")[0]]["holder_id"]
    (tt004,) = by_rule.pop("TT004")
    assert (tt004.token["key"], tt004.holder["id"]) == (seccft["token_key"], thief)
    assert tt004.intended_holder == {"id": seccft["holder_id"], "tier": "workload"}
    assert sorted(e["line"] for e in tt004.evidence) == sorted(
        n for n in _lines_of(LINES, "sapi") + _lines_of(LINES, "fapi")
        if lines[n]["holder_id"] == thief)
    _, rows = case.query(
        "select holder_id, classification, confidence from token_holders where token_key = ? "
        "order by holder_id", [seccft["token_key"]])
    assert rows == [(owner, "owner", 0.7), (thief, "stolen", 0.75)]

    # 3. The two raw JWTs the logs held are reported as such (TT013), and nothing else.
    assert sorted(f.token["key"] for f in by_rule.pop("TT013")) == sorted(
        lines[_one(LINES, t)[0]]["token_key"] for t in ("fecte", "slo"))
    assert by_rule == {}

    # Look-alikes: rotation by the same SPA from the same address, the iOS app's refresh
    # after a mobile network change, the worker's own calls and next token, the mTLS portal
    # and the agent's exchange: no finding names their tokens or holders.
    cross_holder = [f for f in analysis.findings if f.rule in ("TT004", "TT009")]
    flagged_keys = {f.token.get("key") for f in cross_holder}
    flagged_holders = {f.holder["id"] for f in cross_holder}
    quiet = [e for p in FILES for e in _ev(scanned, p).values()
             if e["kind"] in ("issue", "refresh", "exchange", "use") and e["outcome"] == "success"
             and e["holder_id"] != thief]
    assert len(quiet) >= 15
    for e in quiet:
        assert e["holder_id"] not in flagged_holders, e
        # (the worker's own use of its stolen token is classified owner, above)
        assert e["token_key"] not in flagged_keys or e["token_key"] == seccft["token_key"], e
    # Of the refresh tokens the clients presented, only the replayed one is reported.
    presented = {e["parent_token_key"] for e in quiet if e["parent_token_key"]}
    assert len(presented) == 5 and presented & flagged_keys == {reuse["token_key"]}
    # (the iOS app did refresh from two networks: the look-alike is really there)
    ios = _records(API)[3]["client_id"]
    assert len({api[n]["src_ip"] for n in _lines_of(API, "sertft")
                if _records(API)[n]["client_id"] == ios}) == 2


def test_the_on_behalf_of_token_is_a_delegate_at_the_downstream_api(tmp_path: Path) -> None:
    """The access_token_jti in Auth0's log joins the downstream API's own log: the agent that
    exchanged the token is a delegate there; the same token from elsewhere is not."""
    _, raw = _one(LINES, "success_on_behalf_of_token_exchange")
    jti = raw["details"]["access_token_jti"]
    api_log = write_jsonl(tmp_path / "tickets-api.jsonl", [
        {"ts": "2026-03-10T11:40:03Z", "kind": "use", "token_id": jti, "src_ip": raw["ip"],
         "user_agent": raw["user_agent"], "resource": raw["audience"], "status": 200},
        {"ts": "2026-03-10T11:52:10Z", "kind": "use", "token_id": jti, "src_ip": "198.51.100.77",
         "user_agent": "curl/8.5.0", "resource": raw["audience"], "status": 200},
    ])
    with Case() as case:
        report = ingest(case, [str(LINES), str(api_log)])
        assert [f.format for f in report.files] == ["auth0", "tokentrail"]
        analyse(case.con, rules=[])
        _, rows = case.query("select holder_id, classification from token_holders "
                             "where token_key = ? order by holder_id", [jti])
    assert rows == [(f"ip:{raw['ip']}/python-httpx", "delegate"), ("ip:198.51.100.77/curl", "stolen")]
