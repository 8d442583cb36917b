"""Classification of (token, holder) pairs on small, realistic stories (tokentrail's own
event schema), one per decision step, plus the benign look-alikes that must not be flagged."""

from __future__ import annotations

import json
from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

ORCH = "spiffe://acme.example/ns/agents/sa/orchestrator"
CODER = "spiffe://acme.example/ns/agents/sa/coder"
GATEWAY = "spiffe://acme.example/ns/istio-system/sa/gateway"


Pair = tuple[str, str]


def classes(tmp_path: Path, events: list[dict[str, object]]) -> dict[Pair, tuple[str, float, list[str]]]:
    log = tmp_path / "story.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    with Case() as case:
        report = ingest(case, [str(log)], format_name="tokentrail")
        assert report.rejects == 0
        analyse(case.con, rules=[])
        _, rows = case.query("SELECT token_key, holder_id, classification, confidence, reasons "
                             "FROM token_holders")
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def ev(ts: str, kind: str, token: str, **more: object) -> dict[str, object]:
    return {"ts": f"2026-11-02T09:{ts}Z", "kind": kind, "token_id": token, **more}


def test_owner_by_spiffe_identity_named_for_the_client(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="orchestrator", workload="client:orchestrator"),
        ev("00:05", "use", "t1", client_id="orchestrator", peer_spiffe=ORCH, resource="repo-api"),
    ])
    cls, conf, reasons = got[("t1", ORCH)]
    assert (cls, conf) == ("owner", 0.95)
    assert any("named for client orchestrator" in r for r in reasons)


def test_delegate_when_presenter_is_current_actor_of_a_logged_exchange(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "parent", client_id="orchestrator", workload="client:orchestrator"),
        ev("00:10", "exchange", "child", client_id="orchestrator", parent_token_key="parent",
           workload="client:orchestrator", act_chain=[CODER, ORCH], audience=["repo-api"]),
        ev("00:20", "use", "child", client_id="orchestrator", act_chain=[CODER, ORCH],
           peer_spiffe=CODER, resource="repo-api"),
    ])
    assert got[("child", CODER)][:2] == ("delegate", 0.9)


def test_delegate_with_lower_confidence_without_an_exchange_event(tmp_path):
    got = classes(tmp_path, [
        ev("00:20", "use", "child", client_id="orchestrator", act_chain=[CODER, ORCH],
           peer_spiffe=CODER, resource="repo-api"),
    ])
    cls, conf, reasons = got[("child", CODER)]
    assert (cls, conf) == ("delegate", 0.6)
    assert any("no exchange event" in r for r in reasons)


def test_gateway_relaying_the_same_request_is_transport(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="coder", workload="client:coder"),
        ev("00:05", "use", "t1", client_id="coder", peer_spiffe=CODER, request_id="r-1",
           path="/v1/repos"),
        ev("00:05.2", "use", "t1", client_id="coder", peer_spiffe=GATEWAY, request_id="r-1",
           path="/v1/repos"),
    ])
    assert got[("t1", GATEWAY)][0] == "transport"
    assert got[("t1", CODER)][0] == "owner"


def test_same_trace_to_a_different_api_is_not_a_relay(tmp_path):
    """An MCP server calling another API inside the caller's trace is not a gateway hop."""
    mcp = "spiffe://acme.example/ns/tools/sa/mcp-files"
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="coder", workload="client:coder", audience=["mcp-files"]),
        ev("00:05", "use", "t1", peer_spiffe=CODER, trace_id="tr-1", resource="mcp-files"),
        ev("00:06", "use", "t1", peer_spiffe=mcp, trace_id="tr-1", resource="repo-api"),
    ])
    cls, _, reasons = got[("t1", mcp)]
    assert cls == "forwarded" and any("mcp_passthrough" in r for r in reasons)


def test_ids_the_client_chooses_do_not_make_a_replay_look_like_a_hop(tmp_path):
    # A thief replays the token seconds later from outside, copying the request id and the
    # traceparent (both client-supplied): not a relay. A second internal presenter in the same
    # trace with its own request id is another request, not a relay either.
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="coder", workload="client:coder"),
        ev("00:05", "use", "t1", client_id="coder", peer_spiffe=CODER, request_id="r-1",
           trace_id="tr-1", path="/v1/repos"),
        ev("00:09", "use", "t1", src_ip="203.0.113.66", user_agent="curl/8", request_id="r-1",
           trace_id="tr-1", path="/v1/repos"),
        ev("00:10", "use", "t1", peer_spiffe=ORCH, request_id="r-2", trace_id="tr-1",
           path="/v1/repos"),
    ])
    assert got[("t1", "ip:203.0.113.66/curl")][0] == "stolen"
    assert got[("t1", ORCH)][0] == "forwarded"


