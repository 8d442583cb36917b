"""Findings: stable ids, baselines, and the JSON shape DESIGN.md's output contract fixes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from tokentrail.errors import InputError


def finding_id(rule_id: str, token_key: str | None, holder_id: str | None) -> str:
    """Stable across runs on the same input, so baselines keep working."""
    text = f"{rule_id}\x1f{token_key or ''}\x1f{holder_id or ''}"
    return "TTF-" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Finding:
    id: str
    rule: str
    title: str
    severity: str
    classification: str
    confidence: float | None
    reasons: list[str]
    token: dict[str, Any]
    holder: dict[str, Any]
    intended_holder: dict[str, Any]
    first_seen: str | None
    last_seen: str | None
    count: int
    evidence: list[dict[str, Any]] = field(default_factory=list)
    attack: list[str] = field(default_factory=list)
    owasp: list[str] = field(default_factory=list)
    incident: str | None = None  # the incident it belongs to (tokentrail.rules.incidents)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_baseline(path: str, *, today: date | None = None) -> set[str]:
    """The finding ids a baseline suppresses. A baseline is a JSON list of finding ids, a
    previous scan's JSON output, or a list of entries (like trivy's .trivyignore.yaml)
    `{"id": "TTF-…", "reason": "why it is accepted", "expires": "2026-12-31"}`: an entry
    whose expiry date has passed suppresses nothing, so an accepted risk comes back."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError("baseline file not found", file=path) from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"baseline is not JSON: {exc}", file=path) from None
    if isinstance(data, dict) and isinstance(data.get("findings"), list):
        data = [f.get("id") for f in data["findings"] if isinstance(f, dict)]
    if not isinstance(data, list):
        raise InputError("baseline must be a list of finding ids or entries, or a scan's JSON "
                         "output", file=path)
    today = today or datetime.now(UTC).date()
    ids: set[str] = set()
    for n, item in enumerate(data, 1):
        if isinstance(item, str):
            ids.add(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise InputError(f"baseline entry {n} must be a finding id or an object with "
                             "\"id\" (and optional \"reason\", \"expires\")", file=path)
        unknown = set(item) - {"id", "reason", "expires"}
        if unknown:
            raise InputError(f"baseline entry {n} has unknown key(s) {', '.join(sorted(unknown))}",
                             file=path)
        expires = item.get("expires")
        if expires is not None:
            try:
                until = date.fromisoformat(str(expires))
            except ValueError:
                raise InputError(f"baseline entry {n}: expires must be a date (YYYY-MM-DD), not "
                                 f"{expires!r}", file=path) from None
            if until < today:
                continue
        ids.add(item["id"])
    return ids


def baseline_json(findings: Iterable[Finding]) -> bytes:
    return orjson.dumps(sorted({f.id for f in findings}), option=orjson.OPT_INDENT_2) + b"\n"
