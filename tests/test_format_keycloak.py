"""Keycloak events (admin REST API JSON array and JSON Lines): what a responder reads from them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, case_text, events_by_line, fingerprint, write_jsonl

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import get_mapping

DIR = FIXTURES / "keycloak"
ARRAY = DIR / "events.json"
LINES = DIR / "events.jsonl"
ADMIN = DIR / "admin-events.json"

U1 = "5f1c2a9e-8d3b-4b7a-9c61-2e0d4f8a7b13"
AT1 = "onrtac:3f9a1c2e-7b4d-8e6f-a0b1-c2d3e4f5a6b7"
RT_SPA = "6f5e4d3c-2b1a-4098-8765-43210fedcba9"


_events = events_by_line
_all_text = case_text


@pytest.fixture(scope="module")
def loaded() -> Iterator[Case]:
    """All three fixtures in one in-memory case, ingested once for the read-only tests."""
    c = Case()
    report = ingest(c, [str(ARRAY), str(LINES), str(ADMIN)])
    assert [f.status for f in report.files] == ["ingested"] * 3
    yield c
    c.close()


def test_array_lines_and_admin_events_are_sniffed_as_keycloak(case: Case) -> None:
    report = ingest(case, [str(ARRAY), str(LINES), str(ADMIN)])
    assert [(f.format, f.container) for f in report.files] == [
        ("keycloak", "array"), ("keycloak", "lines"), ("keycloak", "array")]
    assert [f.events for f in report.files] == [9, 7, 3]
    assert [f.rejects for f in report.files] == [0, 3, 0]


def test_other_formats_are_not_taken(case: Case, tmp_path: Path) -> None:
    envoy = write_jsonl(tmp_path / "gw.jsonl", [{
        "start_time": "2025-03-14T09:00:00.000Z", "method": "GET", "path": "/v1/orders",
        "response_code": 200, "downstream_remote_address": "10.1.2.3:51000",
        "user_agent": "curl/8.5.0", "request_id": "r-1", "authority": "orders.acme.example"}])
    own = write_jsonl(tmp_path / "app.jsonl", [{
        "ts": "2025-03-14T09:00:00Z", "kind": "use", "token_id": "jti-1", "src_ip": "10.0.0.1"}])
    report = ingest(case, [str(envoy), str(own)])
    assert [f.format for f in report.files] == ["envoy", "tokentrail"]
    kc = get_mapping("keycloak")
    assert kc.sniff.score({"start_time": "x", "response_code": 200}) == 0
    assert kc.sniff.score({"ts": "x", "kind": "use", "token_id": "t"}) == 0
    # Keycloak's admin-event and user-event shapes both match.
    assert kc.sniff.score({"time": 1, "realmId": "r", "type": "LOGIN"}) > 0
    assert kc.sniff.score({"time": 1, "realmId": "r", "operationType": "CREATE"}) > 0


def test_issuance_names_the_minted_token_its_client_and_user(loaded: Case) -> None:
    case = loaded
    ev = _events(case, ARRAY)
    code = ev[2]
    assert (code["kind"], code["outcome"]) == ("issue", "success")
    assert code["token_key"] == code["token_id"] == AT1
    assert code["client_id"] == "web-portal" and code["subject"] == U1
    assert code["issuer"] == "acme" and code["session_id"] == "q7Y8IQLk-8uJWuPcijrV6GeS"
    assert code["scopes"] == ["openid", "profile", "email"]
    assert code["src_ip"] == "10.20.0.15"
    assert code["extra"]["refresh_token_id"] == "8c0a9b1e-2d3f-4a5b-9c6d-7e8f9a0b1c2d"
    assert code["extra"]["code_id"] == ev[1]["extra"]["code_id"]  # joins LOGIN to CODE_TO_TOKEN
    assert ev[1]["kind"] == "login" and ev[1]["token_key"] is None
    cc = ev[4]
    assert cc["kind"] == "issue"
    assert cc["token_key"] == "trrtcc:77c0ffee-1234-4abc-9def-0123456789ab"
    assert cc["client_id"] == "billing-worker" and cc["session_id"] is None


def test_holder_is_the_authenticated_client_never_a_public_one(loaded: Case) -> None:
    case = loaded
    ev = _events(case, ARRAY)
    # client-jwt: the confidential client proved itself on the request.
    assert (ev[2]["holder_id"], ev[2]["holder_tier"]) == ("client:web-portal", "workload")
    # CLIENT_LOGIN succeeded with a secret: only confidential clients can.
    assert ev[4]["holder_id"] == "client:billing-worker"
    # The SPA is public: Keycloak still logs client-secret, but nothing was checked.
    assert ev[8]["extra"]["client_auth_method"] == "client-secret"
    assert (ev[8]["holder_id"], ev[8]["holder_tier"]) == ("ip:203.0.113.10", "network")
    assert ev[9]["holder_id"] == "ip:203.0.113.10"
    # A browser login is not client authentication either.
    assert ev[1]["holder_id"] == "ip:203.0.113.10"


def test_token_exchange_names_the_actor_audience_and_subject_client(loaded: Case) -> None:
    case = loaded
    te = _events(case, ARRAY)[5]
    assert te["kind"] == "exchange"
    assert te["token_key"] == "onrtte:51de7e11-aaaa-4bbb-8ccc-ddddeeeeffff"
    assert te["client_id"] == "orders-api" and te["subject"] == U1
    assert te["holder_id"] == "client:orders-api"
    assert te["audience"] == ["inventory-api"]
    assert te["extra"]["subject_token_client_id"] == "web-portal"
    assert te["extra"]["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    intro = _events(case, ARRAY)[6]
    assert intro["kind"] == "introspect"
    assert intro["client_id"] == "orders-api"  # the token's client, not the resource server
    assert intro["extra"]["requesting_client"] == "inventory-api"


def test_refresh_links_each_new_token_to_the_refresh_token_presented(loaded: Case) -> None:
    case = loaded
    arr, lines = _events(case, ARRAY), _events(case, LINES)
    code, first, second, revoke = arr[2], arr[3], lines[1], lines[6]
    assert first["kind"] == "refresh"
    assert first["token_key"] == "onrtrt:9e8d7c6b-5a49-3827-1605-f4e3d2c1b0a9"
    assert first["parent_token_key"] == code["extra"]["refresh_token_id"]
    # Rotation: the next refresh presents the refresh token the previous one returned.
    assert second["parent_token_key"] == first["extra"]["updated_refresh_token_id"]
    assert second["parent_token_key"] != first["parent_token_key"]
    # /revoke of a refresh token names it as refresh_token_id: that is the revoked token.
    assert revoke["kind"] == "revoke"
    assert revoke["token_key"] == second["extra"]["updated_refresh_token_id"]
    assert revoke["holder_id"] == "client:web-portal"
    spa_refresh = arr[9]
    assert spa_refresh["parent_token_key"] == RT_SPA == arr[8]["extra"]["refresh_token_id"]


def test_error_variants_are_failures_with_the_replayed_token(loaded: Case) -> None:
    case = loaded
    lines = _events(case, LINES)
    replay = lines[2]
    assert (replay["kind"], replay["outcome"]) == ("refresh", "failure")
    assert replay["error"] == "invalid_token: Stale token"
    # The refresh token replayed is the SPA's rotated-out one; the replayer is a new address.
    assert replay["token_key"] == RT_SPA and replay["parent_token_key"] is None
    assert replay["holder_id"] == "ip:198.51.100.77"
    te = lines[4]
    assert (te["kind"], te["outcome"]) == ("exchange", "failure")
    assert te["error"].startswith("invalid_client: Public client")
    assert te["holder_tier"] == "network"
    bare = lines[8]  # nulls everywhere and no details object
    assert (bare["kind"], bare["outcome"], bare["error"]) == ("issue", "failure", "invalid_code")
    assert bare["token_key"] is None and bare["holder_id"] is None and bare["src_ip"] is None
    ok = _events(case, ARRAY)
    assert {e["outcome"] for e in ok.values()} == {"success"}


def test_rejects_name_the_line_and_the_reason(loaded: Case) -> None:
    case = loaded
    rows = case.con.execute(
        "select r.line, r.reason, r.excerpt from rejects r join sources s using (source_id) "
        "where s.path = ? order by r.line", [str(LINES)]).fetchall()
    assert [(line, reason) for line, reason, _ in rows] == [
        (3, "invalid JSON"),
        (9, "neither a user event (type) nor an admin event (operationType)"),
        (10, "no usable timestamp"),
    ]
    assert "[REDACTED]" in rows[0][2]


def test_planted_jwt_is_fingerprinted_and_never_stored(loaded: Case) -> None:
    case = loaded
    raw = re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", LINES.read_text()).group(0)
    text = _all_text(case)
    assert raw not in text
    assert raw.split(".")[1] not in text and raw.split(".")[2] not in text
    use = _events(case, LINES)[5]
    assert use["kind"] == "use" and use["raw_token_logged"] is True
    assert use["token_fp"] == fingerprint(raw)
    # The decoded jti is the access token CODE_TO_TOKEN minted: issuance joins to this use.
    assert use["token_key"] == AT1 == _events(case, ARRAY)[2]["token_key"]
    assert use["holder_id"] == "ip:192.0.2.200"


def test_admin_events_are_context_and_their_representation_is_dropped(loaded: Case) -> None:
    case = loaded
    adm = _events(case, ADMIN)
    create = adm[1]
    assert create["kind"] == "other" and create["method"] == "CREATE"
    assert create["resource"] == "clients/3b1f0c9e-7a2d-4e5f-8b6c-9d0e1f2a3b4c"
    assert create["holder_id"] == "ip:198.51.100.77" and create["token_key"] is None
    assert create["extra"]["admin_client_id"] == "security-admin-console"
    assert create["extra"]["admin_realm_id"] == "master"
    assert adm[2]["resource"].endswith("/impersonation")
    # The created client's secret was in `representation`.
    assert "Xk29vQp1LmN8rTz4sWy7uB3c" not in _all_text(case)


def test_password_grant_login_issues_and_failed_client_login_is_not_the_client(
        case: Case, tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "kc.jsonl", [
        {"time": 1741942800000, "type": "LOGIN", "realmId": "acme", "clientId": "cli-tool",
         "userId": U1, "sessionId": "s-1", "ipAddress": "203.0.113.44",
         "details": {"grant_type": "password", "token_id": "onrtpw:11111111-2222-4333-8444-5555",
                     "refresh_token_id": "r-1", "username": "alice",
                     "client_auth_method": "client-secret"}},
        # A wrong secret: CLIENT_LOGIN_ERROR carries no client_auth_method.
        {"time": 1741942801000, "type": "CLIENT_LOGIN_ERROR", "realmId": "acme",
         "clientId": "billing-worker", "ipAddress": "198.51.100.77",
         "error": "invalid_client_credentials", "details": {"grant_type": "client_credentials"}},
    ])
    report = ingest(case, [str(log)])
    assert report.files[0].format == "keycloak"
    ev = _events(case, log)
    assert (ev[1]["kind"], ev[1]["token_key"]) == ("issue", "onrtpw:11111111-2222-4333-8444-5555")
    assert ev[1]["holder_id"] == "ip:203.0.113.44"
    assert (ev[2]["kind"], ev[2]["outcome"]) == ("issue", "failure")
    assert ev[2]["holder_id"] == "ip:198.51.100.77"
