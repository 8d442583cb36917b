"""OCSF 1.1.0 Detection Finding events (class_uid 2004), one per finding, as a JSON array.

Attributes follow the OCSF 1.1.0 schema (https://schema.ocsf.io/1.1.0/classes/detection_finding;
source: github.com/ocsf/ocsf-schema v1.1.0, events/findings/detection_finding.json extends
finding.json extends base_event.json). Required there: activity_id, category_uid, class_uid,
type_uid, time, severity_id, metadata (product with vendor_name, version) and finding_info
(uid, title). Recommended and set here: message, status_id, confidence_id, evidences and
finding_info.analytic (whose type_id is required). Left out: the recommended `resources` (a
finding names a token and a holder, not the resource they called) and attack.version
(tokentrail does not pin an ATT&CK release). What OCSF has no
attribute for (token, holders, classification, reasons) goes into `unmapped.tokentrail`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from tokentrail.rules.findings import Finding

from .. import __version__
from ..output import jsonable

OCSF_VERSION = "1.1.0"
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_CREATE  # 200401

# severity_id: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
SEVERITY_IDS = {"info": (1, "Informational"), "low": (2, "Low"), "medium": (3, "Medium"),
                "high": (4, "High"), "critical": (5, "Critical")}
# observable type_id (OCSF 1.1.0 dictionary): 2 IP Address, 99 Other.
OBSERVABLE_IP = 2
OBSERVABLE_OTHER = 99
ANALYTIC_RULE = 1
STATUS_NEW = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(iso_text: str | None) -> int | None:
    """An ISO 8601 timestamp as OCSF timestamp_t: milliseconds since the Unix epoch."""
    if not iso_text:
        return None
    dt = datetime.fromisoformat(iso_text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def confidence_id(confidence: float | None) -> tuple[int, str]:
    """confidence_id: 0 Unknown, 1 Low, 2 Medium, 3 High."""
    if confidence is None:
        return 0, "Unknown"
    if confidence >= 0.85:
        return 3, "High"
    if confidence >= 0.5:
        return 2, "Medium"
    return 1, "Low"


def holder_ip(holder: dict[str, Any]) -> str | None:
    """The address of a network-tier holder (`ip:<addr>[/<user agent family>]`)."""
    hid = holder.get("id")
    if holder.get("tier") != "network" or not isinstance(hid, str) or not hid.startswith("ip:"):
        return None
    text = hid[3:]
    # An IPv6 address holds ':' but never '/', and the user agent family follows the first '/'.
    text = text.split("/", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def detection_finding(f: Finding) -> dict[str, Any]:
    severity_id, severity = SEVERITY_IDS[f.severity]
    conf_id, conf = confidence_id(f.confidence)
    first, last = epoch_ms(f.first_seen), epoch_ms(f.last_seen)
    # `time` is when the finding was made; a scan is a batch, so it is the last evidence time
    # (stable across runs on the same input, like the finding id).
    time = last if last is not None else first
    if time is None:
        time = (datetime.now(UTC) - _EPOCH) // timedelta(milliseconds=1)
    info: dict[str, Any] = {
        "uid": f.id,
        "title": f.title,
        "desc": "; ".join(f.reasons) if f.reasons else f.title,
        "types": [f.classification],
        "analytic": {"uid": f.rule, "name": f.title, "type_id": ANALYTIC_RULE, "type": "Rule"},
    }
    if first is not None:
        info["first_seen_time"] = first
    if last is not None:
        info["last_seen_time"] = last
    if f.attack:
        info["attacks"] = [{"technique": {"uid": t}} for t in f.attack]
    files = sorted({ev["file"] for ev in f.evidence if ev.get("file")})
    if files:
        info["data_sources"] = files
    ip = holder_ip(f.holder)
    evidences = []
    for ev in f.evidence:
        item: dict[str, Any] = {"data": {"event_id": ev.get("event_id"), "file": ev.get("file"),
                                         "line": ev.get("line"), "ts": ev.get("ts")}}
        if ip is not None:
            item["src_endpoint"] = {"ip": ip}
        evidences.append(item)
    observables = []
    if f.token.get("key") is not None:
        observables.append({"name": "unmapped.tokentrail.token.key", "type_id": OBSERVABLE_OTHER,
                            "type": "Other", "value": f.token["key"]})
    if f.holder.get("id") is not None:
        observables.append({"name": "unmapped.tokentrail.holder.id", "type_id": OBSERVABLE_OTHER,
                            "type": "Other", "value": f.holder["id"]})
    if ip is not None and evidences:
        observables.append({"name": "evidences.src_endpoint.ip", "type_id": OBSERVABLE_IP,
                            "type": "IP Address", "value": ip})
    event: dict[str, Any] = {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": TYPE_UID,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": STATUS_NEW,
        "status": "New",
        "time": time,
        "message": f.title,
        "confidence_id": conf_id,
        "confidence": conf,
        "finding_info": info,
        "metadata": {
            "product": {"name": "tokentrail", "vendor_name": "tokentrail", "version": __version__},
            "version": OCSF_VERSION,
        },
    }
    if f.confidence is not None:
        event["confidence_score"] = round(f.confidence * 100)
    if first is not None:
        event["start_time"] = first
    if last is not None:
        event["end_time"] = last
    if evidences:
        event["evidences"] = evidences
    if observables:
        event["observables"] = observables
    event["unmapped"] = {"tokentrail": jsonable({
        "rule": f.rule,
        "classification": f.classification,
        "confidence": f.confidence,
        "reasons": list(f.reasons),
        "token": dict(f.token),
        "holder": dict(f.holder),
        "intended_holder": dict(f.intended_holder),
        "count": f.count,
        "owasp": list(f.owasp),
        "incident": f.incident,
    })}
    return event


def ocsf_findings(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    """Every finding as an OCSF 1.1.0 Detection Finding, in the scan's order."""
    return [detection_finding(f) for f in findings]
