"""Issue 16: owners behind an IdP with generated client ids, and one egress pool, are not
forwarders or thieves. Okta side: tests/fixtures/okta-mesh (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

GRANT = FIXTURES / "okta-mesh" / "cc-grant.json"
AT = "AT.cc7Hq2Wm9Xz4Lp1Rt6Yv3Bn8Kd5Fs0Gj2Ue7Io4Pa9Q"
SVC = "0oa2svc8PqRt3LmN90g7"
ORDERS = "spiffe://acme.example/ns/shop/sa/orders-sync"
OTHER = "spiffe://acme.example/ns/shop/sa/reporting"


def _scan(tmp_path: Path, gateway: list[dict[str, object]], okta: Path | None = GRANT):
    gw = tmp_path / "gw.jsonl"
    gw.write_text("".join(json.dumps(e) + "\n" for e in gateway))
    with Case() as case:
        if okta is not None:
            ingest(case, [str(okta)], format_name="okta")
        ingest(case, [str(gw)], format_name="tokentrail")
        analysis = analyse(case.con)
        rows = case.query("SELECT token_key, holder_id, classification, confidence, reasons "
                          "FROM token_holders")[1]
    return ({(r[0], r[1]): (r[2], r[3], r[4]) for r in rows},
            {(f.rule, f.holder.get("id")) for f in analysis.findings})


def use(ts: str, **more: object) -> dict[str, object]:
    return {"ts": f"2026-11-02T09:{ts}Z", "kind": "use", "token_id": AT, "resource": "orders-api",
            "status": 200, **more}


def test_mesh_identity_named_for_the_issuing_app_is_the_owner(tmp_path):
    got, findings = _scan(tmp_path, [use("00:02", peer_spiffe=ORDERS, request_id="g-1"),
                                     use("00:40", peer_spiffe=ORDERS, request_id="g-2")])
    cls, conf, reasons = got[(AT, ORDERS)]
    assert cls == "owner" and conf >= 0.9
    assert any('issuing app "Orders Sync"' in r and SVC in r for r in reasons)
    assert not findings


def test_lone_presenter_the_issuance_does_not_name_is_unknown_not_forwarded(tmp_path):
    # The app label names another workload: nothing ties the only presenter to the grant,
    # nothing contradicts it either.
    got, findings = _scan(tmp_path, [use("00:02", peer_spiffe=OTHER)])
    assert got[(AT, OTHER)][:2] == ("unknown", 0.3)
    assert not {r for r, _ in findings} & {"TT001", "TT004"}


def test_second_mesh_presenter_of_the_apps_token_is_still_forwarded(tmp_path):
    got, findings = _scan(tmp_path, [use("00:02", peer_spiffe=ORDERS, request_id="g-1"),
                                     use("00:30", peer_spiffe=OTHER, request_id="g-2")])
    assert got[(AT, ORDERS)][0] == "owner"
    assert got[(AT, OTHER)][0] == "forwarded"
    assert ("TT001", OTHER) in findings


def test_policy_alias_of_the_app_name_makes_the_owner(tmp_path):
    from tokentrail.provenance.policy import parse_policy

    policy = parse_policy(f"""
[[workloads]]
name = "orders"
identifiers = ["client:Orders Sync", "{OTHER}"]
""", file="policy.toml")
    gw = tmp_path / "gw.jsonl"
    gw.write_text(json.dumps(use("00:02", peer_spiffe=OTHER)) + "\n")
    with Case() as case:
        ingest(case, [str(GRANT)], format_name="okta")
        ingest(case, [str(gw)], format_name="tokentrail")
        analyse(case.con, policy=policy, rules=[])
        cls = case.query("SELECT classification FROM token_holders")[1][0][0]
    assert cls == "owner"


# --- 16.2: one egress pool ------------------------------------------------------------------

def ev(ts: str, kind: str, token: str, **more: object) -> dict[str, object]:
    return {"ts": f"2026-11-02T09:{ts}Z", "kind": kind, "token_id": token, **more}


def _classes(tmp_path: Path, events: list[dict[str, object]]):
    return _scan(tmp_path, events, okta=None)


FLEET_UA = "orders-worker/3.2 (+python-httpx)"


def test_token_from_inside_used_only_from_one_egress_pool_is_suspicious(tmp_path):
    got, findings = _classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        ev("00:01", "use", "t1", src_ip="198.51.100.20", user_agent=FLEET_UA, request_id="a"),
        ev("00:09", "use", "t1", src_ip="198.51.100.23", user_agent=FLEET_UA, request_id="b"),
    ])
    for ip in ("198.51.100.20", "198.51.100.23"):
        cls, conf, reasons = got[("t1", f"ip:{ip}/orders-worker")]
        assert cls == "suspicious" and conf <= 0.3
        assert any("198.51.100.0/24" in r for r in reasons)
    assert not {r for r, _ in findings} & {"TT004", "TT015"}


def test_egress_pool_contrast_keeps_stolen(tmp_path):
    # another user agent: not the fleet
    got, _ = _classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        ev("00:01", "use", "t1", src_ip="198.51.100.20", user_agent="curl/8.5"),
    ])
    assert got[("t1", "ip:198.51.100.20/curl")][0] == "stolen"
    # two pools
    got, _ = _classes(tmp_path, [
        ev("00:00", "issue", "t2", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        ev("00:01", "use", "t2", src_ip="198.51.100.20", user_agent=FLEET_UA),
        ev("00:02", "use", "t2", src_ip="203.0.113.9", user_agent=FLEET_UA),
    ])
    assert {got[("t2", "ip:198.51.100.20/orders-worker")][0],
            got[("t2", "ip:203.0.113.9/orders-worker")][0]} == {"stolen"}
    # first use an hour later
    got, _ = _classes(tmp_path, [
        ev("00:00", "issue", "t3", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        {"ts": "2026-11-02T10:05:00Z", "kind": "use", "token_id": "t3",
         "src_ip": "198.51.100.20", "user_agent": FLEET_UA},
    ])
    assert got[("t3", "ip:198.51.100.20/orders-worker")][0] == "stolen"
    # the client's other tokens always leave through another pool
    got, _ = _classes(tmp_path, [
        ev("00:00", "issue", "t4", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        ev("00:01", "use", "t4", src_ip="192.0.2.10", user_agent=FLEET_UA),
        ev("01:00", "issue", "t5", client_id="orders", src_ip="10.20.3.14", user_agent=FLEET_UA),
        ev("01:01", "use", "t5", src_ip="198.51.100.20", user_agent=FLEET_UA),
    ])
    assert got[("t5", "ip:198.51.100.20/orders-worker")][0] == "stolen"


def test_okta_address_chain_through_a_proxy_names_the_originating_client(tmp_path):
    """Issue 11.1: request.ipChain lists clientIp, proxy1, ... (Okta LogRequest); the holder is
    the originating client, so the proxy's address is not taken for the presenter."""
    grant = json.loads(GRANT.read_text())[0]
    grant["client"]["ipAddress"] = "192.0.2.200"  # the corporate proxy Okta saw
    grant["request"]["ipChain"] = [{"ip": "10.20.3.14", "version": "V4", "source": None},
                                   {"ip": "192.0.2.200", "version": "V4", "source": None}]
    grant["debugContext"]["debugData"]["clientAuthType"] = "none"
    log = tmp_path / "okta.json"
    log.write_text(json.dumps([grant]))
    with Case() as case:
        ingest(case, [str(log)], format_name="okta")
        row = case.query("SELECT src_ip, holder_id, extra->>'proxy_ip', extra->>'ip_chain' "
                         "FROM events")[1][0]
    assert row[0] == "10.20.3.14" and row[1] == "ip:10.20.3.14/okta-sdk-python"
    assert row[2] == "192.0.2.200" and "192.0.2.200" in row[3]