def test_internal_holder_without_exchange_is_forwarded(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="orchestrator", workload="client:orchestrator"),
        ev("00:05", "use", "t1", client_id="orchestrator", peer_spiffe=ORCH, request_id="a"),
        ev("00:30", "use", "t1", client_id="orchestrator", peer_spiffe=CODER, request_id="b"),
    ])
    cls, conf, reasons = got[("t1", CODER)]
    assert (cls, conf) == ("forwarded", 0.85)
    assert any("act claim absent" in r for r in reasons)


def test_bound_token_sent_as_bearer_by_another_holder_is_stolen(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="mcp", workload="client:mcp", cnf_jkt="KEY1"),
        ev("00:05", "use", "t1", cnf_jkt="KEY1", proof_jkt="KEY1", auth_scheme="DPoP",
           src_ip="10.0.0.5"),
        ev("00:09", "use", "t1", cnf_jkt="KEY1", auth_scheme="Bearer", src_ip="10.0.9.9",
           user_agent="curl/8"),
    ])
    assert got[("t1", "jkt:KEY1")][0] == "owner"
    cls, conf, reasons = got[("t1", "ip:10.0.9.9/curl")]
    assert (cls, conf) == ("stolen", 0.95) and "Bearer" in reasons[0]


def test_use_after_revocation_by_another_holder_is_stolen_but_skew_is_absorbed(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="partner", src_ip="198.51.100.7"),
        ev("10:00", "revoke", "t1"),
        ev("10:30", "use", "t1", src_ip="10.0.0.8", user_agent="python-requests/2"),  # 30 s: skew
        ev("20:00", "use", "t1", src_ip="10.0.0.9", user_agent="python-requests/2"),
    ])
    assert got[("t1", "ip:10.0.0.9/python-requests")][:2] == ("stolen", 0.85)
    assert got[("t1", "ip:10.0.0.8/python-requests")][0] != "stolen"


def test_external_address_is_stolen_and_same_address_as_issuance_is_owner(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="partner", src_ip="198.51.100.7",
           user_agent="globex-sync/2"),
        ev("00:10", "use", "t1", src_ip="198.51.100.7", user_agent="globex-sync/2"),
        ev("00:20", "use", "t1", src_ip="203.0.113.66", user_agent="curl/8"),
    ])
    assert got[("t1", "ip:198.51.100.7/globex-sync")][0] == "owner"
    assert got[("t1", "ip:203.0.113.66/curl")][:2] == ("stolen", 0.75)


def test_lone_public_client_with_a_jwt_but_no_issuance_in_the_case_is_not_called_stolen(tmp_path):
    # A gateway log of a partner app calling from the internet: the JWT names client_id, the
    # IdP's logs are not in the case. Two SDKs on the same host are still one presenter.
    got = classes(tmp_path, [
        ev("00:00", "use", "t1", client_id="partner-app", src_ip="198.51.100.7",
           user_agent="aws-sdk-go/1.44"),
        ev("00:05", "use", "t1", client_id="partner-app", src_ip="198.51.100.7",
           user_agent="aws-sdk-go-v2/1.30"),
    ])
    assert {c[0] for c in got.values()} == {"unknown"}
    assert all(c[1] <= 0.3 for c in got.values())
    # but a second address is a contradiction again
    got = classes(tmp_path, [
        ev("00:00", "use", "t2", client_id="partner-app", src_ip="198.51.100.7"),
        ev("00:05", "use", "t2", client_id="partner-app", src_ip="203.0.113.66"),
    ])
    assert {c[0] for c in got.values()} == {"stolen"}


def test_lone_mesh_identity_with_a_differently_named_client_is_not_called_forwarded(tmp_path):
    # azp is the OAuth client's id, the SPIFFE ID names the service account: two namespaces.
    # With one presenter and no issuance in the case nothing says these are not the same
    # workload; a second internal presenter is forwarding again.
    got = classes(tmp_path, [
        ev("00:00", "use", "t1", client_id="frontend-prod-7f3a", peer_spiffe=CODER),
        ev("00:05", "use", "t1", client_id="frontend-prod-7f3a", peer_spiffe=CODER),
    ])
    assert got[("t1", CODER)][:2] == ("unknown", 0.3)
    got = classes(tmp_path, [
        ev("00:00", "use", "t2", client_id="frontend-prod-7f3a", peer_spiffe=CODER,
           request_id="a"),
        ev("00:05", "use", "t2", client_id="frontend-prod-7f3a", peer_spiffe=ORCH,
           request_id="b"),
    ])
    assert {got[("t2", CODER)][0], got[("t2", ORCH)][0]} == {"forwarded"}


def test_next_address_in_the_issuers_egress_range_is_suspicious_not_stolen(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="partner", src_ip="198.51.100.7"),
        ev("00:10", "use", "t1", src_ip="198.51.100.7"),
        ev("00:20", "use", "t1", src_ip="198.51.100.41"),  # same /24: a NAT pool
        ev("00:30", "use", "t1", src_ip="198.51.101.41"),  # next /24: no longer
    ])
    assert got[("t1", "ip:198.51.100.41")][:2] == ("suspicious", 0.3)
    assert got[("t1", "ip:198.51.101.41")][0] == "stolen"


