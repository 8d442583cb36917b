"""SARIF 2.1.0 for code-scanning dashboards: one run, one result per finding.

Locations point at the log file and line of each evidence event (DESIGN.md, "Output contracts");
for JSON-array logs the line is the record number. Paths are written as URI references relative
to `base_dir` (the working directory, or `scan --sarif-root DIR`) under the `%SRCROOT%` base id where possible, else as
`file://` URIs. The finding id goes into `partialFingerprints`, so a dashboard tracks a finding
across runs the same way a baseline does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tokentrail.rules.findings import Finding

from .. import __version__
from ..output import sanitize_terminal
from ..rules.model import Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "tokentrailFindingId/v1"
SRCROOT = "%SRCROOT%"
MAX_LOCATIONS = 20

# GitHub code scanning reads `security-severity` (a string, 0.1-10) to rank security alerts.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}

# Characters a URI reference may carry as they are in a path (RFC 3986 pchar and "/").
_URI_SAFE = "/-._~!$&'()*+,;=@"


def artifact_location(path: str | None, base_dir: Path,
                      origin: Path | None = None) -> dict[str, Any] | None:
    """The artifactLocation of a log file: relative to base_dir under %SRCROOT% where it is
    inside base_dir, else an absolute file URI. A relative source path is read from `origin`
    (default: base_dir). None when the source is unknown."""
    if not path:
        return None
    base = os.path.abspath(base_dir)
    full = os.path.abspath(os.path.join(os.path.abspath(origin or base_dir), path))
    rel = os.path.relpath(full, base)
    if rel == os.curdir or rel.split(os.sep, 1)[0] == os.pardir:
        return {"uri": Path(full).as_uri()}
    return {"uri": _relative_uri(Path(rel).as_posix()), "uriBaseId": SRCROOT}


def _relative_uri(posix_path: str) -> str:
    # quote() percent-encodes UTF-8 bytes, spaces, '%', '#', '?', ':' (a colon in the first
    # segment would otherwise read as a scheme) and anything else outside _URI_SAFE.
    return quote(posix_path, safe=_URI_SAFE)


def rule_name(title: str) -> str:
    """A rule's `name`: its title in UpperCamelCase, an identifier-like label dashboards show."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    return "".join(w[:1].upper() + w[1:] for w in words) or "Rule"


def unwrap(text: str) -> str:
    """Rule text as paragraphs: the TOML files' hard line breaks joined, blank lines kept."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip())
                       for p in paragraphs if p.strip())


def rule_help(rule: Rule) -> str:
    text = unwrap(rule.description)
    if rule.false_positives:
        text += "\n\nFalse positives: " + unwrap(rule.false_positives)
    return text


def reporting_descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule_name(rule.title),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": unwrap(rule.description)},
        "help": {"text": rule_help(rule)},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "tags": ["security", *rule.attack],
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "classification": rule.classification,
            "owasp": list(rule.owasp),
        },
    }


def _fallback_rule(f: Finding) -> Rule:
    """A descriptor for a finding whose rule was not passed in (e.g. findings from a file)."""
    return Rule(id=f.rule, title=f.title, severity=f.severity, classification=f.classification,
                attack=tuple(f.attack), owasp=tuple(f.owasp), description=f.title,
                false_positives="", sql="", source="")


def result_message(f: Finding) -> str:
    """The alert text a dashboard shows: log-derived parts lose control and bidi characters
    (as on a terminal); the exact values stay in the result's properties."""
    text = f"{f.title}: " + "; ".join(f.reasons) if f.reasons else f.title
    return sanitize_terminal(text)


def sarif_result(f: Finding, rule_index: int, base_dir: Path,
                 origin: Path | None = None) -> dict[str, Any]:
    locations = []
    for ev in f.evidence[:MAX_LOCATIONS]:
        artifact = artifact_location(ev.get("file"), base_dir, origin)
        if artifact is None:
            continue
        physical: dict[str, Any] = {"artifactLocation": artifact}
        line = ev.get("line")
        if isinstance(line, int) and line >= 1:
            physical["region"] = {"startLine": line}
        locations.append({"physicalLocation": physical})
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": LEVELS[f.severity],
        "message": {"text": result_message(f)},
    }
    if locations:
        result["locations"] = locations
    result["partialFingerprints"] = {FINGERPRINT_KEY: f.id}
    result["properties"] = {
        "findingId": f.id,
        "severity": f.severity,
        "classification": f.classification,
        "confidence": f.confidence,
        "tokenKey": f.token.get("key"),
        "holder": f.holder.get("id"),
        "holderTier": f.holder.get("tier"),
        "intendedHolder": f.intended_holder.get("id"),
        "firstSeen": f.first_seen,
        "lastSeen": f.last_seen,
        "count": f.count,
        "eventIds": [ev.get("event_id") for ev in f.evidence],
        "incident": f.incident,
    }
    return result


def sarif_log(findings: Iterable[Finding], rules: Iterable[Rule] = (), *,
              base_dir: Path | None = None, origin: Path | None = None) -> dict[str, Any]:
    """The SARIF log of a scan. Every rule in `rules` is listed in tool.driver.rules, fired or
    not (a dashboard then knows what was checked), plus any rule a finding names that `rules`
    lacks. Artifact URIs are relative to `base_dir` (default: the working directory); relative
    source paths are read from `origin` (default: base_dir)."""
    findings = list(findings)
    base = base_dir if base_dir is not None else Path.cwd()
    used: dict[str, Rule] = {r.id: r for r in rules}
    for f in findings:
        if f.rule not in used:
            used[f.rule] = _fallback_rule(f)
    ordered = sorted(used)
    index = {rule_id: i for i, rule_id in enumerate(ordered)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "tokentrail",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": [reporting_descriptor(used[rule_id]) for rule_id in ordered],
            }},
            "results": [sarif_result(f, index[f.rule], base, origin) for f in findings],
        }],
    }