def test_certificate_bound_token_without_a_certificate_is_a_broken_binding(tmp_path):
    """Issue 11.4 (RFC 8705 §3): a cnf.x5t#S256 token presented with no client certificate, in
    a log that records certificates, is a broken binding (TT005); in a log that never records
    certificates (a hop after TLS termination) the absence says nothing."""
    mtls = tmp_path / "edge.jsonl"
    mtls.write_text("".join(json.dumps(e) + "\n" for e in [
        ev("00:00", "issue", "b1", client_id="payments", cnf_x5t="CERT1"),
        ev("00:01", "use", "b1", cnf_x5t="CERT1", peer_x5t="CERT1", src_ip="10.9.0.4",
           request_id="m-1"),
        ev("00:05", "use", "b1", cnf_x5t="CERT1", src_ip="198.51.100.66",
           user_agent="curl/8.5", request_id="m-2"),
    ]))
    inner = tmp_path / "inner.jsonl"  # a log without certificates at all
    inner.write_text(json.dumps(ev("00:02", "use", "b1", cnf_x5t="CERT1", src_ip="10.9.7.7",
                                   user_agent="envoy/1.30", request_id="i-1")) + "\n")
    with Case() as case:
        ingest(case, [str(mtls), str(inner)], format_name="tokentrail")
        analysis = analyse(case.con)
        got = {r[0]: (r[1], r[2]) for r in case.query(
            "SELECT holder_id, classification, reasons FROM token_holders")[1]}
    assert got["x5t:CERT1"][0] == "owner"
    cls, reasons = got["ip:198.51.100.66/curl"]
    assert cls == "stolen" and "no client certificate" in reasons[0]
    assert got["ip:10.9.7.7/envoy"][0] != "stolen"
    tt005 = {f.holder.get("id") for f in analysis.findings if f.rule == "TT005"}
    assert tt005 == {"ip:198.51.100.66/curl"}


PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def test_second_device_that_signed_in_to_the_session_is_benign_a_refresh_is_not(tmp_path):
    """Issue 11.1/11.2: Okta externalSessionId ties a user's sign-ins; an address that signed in
    to the token's session itself (the user's phone on another carrier address) is the owner,
    an address that only redeemed a refresh token in that session is not."""
    sid = "102N1EKyPFERROGvK9wizMAPQ"
    got, findings = _classes(tmp_path, [
        ev("00:00", "login", None, session_id=sid, src_ip="203.0.113.10", user_agent=PHONE),
        ev("00:01", "issue", "a1", client_id="0oaSPA", session_id=sid, src_ip="203.0.113.10",
           user_agent=PHONE),
        ev("05:00", "login", None, session_id=sid, src_ip="198.51.100.77", user_agent=PHONE),
        ev("05:02", "use", "a1", src_ip="198.51.100.77", user_agent=PHONE),
        # a refresh in the session from an address that never signed in, then its use
        ev("09:00", "refresh", "a2", client_id="0oaSPA", session_id=sid, src_ip="192.0.2.66",
           user_agent="python-requests/2.31"),
        ev("09:01", "use", "a1", src_ip="192.0.2.66", user_agent="python-requests/2.31"),
    ])
    cls, conf, reasons = got[("a1", "ip:198.51.100.77/mozilla")]
    assert (cls, conf) == ("owner", 0.6) and sid in reasons[0]
    assert got[("a1", "ip:192.0.2.66/python-requests")][0] == "stolen"
