"""`scan --format ocsf`: OCSF 1.1.0 Detection Finding (class_uid 2004) events, one per finding.

Requirements below are OCSF 1.1.0's (https://schema.ocsf.io/1.1.0/classes/detection_finding;
source github.com/ocsf/ocsf-schema at v1.1.0: events/base_event.json with
includes/classification.json and includes/occurrence.json, events/findings/finding.json,
events/findings/detection_finding.json, objects/finding_info.json, metadata.json, product.json,
analytic.json, observable.json, evidences.json). They were read from that release's schema
files as bundled by the `pydantic-ocsf` PyPI package (ocsf/schemas/v1_1_0.json), not from a
later version: 1.1.0 still requires finding_info.title and product.vendor_name.
Regenerate the golden file with TOKENTRAIL_REGEN_GOLDEN=1 (then read the diff).
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import FIXTURES
from test_export_sarif import scan

from tokentrail import __version__
from tokentrail.export.ocsf import detection_finding, epoch_ms, ocsf_findings
from tokentrail.rules.findings import Finding

EXPORT = FIXTURES / "export"
AWKWARD = EXPORT / "awkward.jsonl"
LOG = "logs/awk ward é.jsonl"
GOLDEN = EXPORT / "awkward.ocsf.json"

# OCSF 1.1.0, requirement "required", with their OCSF types.
REQUIRED_EVENT = {  # base_event (+ classification, occurrence includes), finding, detection_finding
    "activity_id": int, "category_uid": int, "class_uid": int, "type_uid": int, "time": int,
    "severity_id": int, "metadata": dict, "finding_info": dict,
}
RECOMMENDED_EVENT = ("message", "status_id", "confidence_id", "evidences")
REQUIRED_FINDING_INFO = {"uid": str, "title": str}
REQUIRED_METADATA = {"product": dict, "version": str}
REQUIRED_PRODUCT = {"vendor_name": str}
REQUIRED_ANALYTIC = {"type_id": int}
REQUIRED_OBSERVABLE = {"name": str, "type_id": int}
# evidences: constraint at_least_one of these
EVIDENCE_ANY = {"actor", "api", "connection_info", "data", "dst_endpoint", "file", "process",
                "query", "src_endpoint"}
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
OBSERVABLE_TYPE_IDS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 22, 23, 24, 25, 26, 27, 30, 99}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    workdir = tmp_path_factory.mktemp("ocsf")
    return {fmt: scan(workdir, fmt) for fmt in ("ocsf", "json")}


def _has(obj: dict, required: dict[str, type], where: str) -> None:
    for key, typ in required.items():
        assert key in obj, f"{where}.{key} is required"
        assert isinstance(obj[key], typ) and not isinstance(obj[key], bool), f"{where}.{key}"


def test_ocsf_matches_the_golden_file(scanned):
    data = scanned["ocsf"].replace(f'"{__version__}"'.encode(), b'"<VERSION>"')
    if os.environ.get("TOKENTRAIL_REGEN_GOLDEN") == "1":
        GOLDEN.write_bytes(data)
    assert data == GOLDEN.read_bytes(), "differs from awkward.ocsf.json (TOKENTRAIL_REGEN_GOLDEN=1)"


def test_every_event_has_the_ocsf_1_1_detection_finding_required_attributes(scanned):
    events = json.loads(scanned["ocsf"])
    findings = json.loads(scanned["json"])["findings"]
    assert isinstance(events, list) and len(events) == len(findings) == 4
    for ev, f in zip(events, findings, strict=True):
        _has(ev, REQUIRED_EVENT, "event")
        for key in RECOMMENDED_EVENT:
            assert key in ev, key
        assert (ev["class_uid"], ev["category_uid"], ev["activity_id"]) == (2004, 2, 1)
        assert ev["type_uid"] == ev["class_uid"] * 100 + ev["activity_id"] == 200401
        assert ev["severity_id"] == SEVERITY_ID[f["severity"]]
        assert ev["status_id"] == 1 and ev["status"] == "New"
        _has(ev["metadata"], REQUIRED_METADATA, "metadata")
        assert ev["metadata"]["version"] == "1.1.0"
        _has(ev["metadata"]["product"], REQUIRED_PRODUCT, "metadata.product")
        assert ev["metadata"]["product"] == {"name": "tokentrail", "vendor_name": "tokentrail",
                                             "version": __version__}
        info = ev["finding_info"]
        _has(info, REQUIRED_FINDING_INFO, "finding_info")
        assert info["uid"] == f["id"] and info["title"] == f["title"]
        assert info["types"] == [f["classification"]]
        _has(info["analytic"], REQUIRED_ANALYTIC, "finding_info.analytic")
        assert info["analytic"] == {"uid": f["rule"], "name": f["title"], "type_id": 1, "type": "Rule"}
        assert [a["technique"]["uid"] for a in info["attacks"]] == f["attack"]
        assert info["first_seen_time"] <= info["last_seen_time"] == ev["time"]
        assert ev["confidence_score"] == round(f["confidence"] * 100)
        assert 0 <= ev["confidence_score"] <= 100
        assert len(ev["evidences"]) == len(f["evidence"])
        for item, evidence in zip(ev["evidences"], f["evidence"], strict=True):
            assert EVIDENCE_ANY & set(item)
            assert item["data"] == evidence
        for ob in ev["observables"]:
            _has(ob, REQUIRED_OBSERVABLE, "observable")
            assert ob["type_id"] in OBSERVABLE_TYPE_IDS
        values = {o["name"]: o["value"] for o in ev["observables"]}
        assert values["unmapped.tokentrail.token.key"] == f["token"]["key"]
        assert values["unmapped.tokentrail.holder.id"] == f["holder"]["id"]
        assert ev["unmapped"]["tokentrail"]["token"] == f["token"]


def test_times_are_epoch_milliseconds_and_network_holders_give_an_ip_observable(scanned):
    events = {e["finding_info"]["analytic"]["uid"]: e for e in json.loads(scanned["ocsf"])}
    tt004 = events["TT004"]
    # 2026-11-02T09:02:00Z and 09:02:30Z, computed independently (date -u +%s)
    assert tt004["finding_info"]["first_seen_time"] == 1793610120000
    assert tt004["time"] == tt004["end_time"] == 1793610150000
    assert {"name": "evidences.src_endpoint.ip", "type_id": 2, "type": "IP Address",
            "value": "203.0.113.99"} in tt004["observables"]
    assert all(e["src_endpoint"] == {"ip": "203.0.113.99"} for e in tt004["evidences"])
    ipv6 = events["TT005"]
    assert ipv6["evidences"][0]["src_endpoint"] == {"ip": "2001:db8::7"}
    assert "src_endpoint" not in events["TT001"]["evidences"][0]  # a SPIFFE holder has no address
    assert epoch_ms("2026-11-02T09:00:05.500000Z") == 1793610005500


def _finding(severity: str, confidence: float | None) -> Finding:
    return Finding(id="TTF-x", rule="X", title="t", severity=severity, classification="unknown",
                   confidence=confidence, reasons=[], token={"key": None},
                   holder={"id": None, "tier": None}, intended_holder={"id": None, "tier": None},
                   first_seen=None, last_seen=None, count=0)


def test_severity_and_confidence_map_to_ocsf_ids_and_sparse_findings_stay_valid():
    for severity, sid in SEVERITY_ID.items():
        assert detection_finding(_finding(severity, 0.5))["severity_id"] == sid
    assert [detection_finding(_finding("low", c))["confidence_id"] for c in (None, 0.3, 0.6, 0.9)] \
        == [0, 1, 2, 3]
    sparse = ocsf_findings([_finding("info", None)])[0]
    _has(sparse, REQUIRED_EVENT, "event")  # no timestamps at all: time is the export time
    assert "confidence_score" not in sparse and "observables" not in sparse
    assert "evidences" not in sparse and "attacks" not in sparse["finding_info"]
