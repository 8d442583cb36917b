"""Run rules over a case and turn their hits into findings (also stored in `findings`)."""

from __future__ import annotations

from typing import Any

import duckdb

from ..findings import Finding, finding_id
from ..output import iso
from ..redact import redact_text
from .model import HIT_COLUMNS, Rule, RuleError

FINDINGS_DDL = """
CREATE OR REPLACE TABLE findings (
    id VARCHAR, rule VARCHAR, title VARCHAR, severity VARCHAR, classification VARCHAR,
    confidence DOUBLE, token_key VARCHAR, holder_id VARCHAR, first_seen TIMESTAMPTZ,
    last_seen TIMESTAMPTZ, count BIGINT, event_ids VARCHAR[], reasons VARCHAR[])
"""
MAX_EVIDENCE = 20


def _hits(con: duckdb.DuckDBPyConnection, rule: Rule) -> list[dict[str, Any]]:
    cols = ", ".join(HIT_COLUMNS)
    try:
        cur = con.execute(f"SELECT {cols} FROM ({rule.sql}) ORDER BY token_key, holder_id")
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise RuleError(f"rule SQL failed: {redact_text(first)}", file=rule.source, key="sql") from None
    return [dict(zip(HIT_COLUMNS, row, strict=True)) for row in cur.fetchall()]


def _details(con: duckdb.DuckDBPyConnection, token_key: str | None,
             holder_id: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    tok = con.execute(
        "SELECT token_key, token_fp, token_id, issuer, subject, client_id, audience "
        "FROM tokens WHERE token_key = ?", [token_key]).fetchone()
    token = dict(zip(("key", "fp", "id", "issuer", "subject", "client_id", "audience"),
                     tok, strict=True)) if tok else {"key": token_key}
    pair = con.execute(
        "SELECT holder_tier, intended_holder_id, intended_holder_tier, confidence "
        "FROM token_holders WHERE token_key = ? AND holder_id = ?", [token_key, holder_id]
    ).fetchone() if holder_id is not None else None
    if pair is None and holder_id is not None:
        tier = con.execute("SELECT any_value(holder_tier) FROM events WHERE holder_id = ?",
                           [holder_id]).fetchone()
        pair = (tier[0] if tier else None, None, None, None)
    holder = {"id": holder_id, "tier": pair[0] if pair else None}
    intended = {"id": pair[1] if pair else None, "tier": pair[2] if pair else None}
    return token, holder, intended, pair[3] if pair else None


def _evidence(con: duckdb.DuckDBPyConnection, event_ids: list[str] | None) -> list[dict[str, Any]]:
    if not event_ids:
        return []
    rows = con.execute(
        "SELECT e.event_id, s.path, e.line, e.ts FROM events e LEFT JOIN sources s USING (source_id) "
        "WHERE list_contains(?, e.event_id) ORDER BY e.ts, e.event_id LIMIT ?",
        [list(event_ids), MAX_EVIDENCE]).fetchall()
    return [{"event_id": r[0], "file": r[1], "line": r[2], "ts": iso(r[3]) if r[3] else None}
            for r in rows]


def run_rules(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> list[Finding]:
    """Every rule's hits as findings, most severe first; stored in the `findings` table."""
    con.execute(FINDINGS_DDL)
    out: list[Finding] = []
    for rule in rules:
        for hit in _hits(con, rule):
            token, holder, intended, confidence = _details(con, hit["token_key"], hit["holder_id"])
            first, last = hit["first_seen"], hit["last_seen"]
            f = Finding(
                id=finding_id(rule.id, hit["token_key"], hit["holder_id"]),
                rule=rule.id, title=rule.title, severity=rule.severity,
                classification=rule.classification,
                confidence=None if confidence is None else float(confidence),
                reasons=[str(r) for r in (hit["reasons"] or [])],
                token=token, holder=holder, intended_holder=intended,
                first_seen=iso(first) if first is not None else None,
                last_seen=iso(last) if last is not None else None,
                count=int(hit["count"] or 0),
                evidence=_evidence(con, hit["event_ids"]),
                attack=list(rule.attack), owasp=list(rule.owasp),
            )
            out.append(f)
            con.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [f.id, f.rule, f.title, f.severity, f.classification, f.confidence,
                         hit["token_key"], hit["holder_id"], first, last, f.count,
                         list(hit["event_ids"] or []), f.reasons])
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    out.sort(key=lambda f: (order[f.severity], f.rule, f.token.get("key") or "", f.holder["id"] or ""))
    return out
