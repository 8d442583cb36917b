"""Okta System Log (API JSON array and JSON Lines export): tokens, holders and replays."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, case_text, events_by_line, fingerprint, write_jsonl

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import get_mapping

DIR = FIXTURES / "okta"
ARRAY = DIR / "logs.json"
LINES = DIR / "logs.jsonl"

AS = "aus8xdg1oaSVfDgxa0g7"
ALICE = "00u1qw1mqitPHM8AJ0g7"
WEB = "0oa5cf7zxbqT2m1XH0g7"
SPA = "0oa9spa3vQ1XjYbC40g7"
SVC = "0oa2svc8PqRt3LmN90g7"
AT_WEB = "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE"
ID_WEB = "ID.4eAWJOCMB3SX8XewDfVR2pGmp3k9aWtAUd2ZCzV0Pg4"
RT_SPA = "RT.Mn8Bv6Cx4Za2Lk0Jh8Gf6Ds4Aq2Wr0Et8Yu6Io4Pl2K"
SESSION = "102N1EKyPFERROGvK9wizMAPQ"


@pytest.fixture(scope="module")
def loaded() -> Iterator[Case]:
    """Both fixtures in one in-memory case, ingested once for the read-only tests."""
    c = Case()
    report = ingest(c, [str(ARRAY), str(LINES)])
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    yield c
    c.close()


_events = events_by_line
_all_text = case_text


def test_array_and_lines_are_sniffed_as_okta(case: Case) -> None:
    report = ingest(case, [str(ARRAY), str(LINES)])
    assert [(f.format, f.container) for f in report.files] == [("okta", "array"),
                                                              ("okta", "lines")]
    assert [f.events for f in report.files] == [10, 4]
    assert [f.rejects for f in report.files] == [0, 3]


def test_other_formats_are_not_taken(case: Case, tmp_path: Path) -> None:
    envoy = write_jsonl(tmp_path / "gw.jsonl", [{
        "start_time": "2025-03-14T09:00:00.000Z", "method": "POST", "path": "/oauth2/v1/token",
        "response_code": 200, "downstream_remote_address": "10.1.2.3:51000",
        "user_agent": "okta-sdk-java/8.2.5", "authority": "acme.okta.com"}])
    keycloak = FIXTURES / "keycloak" / "events.json"
    report = ingest(case, [str(envoy), str(keycloak)])
    assert [f.format for f in report.files] == ["envoy", "keycloak"]
    okta = get_mapping("okta")
    assert okta.sniff.score({"start_time": "x", "response_code": 200}) == 0
    assert okta.sniff.score({"time": 1, "type": "LOGIN", "realmId": "acme"}) == 0
    assert okta.sniff.score({"ts": "x", "kind": "use", "token_id": "AT.x"}) == 0


def test_each_grant_event_names_its_own_token(loaded: Case) -> None:
    ev = _events(loaded, ARRAY)
    at, rt, idt = ev[3], ev[4], ev[5]
    assert [e["token_key"] for e in (at, rt, idt)] == [
        AT_WEB, "RT.9xK2qLm4Np7Rs1Tv3Wx5Yz8Ab0Cd2Ef4Gh6Ij8Kl0M", ID_WEB]
    assert [e["extra"]["token_type"] for e in (at, rt, idt)] == [
        "access_token", "refresh_token", "id_token"]
    for e in (at, rt, idt):
        assert (e["kind"], e["outcome"]) == ("issue", "success")
        assert e["issuer"] == AS and e["client_id"] == WEB and e["subject"] == ALICE
        assert e["request_id"] == "Z9kq3fX2Lm8AAB7c1EwAAAD2"
        assert e["session_id"] is None  # "unknown" for a back-channel token request
    assert at["exp"].isoformat() == "2025-03-14T10:00:04+00:00"
    assert rt["exp"].isoformat() == "2025-04-13T09:00:04+00:00"
    assert at["scopes"] == ["openid", "profile", "email", "orders:read", "offline_access"]
    assert at["path"] == f"/oauth2/{AS}/v1/token"


def test_holder_is_the_client_only_when_it_authenticated(loaded: Case) -> None:
    ev = _events(loaded, ARRAY)
    # client_secret_basic: the web app's back end proved itself.
    assert (ev[3]["holder_id"], ev[3]["holder_tier"]) == (f"client:{WEB}", "workload")
    # client_credentials with private_key_jwt: client.id is empty, the app is the actor.
    cc = ev[6]
    assert cc["client_id"] == SVC and cc["subject"] == SVC
    assert cc["holder_id"] == f"client:{SVC}"
    # Public SPA (clientAuthType none): only the network can say who presented the refresh token.
    spa = ev[7]
    assert (spa["kind"], spa["client_id"]) == ("refresh", SPA)
    assert (spa["holder_id"], spa["holder_tier"]) == ("ip:203.0.113.10/chrome", "network")
    assert spa["session_id"] == SESSION
    # Browser sign-in and authorize: network holder, the Okta session named.
    assert ev[1]["kind"] == "login" and ev[1]["holder_tier"] == "network"
    assert ev[2]["kind"] == "login" and ev[2]["session_id"] == SESSION


def test_refresh_token_reuse_is_a_failed_refresh_by_the_replayer(loaded: Case) -> None:
    ev = _events(loaded, ARRAY)
    reuse = ev[8]
    assert (reuse["kind"], reuse["outcome"]) == ("refresh", "failure")
    assert "reuse" in reuse["error"]
    assert reuse["extra"]["outcome_result"] == "SUCCESS"  # Okta reports the detection itself
    assert reuse["token_key"] == RT_SPA
    assert reuse["holder_id"] == "ip:198.51.100.77/python-requests"
    failed = ev[9]  # the failure variant has no token suffix and no token target
    assert (failed["kind"], failed["outcome"], failed["error"]) == (
        "refresh", "failure", "invalid_grant")
    assert failed["token_key"] is None and failed["holder_tier"] == "network"


def test_revocation_joins_the_issued_token(loaded: Case) -> None:
    ev = _events(loaded, ARRAY)
    assert ev[10]["kind"] == "revoke"
    assert ev[10]["token_key"] == ev[3]["token_key"] == AT_WEB
    assert ev[10]["holder_id"] == f"client:{WEB}"


def test_org_server_app_grant_and_missing_objects(loaded: Case) -> None:
    lines = _events(loaded, LINES)
    org = lines[1]
    assert (org["kind"], org["issuer"]) == ("refresh", None)
    assert org["client_id"] == WEB and org["holder_id"] == f"client:{WEB}"
    assert org["scopes"] == ["okta.users.read", "okta.logs.read", "offline_access"]
    bare = lines[4]  # no client, debugContext, authenticationContext; target null
    assert (bare["kind"], bare["outcome"]) == ("issue", "success")
    assert bare["token_key"] is None and bare["holder_id"] is None
    assert bare["client_id"] == SVC
    assert lines[7]["kind"] == "other" and lines[7]["outcome"] == "success"  # ALLOW


def test_rejects_name_the_line_and_the_reason(loaded: Case) -> None:
    rows = loaded.con.execute(
        "select r.line, r.reason, r.excerpt from rejects r join sources s using (source_id) "
        "where s.path = ? order by r.line", [str(LINES)]).fetchall()
    assert [(line, reason) for line, reason, _ in rows] == [
        (2, "invalid JSON"), (5, "no usable timestamp"), (6, "no eventType")]
    assert "id_token_hint=[REDACTED]" in rows[0][2]


def test_logged_id_token_hint_is_fingerprinted_joined_and_dropped(loaded: Case) -> None:
    raw = re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", LINES.read_text()).group(0)
    text = _all_text(loaded)
    assert raw not in text and raw.split(".")[1] not in text
    logout = _events(loaded, LINES)[3]
    assert logout["kind"] == "use" and logout["raw_token_logged"] is True
    assert logout["token_fp"] == fingerprint(raw)
    # Its jti is the ID token the token endpoint granted.
    assert logout["token_key"] == ID_WEB == _events(loaded, ARRAY)[5]["token_key"]
    assert logout["path"] == f"/oauth2/{AS}/v1/logout"
    assert logout["holder_id"] == "ip:203.0.113.10/chrome"


def test_no_secret_from_debug_data_is_stored(loaded: Case) -> None:
    text = _all_text(loaded)
    assert "Q2xpZW50U2VjcmV0VmFsdWVfU2hvdWxkTmV2ZXJCZVN0b3JlZA" not in text  # clientSecret
    assert "Pl4Qm9Rz" not in text and "Xq1Yv7Kp" not in text  # OAuth state values
    extra = _events(loaded, LINES)[1]["extra"]
    assert extra["client_auth_type"] == "client_secret_basic"
    assert not any("secret" in k.lower() and k != "client_auth_type" for k in extra)
