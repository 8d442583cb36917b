"""OpenTelemetry OTLP/JSON (format `otel`): spans and log records with the GenAI / MCP
semantic conventions, and AI agents as holders of the gateway requests they made."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, SHARED, case_text, events_by_line, fingerprint, make_jwt, write_jsonl

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.sources.registry import builtin_mappings, get_mapping
from tokentrail.sources.sniff import (
    all_nested_paths,
    all_wrapper_keys,
    choose_format,
    read_prefix,
    sniff_container,
)

OTEL = FIXTURES / "otel"
TRACES = OTEL / "agent-traces.jsonl"
LOGS = OTEL / "agent-logs.json"
GATEWAY = OTEL / "gateway-access.jsonl"
IDP = OTEL / "keycloak-events.jsonl"
SHARED_OTEL = SHARED / "datasets" / "otel"
TRACE = "0af7651916cd43dd8448eb211c80319c"
T1 = "7d0c2f9e-51a4-4b8e-9c3d-1e2f3a4b5c01"  # the orchestrator's token (audience repo-tool)
T2 = "7d0c2f9e-51a4-4b8e-9c3d-1e2f3a4b5c02"  # the tool agent's exchanged token
ORCH_SPIFFE = "spiffe://acme.example/ns/agents/sa/orchestrator"

needs_shared = pytest.mark.skipif(not SHARED_OTEL.is_dir(),
                                  reason="../shared/datasets/otel not present")


# -- OTLP/JSON builders for the tests' own stories -----------------------------------------------

def attrs(**kv: Any) -> list[dict[str, Any]]:
    out = []
    for k, v in kv.items():
        key = k.replace("__", ".")
        if isinstance(v, list):
            value: dict[str, Any] = {"arrayValue": {"values": [{"stringValue": x} for x in v]}}
        elif isinstance(v, bool):
            value = {"boolValue": v}
        elif isinstance(v, int):
            value = {"intValue": str(v)}
        else:
            value = {"stringValue": v}
        out.append({"key": key, "value": value})
    return out


def span(trace: str, sid: str, parent: str, kind: int, start: str, end: str,
         **kv: Any) -> dict[str, Any]:
    return {"traceId": trace, "spanId": sid, "parentSpanId": parent, "name": "op", "kind": kind,
            "startTimeUnixNano": start, "endTimeUnixNano": end, "attributes": attrs(**kv)}


def traces(service: str, *spans: dict[str, Any], **resource: Any) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": attrs(service__name=service, **resource)},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}]}


def logs(service: str, *records: dict[str, Any]) -> dict[str, Any]:
    return {"resourceLogs": [{"resource": {"attributes": attrs(service__name=service)},
                              "scopeLogs": [{"scope": {"name": "t"}, "logRecords": list(records)}]}]}


NS = 1_793_613_600_000_000_000  # 2026-11-02T10:00:00Z in nanoseconds


def ns(seconds: float) -> str:
    return str(NS + int(seconds * 1e9))


def stored(case: Case, path: Path) -> dict[int, dict[str, object]]:
    return events_by_line(case, path)


# -- the real OTLP/JSON examples ------------------------------------------------------------------

@needs_shared
def test_opentelemetry_proto_examples_ingest_unchanged(case):
    report = ingest(case, [str(SHARED_OTEL)])
    assert sorted((Path(f.name).name, f.format, f.events, f.rejects) for f in report.files) == [
        ("otlp-example-logs.json", "otel", 1, 0), ("otlp-example-trace.json", "otel", 1, 0)]
    log = stored(case, SHARED_OTEL / "otlp-example-logs.json")[1]
    assert log["ts"].isoformat() == "2018-12-13T14:51:00.300000+00:00"
    assert log["trace_id"] == "5b8efff798038103d269b633813fc60c"  # hex is case-insensitive
    assert log["kind"] == "other" and log["token_key"] is None  # no token evidence at all
    assert log["extra"]["span_id"] == "eee19b7ec3c1b174"
    assert log["extra"]["signal"] == "log" and log["extra"]["severity"] == "Information"
    assert log["extra"]["service_name"] == "my.service"
    assert log["extra"]["scope_name"] == "my.library"
    sp = stored(case, SHARED_OTEL / "otlp-example-trace.json")[1]
    assert sp["ts"].isoformat() == "2018-12-13T14:51:00+00:00"
    assert sp["extra"]["span_kind"] == "server" and sp["extra"]["parent_span_id"] == "eee19b7ec3c1b173"
    assert sp["extra"]["span_name"] == "I'm a server span"
    assert sp["extra"]["duration_ms"] == 1000.0
    assert sp["resource"] == "my.service"  # a server span is about the service it serves
    assert sp["outcome"] == "success" and sp["holder_id"] is None


@needs_shared
def test_the_examples_sniff_as_otel_documents():
    mappings = list(builtin_mappings())
    for path in SHARED_OTEL.glob("*.json"):
        from tokentrail.sources.discover import expand

        src = expand([str(path)])[0][0]
        sniffed = sniff_container(read_prefix(src), all_wrapper_keys(mappings),
                                  all_nested_paths(mappings))
        assert (sniffed.container, sniffed.nested_mode) == ("nested", "document")
        assert choose_format(sniffed.records, mappings) is get_mapping("otel")


# -- the agent fixture: fields -------------------------------------------------------------------

def test_spans_of_two_agents_with_genai_and_mcp_attributes(case):
    report = ingest(case, [str(TRACES)])
    assert (report.files[0].format, report.files[0].events, report.files[0].rejects) == ("otel", 9, 0)
    e = stored(case, TRACES)
    # line = record ordinal: the orchestrator's 4 spans (document 1), then the tool agent's 5
    assert [e[i]["extra"]["document"] for i in range(1, 10)] == [1] * 4 + [2] * 5
    orch = e[1]
    assert orch["ts"].isoformat() == "2026-11-02T10:00:04.900000+00:00"
    assert orch["trace_id"] == TRACE  # written in upper case in the file
    assert orch["agent"] == "orchestrator" and orch["holder_id"] == "agent:orchestrator"
    assert orch["holder_tier"] == "workload" and orch["kind"] == "other"
    assert orch["session_id"] == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert orch["pod"] == "agents/orchestrator-7c9d8b5f4-qx2lp"
    assert orch["host"] == "orchestrator-7c9d8b5f4-qx2lp"
    assert orch["extra"]["operation"] == "invoke_agent" and orch["extra"]["span_kind"] == "internal"
    assert orch["extra"]["agent_name"] == "Orchestrator"
    assert orch["extra"]["parent_span_id"] is None
    mcp = e[2]
    assert mcp["method"] == "tools/call" and mcp["resource"] == "repo-tool.acme.internal"
    assert mcp["agent"] is None  # the span does not name its agent (the scan finds it)
    assert mcp["extra"]["tool_name"] == "summarize_repo"
    assert mcp["extra"]["mcp_session_id"] == "191c4850af6c49e08843a3f6c80e5046"
    assert mcp["extra"]["jsonrpc_request_id"] == "7"
    assert mcp["extra"]["parent_span_id"] == "b7ad6b7169203331"
    http = e[3]
    assert (http["method"], http["path"], http["status"]) == ("POST", "/mcp", 200)
    assert http["extra"]["span_id"] == "e457b5a2e4d86bd1"
    assert http["extra"]["server_port"] == 443
    server = e[5]  # the tool agent receiving the MCP call
    assert server["agent"] is None and server["src_ip"] == "10.42.1.17"
    assert server["holder_id"] == "ip:10.42.1.17" and server["resource"] == "repo-tool"
    assert e[6]["agent"] == "repo-tool"
    assert e[8]["path"] == "/v1/repos/acme/app/pulls?state=open"
    assert (e[9]["method"], e[9]["status"], e[9]["resource"]) == ("POST", 201, "issues-api.acme.internal")


def test_log_records_with_a_token_id_are_uses_by_the_agent(case):
    ingest(case, [str(LOGS)])
    e = stored(case, LOGS)
    assert len(e) == 2
    assert e[1]["ts"].isoformat() == "2026-11-02T10:00:05.321000+00:00"
    assert (e[1]["kind"], e[1]["token_key"], e[1]["holder_id"]) == ("use", T2, "agent:repo-tool")
    assert e[1]["extra"]["span_id"] == "c4d5e6f708192a3b" and e[1]["extra"]["severity"] == "INFO"
    # timeUnixNano "0" is unset: the collector's observed time is used
    assert e[2]["ts"].isoformat() == "2026-11-02T10:00:05.696000+00:00"
    assert e[2]["token_key"] == T1 and e[2]["path"] == "/v1/issues"


def test_json_lines_gzip_and_a_broken_document_line(case, tmp_path):
    lines = TRACES.read_text().splitlines()
    gz = tmp_path / "traces.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n" + lines[0] + "\n")
    report = ingest(case, [str(gz), str(broken)])
    by = {Path(f.name).name: f for f in report.files}
    assert (by["traces.jsonl.gz"].format, by["traces.jsonl.gz"].events) == ("otel", 9)
    assert (by["broken.jsonl"].events, by["broken.jsonl"].rejects) == (8, 1)
    _, rej = case.query("select r.line, r.reason from rejects r join sources s using (source_id) "
                        "where s.path = ?", [str(broken)])
    assert rej == [(2, "invalid JSON")]
    assert [e["extra"]["document"] for e in stored(case, broken).values()] == [1] * 4 + [3] * 4


def test_attribute_types_ids_and_timestamps_as_exporters_write_them(case, tmp_path):
    doc = traces(
        "svc",
        # numbers instead of strings, base64 ids (protobuf's JSON mapping), the enum's name
        {"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "7uGbfsPBsXQ=", "name": "x",
         "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": int(ns(1)), "endTimeUnixNano": int(ns(1.5)),
         "status": {"code": 2, "message": "boom"},
         "attributes": attrs(gen_ai__agent__id="a1", http__response__status_code=503,
                             error__type="timeout", gen_ai__operation__name="execute_tool")},
        # invoke_agent client span: its gen_ai.agent.id names the agent called, not the caller
        span("5b8efff798038103d269b633813fc60c", "00000000000000aa", "", 3, ns(2), ns(3),
             gen_ai__operation__name="invoke_agent", gen_ai__agent__id="remote-agent"),
        # a server span names the agent that received the call; the caller is client.address
        span("5b8efff798038103d269b633813fc60c", "00000000000000bb", "", 2, ns(4), ns(5),
             gen_ai__agent__id="tool-agent", client__address="10.9.8.7",
             user_agent__original="python-httpx/0.27"),
        # an all-zero span id is no id
        span("5b8efff798038103d269b633813fc60c", "0000000000000000", "", 1, ns(6), "0"),
    )
    path = write_jsonl(tmp_path / "t.jsonl", [doc])
    ingest(case, [str(path)])
    e = stored(case, path)
    assert e[1]["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert e[1]["extra"]["span_id"] == "eee19b7ec3c1b174"
    assert e[1]["ts"].isoformat() == "2026-11-02T10:00:01+00:00"
    assert e[1]["extra"]["duration_ms"] == 500.0 and e[1]["extra"]["span_kind"] == "client"
    assert (e[1]["outcome"], e[1]["status"], e[1]["error"]) == ("failure", 503, "timeout")
    assert e[1]["extra"]["span_status"] == "error" and e[1]["agent"] == "a1"
    assert e[2]["agent"] is None and e[2]["extra"]["target_agent"] == "remote-agent"
    assert e[3]["agent"] is None and e[3]["extra"]["receiving_agent"] == "tool-agent"
    assert e[3]["holder_id"] == "ip:10.9.8.7/python-httpx"
    assert e[4]["extra"]["span_id"] is None and e[4]["extra"]["duration_ms"] is None


def test_raw_tokens_in_attributes_and_bodies_are_fingerprinted_and_never_stored(case, tmp_path):
    jwt = make_jwt({"jti": "jti-otel-1", "azp": "orchestrator", "sub": "alice", "aud": "repo-api"})
    other = make_jwt({"jti": "jti-otel-2", "azp": "x"})
    hexfp = "5f0c0d0dff3e2b614a8f0777595de4500ea4b6d2d5634fd71f19b48dc53f2f1a"
    t = "5b8efff798038103d269b633813fc60c"
    path = write_jsonl(tmp_path / "secrets.jsonl", [
        traces("agent-svc",
               span(t, "00000000000000a1", "", 3, ns(1), ns(2), gen_ai__agent__id="coder",
                    http__request__header__authorization=[f"Bearer {jwt}"],
                    url__full=f"https://api.example/v1/x?access_token={jwt}",
                    http__request__method="GET", http__response__status_code=200),
               span(t, "00000000000000a2", "", 3, ns(3), ns(4), gen_ai__agent__id="coder",
                    tokentrail__token__fp=hexfp, http__response__status_code=401)),
        logs("agent-svc", {"timeUnixNano": ns(5), "traceId": t, "spanId": "00000000000000a1",
                           "body": {"stringValue": f"retrying with token {other}"},
                           "attributes": attrs(gen_ai__agent__id="coder")}),
        # a broken document holding a token is one reject whose excerpt is redacted
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "auth", '
        f'"value": {{"stringValue": "Bearer {jwt}"}}}}',
    ])
    report = ingest(case, [str(path)])
    assert (report.events, report.rejects) == (3, 1)
    e = stored(case, path)
    assert e[1]["token_fp"] == fingerprint(jwt) and e[1]["token_key"] == "jti-otel-1"
    assert e[1]["client_id"] == "orchestrator" and e[1]["claims_verified"] is False
    assert (e[1]["kind"], e[1]["auth_scheme"], e[1]["raw_token_logged"]) == ("use", "Bearer", True)
    assert e[1]["holder_id"] == "agent:coder"
    assert "access_token=[REDACTED]" in str(e[1]["path"])
    # a hex SHA-256 fingerprint is the same token_fp as base64url
    assert e[2]["token_fp"] == "XwwNDf8-K2FKjwd3WV3kUA6kttLVY0_XHxm0jcU_Lxo"
    assert e[2]["kind"] == "deny"
    # a JWT in a log body is fingerprinted, but a log line is not a presentation
    assert e[3]["token_fp"] == fingerprint(other) and e[3]["kind"] == "other"
    text = case_text(case)
    for secret in (jwt, other, jwt.split(".")[1], other.split(".")[2]):
        assert secret not in text


def test_otel_sniffing_takes_otel_files_only():
    mappings = list(builtin_mappings())
    otel = get_mapping("otel")
    from tokentrail.sources.discover import expand

    files, _ = expand([str(FIXTURES)])
    assert len(files) > 15
    for src in files:
        sniffed = sniff_container(read_prefix(src), all_wrapper_keys(mappings),
                                  all_nested_paths(mappings))
        chosen = choose_format(sniffed.records, mappings)
        is_otel = src.name.endswith(("agent-traces.jsonl", "agent-logs.json"))
        assert (chosen is otel) == is_otel, src.name
        if not is_otel:  # otel's predicate never matches another format's records
            assert all(otel.sniff.score(r) == 0 for r in sniffed.records), src.name


# -- end to end: the agents are the holders the gateway could not name ---------------------------

def scan(case: Case, *paths: Path, rules: list[Any] | None = None,
         ) -> tuple[dict[tuple[str, str], dict[str, Any]], list[Any]]:
    report = ingest(case, [str(p) for p in paths])
    assert report.rejects == 0 and not report.problems
    findings = analyse(case.con, rules=rules).findings
    cols, rows = case.query("select * from token_holders")
    return {(r[cols.index("token_key")], r[cols.index("holder_id")]): dict(zip(cols, r, strict=True))
            for r in rows}, findings


def test_forwarded_orchestrator_token_is_found_through_the_tool_agents_trace(case):
    pairs, findings = scan(case, OTEL)
    # the orchestrator presenting its own token (gateway line 1, attributed by its span)
    own = pairs[(T1, "agent:orchestrator")]
    assert (own["classification"], own["holder_tier"]) == ("owner", "workload")
    assert any("e457b5a2e4d86bd1" in x for x in own["holder_evidence"])
    # the legitimate delegation: the tool agent with the token it obtained by exchange
    delegated = pairs[(T2, "agent:repo-tool")]
    assert (delegated["classification"], delegated["confidence"]) == ("delegate", 0.9)
    assert any("current actor (act.sub repo-tool)" in r for r in delegated["reasons"])
    # the tool agent re-presenting the orchestrator's token to another API
    fwd = pairs[(T1, "agent:repo-tool")]
    assert (fwd["classification"], fwd["forward_subtype"]) == ("forwarded", "mcp_passthrough")
    assert any("f0e1d2c3b4a59687" in x for x in fwd["holder_evidence"])
    # stronger transport evidence keeps its holder: the mTLS request stays the SPIFFE ID's
    assert pairs[(T1, ORCH_SPIFFE)]["classification"] == "owner"
    assert not [k for k in pairs if k[1].startswith("ip:")]  # every gateway hop has a name
    hits = [(f.rule, f.token["key"], f.holder["id"]) for f in findings]
    assert ("TT002", T1, "agent:repo-tool") in hits
    assert not [h for h in hits if h[2] in ("agent:orchestrator", ORCH_SPIFFE)]
    tt002 = next(f for f in findings if f.rule == "TT002")
    lines = {(Path(ev["file"]).name, ev["line"]) for ev in tt002.evidence}
    assert ("gateway-access.jsonl", 3) in lines and ("agent-logs.json", 2) in lines


def test_without_the_agents_telemetry_the_same_hop_is_only_an_address(case):
    pairs, findings = scan(case, GATEWAY, IDP)
    hop = pairs[(T1, "ip:10.42.3.9/repo-tool")]
    assert hop["classification"] == "suspicious"
    assert not [f for f in findings if f.token["key"] == T1]


def test_attribution_is_recorded_undone_and_redone_by_each_scan(case):
    scan(case, OTEL, rules=[])
    _, rows = case.query("select line, holder_id, prev_holder_id, method from holder_attribution "
                         "join sources using (source_id) where path like '%gateway-access.jsonl' "
                         "order by line")
    assert rows == [(1, "agent:orchestrator", "ip:10.42.1.17/orchestrator", "caller_span"),
                    (2, "agent:repo-tool", "ip:10.42.3.9/repo-tool", "caller_span"),
                    (3, "agent:repo-tool", "ip:10.42.3.9/repo-tool", "caller_span")]
    before = case.query("select token_key, holder_id, classification from token_holders order by all")
    analyse(case.con, rules=[])
    assert case.query("select token_key, holder_id, classification from token_holders "
                      "order by all") == before
    # the agents' telemetry removed: the gateway lines get their own holders back
    case.con.execute("DELETE FROM events WHERE format = 'otel'")
    analyse(case.con, rules=[])
    _, got = case.query("select e.line, e.holder_id from events e join sources s "
                        "using (source_id) where s.path like '%gateway-access.jsonl' order by 1")
    assert got == [(1, "ip:10.42.1.17/orchestrator"), (2, "ip:10.42.3.9/repo-tool"),
                   (3, "ip:10.42.3.9/repo-tool"), (4, ORCH_SPIFFE)]
    assert case.query("select count(*) from holder_attribution")[1] == [(0,)]


# -- what must not happen ------------------------------------------------------------------------

ALPHA = "11111111111111111111111111111111"
BETA = "22222222222222222222222222222222"
GAMMA = "33333333333333333333333333333333"


def gateway_line(seconds: float, trace: str, caller: str, authority: str, remote: str,
                 jti: str, **more: Any) -> dict[str, Any]:
    at = datetime(2026, 11, 2, 10, 0, 5, tzinfo=UTC) + timedelta(seconds=seconds)
    rec = {"start_time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
           "method": "GET", "path": "/v1/x", "response_code": 200, "authority": authority,
           "downstream_remote_address": f"{remote}:40000", "user_agent": "python-httpx/0.27",
           "traceparent": f"00-{trace}-{caller}-01", "jwt_payload": {"jti": jti, "azp": "alpha"}}
    rec.update(more)
    return rec


def test_guards_keep_traces_from_naming_the_wrong_presenter(case, tmp_path):
    otel = write_jsonl(tmp_path / "agents.jsonl", [
        # alpha: its agent span and, under it, the HTTP client span that calls api.acme (5-6 s)
        traces("alpha-svc",
               span(ALPHA, "a000000000000001", "", 1, ns(4), ns(8), gen_ai__agent__id="alpha"),
               span(ALPHA, "a000000000000002", "a000000000000001", 3, ns(5), ns(6),
                    server__address="api.acme", url__full="https://api.acme/v1/x")),
        # beta alone in its trace
        traces("beta-svc", span(BETA, "b000000000000001", "", 1, ns(4), ns(8),
                                gen_ai__agent__id="beta")),
        # gamma shares its trace with another instrumented service
        traces("gamma-svc", span(GAMMA, "c000000000000001", "", 1, ns(4), ns(8),
                                 gen_ai__agent__id="gamma")),
        traces("mcp-files", span(GAMMA, "c000000000000002", "c000000000000001", 2, ns(5), ns(6))),
    ])
    gw = write_jsonl(tmp_path / "gw.jsonl", [
        gateway_line(0.1, ALPHA, "a000000000000002", "api.acme", "10.1.1.1", "j1"),   # 1 attributed
        gateway_line(0.2, ALPHA, "a000000000000002", "api.acme", "10.1.1.1", "j2",    # 2 mTLS: kept
                     downstream_peer_uri_san="spiffe://acme.example/ns/a/sa/alpha"),
        gateway_line(0.3, ALPHA, "a000000000000002", "other.acme", "10.1.1.1", "j3"),  # 3 elsewhere
        gateway_line(0.4, ALPHA, "a000000000000002", "api.acme", "10.9.9.9", "j4"),   # 4 other source
        gateway_line(0.5, ALPHA, "a0000000000000ff", "api.acme", "10.1.1.1", "j5"),   # 5 unknown span
        gateway_line(300, ALPHA, "a000000000000002", "api.acme", "10.1.1.1", "j6"),   # 6 5 min later
    ])
    # a log that names only the trace (no caller span): the trace alone decides
    app = write_jsonl(tmp_path / "app.jsonl", [
        {"ts": "2026-11-02T10:00:05.5Z", "kind": "use", "token_id": "j7", "trace_id": BETA,
         "src_ip": "10.3.3.3"},
        {"ts": "2026-11-02T10:00:05.5Z", "kind": "use", "token_id": "j8", "trace_id": GAMMA,
         "src_ip": "10.4.4.4"},
    ])
    ingest(case, [str(otel), str(gw), str(app)])
    analyse(case.con, rules=[])
    _, got = case.query("select token_key, holder_id from events where kind = 'use' order by 1")
    assert got == [
        ("j1", "agent:alpha"),
        ("j2", "spiffe://acme.example/ns/a/sa/alpha"),
        ("j3", "ip:10.1.1.1/python-httpx"),
        ("j4", "ip:10.9.9.9/python-httpx"),
        ("j5", "ip:10.1.1.1/python-httpx"),
        ("j6", "ip:10.1.1.1/python-httpx"),
        ("j7", "agent:beta"),
        ("j8", "ip:10.4.4.4"),
    ]
    _, how = case.query("select holder_id, method, evidence from holder_attribution order by 1")
    assert [(h, m) for h, m, _ in how] == [("agent:alpha", "caller_span"), ("agent:beta", "trace_only")]
    assert "is the only agent and service in trace " + BETA in how[1][2]


def test_no_agent_telemetry_changes_nothing(case):
    ingest(case, [str(GATEWAY), str(IDP)])
    before = case.query("select * from events order by source_id, line")
    analyse(case.con, rules=[])
    assert case.query("select count(*) from holder_attribution")[1] == [(0,)]
    assert case.query("select * from events order by source_id, line") == before
