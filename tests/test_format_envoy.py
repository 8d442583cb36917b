"""Envoy/Istio access logs: token evidence and holders as a responder reads them."""

from __future__ import annotations

from conftest import FIXTURES, fingerprint, make_jwt, write_jsonl

from tokentrail import Case
from tokentrail.case.ingest import ingest

LOG = FIXTURES / "envoy" / "gateway-access.jsonl"


def _events(case: Case) -> dict[int, dict[str, object]]:
    cols, rows = case.query("select * from events order by line")
    return {r[cols.index("line")]: dict(zip(cols, r, strict=True)) for r in rows}


def test_sniffed_and_every_line_is_an_event(case: Case) -> None:
    report = ingest(case, [str(LOG)])
    assert [f.format for f in report.files] == ["envoy"]
    assert report.events == 6 and report.rejects == 0


def test_verified_jwt_payload_gives_token_id_claims_and_spiffe_holder(case: Case) -> None:
    ingest(case, [str(LOG)])
    e = _events(case)[1]
    assert e["token_key"] == "8e1d5c0a-31f4-4c52-9d0e-5b5f7c6e2a11"
    assert e["holder_id"] == "spiffe://acme.example/ns/agents/sa/coder"
    assert e["holder_tier"] == "spiffe"
    assert e["client_id"] == "coder"
    assert e["act_chain"] == ["coder", "orchestrator"]
    assert e["audience"] == ["repo-api"]
    assert e["scopes"] == ["repo:read"]
    assert e["claims_verified"] is True
    assert e["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    # colon-hex and plain-hex spellings of one certificate normalise to one base64url thumbprint
    assert e["peer_x5t"] == _events(case)[2]["peer_x5t"]
    assert e["peer_x5t"] == "XwwNDf8-K2FKjwd3WV3kUA6kttLVY0_XHxm0jcU_Lxo"
    assert e["exp"].year == 2026 and e["kind"] == "use" and e["status"] == 200


def test_dpop_key_is_holder_when_no_mtls_and_binding_is_recorded(case: Case) -> None:
    ingest(case, [str(LOG)])
    e = _events(case)[3]
    assert e["holder_tier"] == "dpop"
    assert e["holder_id"] == "jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    assert e["cnf_jkt"] == e["proof_jkt"]
    assert e["auth_scheme"] == "DPoP"
    assert e["proof_jti"] == "e1j3V_bKic8-LAEB"
    assert e["audience"] == ["search-api"]


def test_request_without_token_is_context_not_a_use(case: Case) -> None:
    ingest(case, [str(LOG)])
    e = _events(case)[4]
    assert e["kind"] == "other" and e["token_key"] is None


def test_rejected_presentation_is_deny_with_ath_fingerprint_and_network_holder(case: Case) -> None:
    ingest(case, [str(LOG)])
    e = _events(case)[5]
    assert e["kind"] == "deny" and e["outcome"] == "failure" and e["status"] == 401
    assert e["token_key"] == "fp:mPvdvpmYfHCv2PaMXEEmKYbcmvqL2nDunzWF6XTWQmA"
    assert e["holder_id"] == "ip:203.0.113.50/curl" and e["holder_tier"] == "network"
    assert e["error"] == "jwt_verification_fails"


def test_dash_values_stringified_payload_and_ipv6(case: Case) -> None:
    ingest(case, [str(LOG)])
    e = _events(case)[6]
    assert e["status"] is None and e["request_id"] is None and e["user_agent"] is None
    assert e["token_key"] == "11111111-2222-4333-8444-555555555555"
    assert e["peer_spiffe"] == "spiffe://acme.example/ns/tools/sa/mcp-files"
    assert e["src_ip"] == "2001:db8::7"


def test_logged_authorization_header_is_fingerprinted_decoded_and_dropped(case, tmp_path):
    token = make_jwt({"jti": "jti-raw-1", "azp": "orchestrator", "sub": "alice", "aud": "api"})
    log = write_jsonl(tmp_path / "a.jsonl", [{
        "start_time": "2026-11-02T09:00:00Z", "method": "GET",
        "path": f"/v1/x?access_token={token}", "response_code": 200,
        "downstream_remote_address": "10.0.0.8:1234", "authorization": f"Bearer {token}",
    }])
    ingest(case, [str(log)])
    e = _events(case)[1]
    assert e["token_fp"] == fingerprint(token)
    assert e["token_id"] == "jti-raw-1" and e["client_id"] == "orchestrator"
    assert e["claims_verified"] is False and e["raw_token_logged"] is True
    assert e["auth_scheme"] == "Bearer"
    assert token not in repr(case.query("select * from events"))
    assert "access_token=[REDACTED]" in e["path"]
