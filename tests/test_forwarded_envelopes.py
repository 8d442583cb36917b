"""Forwarded envelopes (issue 17 item 2): records as log shippers deliver them.

- AKS: Azure Monitor diagnostic settings deliver the API server's audit lines (categories
  kube-audit, kube-audit-admin) as resource-log records {"time", "resourceId", "category",
  "operationName", "properties": {"log": "<the audit event, a JSON string>", "pod", "stream"}},
  in a {"records": [...]} document (Event Hub) or one record per line (storage account).
  https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs-schema and
  https://learn.microsoft.com/azure/aks/monitor-aks-reference (resource log categories).
- GKE: Cloud Logging LogEntry with protoPayload AuditLog, resource.type k8s_cluster
  (https://cloud.google.com/kubernetes-engine/docs/how-to/audit-logging), met inside a
  Kubernetes audit file: rejected with a reason that names the wrapper.
- CloudTrail through Logstash: logstash-codec-cloudtrail moves eventTime to @timestamp
  (lib/logstash/codecs/cloudtrail.rb: event['@timestamp'] = event.delete('eventTime')).
- CloudTrail through Beats / Elastic Agent aws-s3 with expand_event_list_from_field "Records":
  {"@timestamp": <when read>, "message": "<the record, a JSON string>"}
  (https://www.elastic.co/guide/en/observability/current/expanding-events-from-json-object-lists.html).
Fixtures: tests/fixtures/k8s-audit/README.md and tests/fixtures/cloudtrail/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokentrail import Case
from tokentrail.case.ingest import ingest

K8S = Path(__file__).parent / "fixtures" / "k8s-audit"
CT = Path(__file__).parent / "fixtures" / "cloudtrail"
COLS = "line, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ'), kind, token_id, holder_id"


def _events(case: Case) -> list[tuple[object, ...]]:
    return case.query(f"SELECT {COLS} FROM events ORDER BY line")[1]


def _plain_k8s(lines: list[int]) -> list[tuple[object, ...]]:
    """The same events read from the plain audit log (lines of tests/fixtures/k8s-audit/audit.log)."""
    with Case() as case:
        ingest(case, [str(K8S / "audit.log")])
        rows = {r[0]: r[1:] for r in _events(case)}
    return [(i + 1, *rows[n]) for i, n in enumerate(lines)]


def test_aks_diagnostic_records_read_the_audit_event_in_properties_log() -> None:
    expected = _plain_k8s([2, 4])  # the TokenRequest (issue) and the pod's use of the token
    assert [r[2] for r in expected] == ["issue", "use"]
    for name in ("aks-diagnostic.json", "aks-diagnostic.jsonl"):
        with Case() as case:
            f = ingest(case, [str(K8S / name)]).files[0]
            assert f.format == "k8s-audit", name
            assert _events(case) == expected, name
            rejects = case.query("SELECT line, reason FROM rejects")[1]
        if name.endswith(".json"):  # record 3: properties.log cut short
            assert rejects == [(3, "AKS diagnostic record (category kube-audit) whose "
                                   "properties.log is not a JSON audit event: wrapper not read")]
        else:
            assert rejects == []


def test_gke_wrapped_event_in_a_k8s_audit_file_says_the_wrapper_was_not_read() -> None:
    with Case() as case:
        f = ingest(case, [str(K8S / "gke-in-audit.log")]).files[0]
        assert (f.format, f.events, f.rejects) == ("k8s-audit", 2, 1)
        assert case.query("SELECT line, reason FROM rejects")[1] == [
            (3, "Cloud Logging wrapper (protoPayload) not read as k8s-audit: ingest with "
                "--log-format gcp-audit")]


def test_gke_entry_alone_is_read_by_gcp_audit(tmp_path: Path) -> None:
    line = (K8S / "gke-in-audit.log").read_text().splitlines()[2]
    path = tmp_path / "gke.jsonl"
    path.write_text(line + "\n")
    with Case() as case:
        f = ingest(case, [str(path)]).files[0]
        assert (f.format, f.events, f.rejects) == ("gcp-audit", 1, 0)


def _plain_cloudtrail(n: int) -> list[tuple[object, ...]]:
    with Case() as case:
        ingest(case, [str(CT / "records.json")])
        return _events(case)[:n]


def test_cloudtrail_through_logstash_takes_ts_from_at_timestamp() -> None:
    first = json.loads((CT / "logstash.jsonl").read_text().splitlines()[0])
    assert "eventTime" not in first and "@timestamp" in first
    with Case() as case:
        f = ingest(case, [str(CT / "logstash.jsonl")]).files[0]
        assert (f.format, f.events, f.rejects) == ("cloudtrail", 5, 0)
        assert _events(case) == _plain_cloudtrail(5)


def test_cloudtrail_through_beats_reads_the_record_in_message() -> None:
    first = json.loads((CT / "beats-aws-s3.jsonl").read_text().splitlines()[0])
    assert json.loads(first["message"])["eventTime"] != first["@timestamp"]
    with Case() as case:
        f = ingest(case, [str(CT / "beats-aws-s3.jsonl")]).files[0]
        assert (f.format, f.events, f.rejects) == ("cloudtrail", 5, 0)
        # ts is the event's time, not when the shipper read it
        assert _events(case) == _plain_cloudtrail(5)