def test_private_address_not_matching_is_only_suspicious(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="svc", src_ip="10.1.1.1"),
        ev("00:10", "use", "t1", src_ip="10.1.1.1"),
        ev("00:20", "use", "t1", src_ip="10.2.2.2"),
    ])
    cls, conf, _ = got[("t1", "ip:10.2.2.2")]
    assert cls == "suspicious" and conf <= 0.5


def test_retries_and_replicas_do_not_create_extra_holders(tmp_path):
    got = classes(tmp_path, [
        ev("00:00", "issue", "t1", client_id="coder", workload="client:coder"),
        ev("00:05", "use", "t1", peer_spiffe=CODER, src_ip="10.42.1.17", request_id="r-1"),
        ev("00:05.3", "use", "t1", peer_spiffe=CODER, src_ip="10.42.1.17", request_id="r-1"),
        ev("00:06", "use", "t1", peer_spiffe=CODER, src_ip="10.42.1.99", request_id="r-2"),
    ])
    assert [k for k in got if k[0] == "t1"] == [("t1", CODER)]
    assert got[("t1", CODER)][0] == "owner"


def test_unknown_token_gets_low_confidence_unknown(tmp_path):
    got = classes(tmp_path, [ev("00:00", "deny", "fp-only", peer_spiffe=CODER, status=401)])
    cls, conf, reasons = got[("fp-only", CODER)]
    assert cls == "unknown" and conf <= 0.3 and any("issuance not seen" in r for r in reasons)


def test_policy_declares_transports_nat_and_workload_aliases(tmp_path):
    from tokentrail.provenance.policy import parse_policy

    policy = parse_policy("""
[[workloads]]
name = "coder"
identifiers = ["spiffe://acme.example/ns/agents/sa/coder", "client:coder-app", "ip:10.42.1.0/24"]
[[transports]]
name = "egress-proxy"
identifiers = ["spiffe://acme.example/ns/infra/sa/egress"]
[networks]
nat = ["198.51.100.0/28"]
""", file="policy.toml")
    log = tmp_path / "p.jsonl"
    events = [
        ev("00:00", "issue", "t1", client_id="coder-app", workload="client:coder-app"),
        ev("00:01", "use", "t1", src_ip="10.42.1.50", user_agent="httpx/0.27"),  # a replica's pod IP
        ev("00:02", "use", "t1", peer_spiffe="spiffe://acme.example/ns/infra/sa/egress"),
        ev("00:03", "use", "t1", src_ip="198.51.100.3"),  # inside declared NAT
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    with Case() as case:
        ingest(case, [str(log)], format_name="tokentrail")
        analyse(case.con, policy=policy, rules=[])
        got = {r[0]: (r[1], r[2]) for r in case.query(
            "SELECT holder_id, classification, confidence FROM token_holders")[1]}
    assert got["ip:10.42.1.50/httpx"][0] == "owner"
    assert got["spiffe://acme.example/ns/infra/sa/egress"] == ("transport", 0.9)
    nat_class, nat_conf = got["ip:198.51.100.3"]
    assert nat_class == "suspicious" and nat_conf <= 0.3


def test_sole_internal_presenter_of_a_pod_bound_token_is_its_owner(tmp_path):
    # A pod-bound service-account token used from one address inside the network, nobody
    # else: most plausibly the pod itself, with the confidence of an unattested address.
    pod = dict(pod="payments/reporter-5c6d7f-abcde", exp="2026-11-02T10:00:00Z")
    got = classes(tmp_path, [
        ev("00:05", "use", "sa1", src_ip="10.42.3.7", user_agent="reporter/1.4", **pod),
        ev("00:35", "use", "sa1", src_ip="10.42.3.7", user_agent="reporter/1.4", **pod),
    ])
    ((pair, (cls, conf, reasons)),) = got.items()
    assert pair[1].startswith("ip:10.42.3.7")
    assert (cls, conf) == ("owner", 0.6)
    assert any("sole presenter, inside the network, of a token bound to pod "
               "payments/reporter-5c6d7f-abcde" in r for r in reasons)


def test_two_internal_presenters_of_a_pod_bound_token_are_not_each_its_owner(tmp_path):
    pod = dict(pod="payments/reporter-5c6d7f-abcde", exp="2026-11-02T10:00:00Z")
    got = classes(tmp_path, [
        ev("00:05", "use", "sa1", src_ip="10.42.3.7", user_agent="reporter/1.4", **pod),
        ev("00:35", "use", "sa1", src_ip="10.42.9.9", user_agent="reporter/1.4", **pod),
    ])
    assert len(got) == 2
    for cls, _conf, reasons in got.values():
        assert cls != "owner"
        assert not any("sole presenter, inside the network" in r for r in reasons)
