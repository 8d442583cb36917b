"""What the report shows, read from the case: coverage and its gaps, finding rows, the token and
holder tables, the incident list. Plain dicts and strings; no HTML here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from tokentrail.rules.findings import Finding

from ...results import case_summary, holder_rows
from .text import CLASSES, ISSUANCE, KINDS, SEVERITIES, TIERS, anchor, one_of, text, ts_sort, ts_text

MAX_ROWS = 5000  # per table; the CLI's `tokens` / `holders` / `query` give everything
MAX_EVIDENCE_SHOWN = 5
MAX_REJECTS = 200


def fetch_rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = con.execute(sql, list(params)).fetchone()
    return row[0] if row else None


@dataclass
class Gap:
    key: str
    title: str
    checked: str
    why: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    total: int = 0  # what the count badge says
    numeric: tuple[int, ...] = ()  # right-aligned columns

    @property
    def more(self) -> int:
        """Rows left out of the table (the badge counts rows, except where it counts events)."""
        return max(0, self.total - len(self.rows)) if self.key != "no-token" else 0


def coverage(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    summary = case_summary(con)
    kinds = dict(con.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    kind_counts = [(k, kinds.pop(k, 0)) for k in KINDS] + sorted(kinds.items(), key=str)
    formats = fetch_rows(con, f"""
        -- what each format says it can show about issuance, as ingest stored it (sources.provides)
        WITH f AS (SELECT format, coalesce(min(provides->>'issuance'), '') AS declared
                   FROM sources WHERE format IS NOT NULL GROUP BY format)
        SELECT f.format, count(e.format) AS events, f.declared,
               count(*) FILTER (WHERE e.kind IN {ISSUANCE}) AS issuance,
               count(*) FILTER (WHERE e.kind IN ('use', 'deny')) AS presentations,
               count(*) FILTER (WHERE e.kind = 'revoke') AS revocations,
               count(*) FILTER (WHERE e.format IS NOT NULL AND e.token_key IS NULL) AS no_token,
               min(e.ts) AS first, max(e.ts) AS last
        FROM f LEFT JOIN events e ON e.format = f.format
        GROUP BY f.format, f.declared ORDER BY f.format""")
    tiers = dict(con.execute(
        "SELECT holder_tier, count(DISTINCT holder_id) FROM token_holders GROUP BY holder_tier").fetchall())
    tier_counts = [(t, tiers.pop(t, 0)) for t in TIERS] + sorted(tiers.items(), key=str)

    gaps: list[Gap] = []
    no_issuance = [f for f in formats if f["issuance"] == 0]
    gaps.append(Gap(
        key="formats", title="Formats that gave no issuance events",
        checked=f"{len(formats)} format(s) for events of kind issue, exchange or refresh",
        why="Tokens seen only in these logs have no record of whom they were issued to",
        columns=["format", "events", "presentations", "what the format can show"],
        rows=[[f["format"], str(f["events"]), str(f["presentations"]), f["declared"]]
              for f in no_issuance], total=len(no_issuance), numeric=(1, 2)))

    never = fetch_rows(con, f"""
        WITH k AS (SELECT token_key, list(DISTINCT kind ORDER BY kind) AS kinds FROM events
                   WHERE token_key IS NOT NULL GROUP BY token_key)
        SELECT t.token_key, t.client_id, t.first_seen, t.last_seen, t.uses, t.holders, t.formats,
               k.kinds, count(*) OVER () AS total
        FROM tokens t LEFT JOIN k USING (token_key)
        WHERE t.issued_at IS NULL ORDER BY t.first_seen, t.token_key LIMIT {MAX_ROWS}""")
    n_tokens = fetch_one(con, "SELECT count(*) FROM tokens") or 0
    gaps.append(Gap(
        key="never-issued", title="Tokens used but never seen issued",
        checked=f"{n_tokens} token(s) against the issue, exchange and refresh events in the case",
        why="Nothing in the case says whom these were issued to: add the issuer's logs",
        columns=["token", "issued to (claims)", "seen as", "presenters", "first seen", "last seen",
                 "formats"],
        rows=[[r["token_key"], text(r["client_id"]), text(r["kinds"]), str(r["holders"]),
               ts_text(r["first_seen"]), ts_text(r["last_seen"]), text(r["formats"])] for r in never],
        total=never[0]["total"] if never else 0, numeric=(3,)))

    network = fetch_rows(con, f"""
        SELECT holder_id, count(DISTINCT token_key) AS tokens, sum(count) AS events,
               list(DISTINCT classification ORDER BY classification) AS classes,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen, count(*) OVER () AS total
        FROM token_holders WHERE holder_tier = 'network'
        GROUP BY holder_id ORDER BY min(first_seen), holder_id LIMIT {MAX_ROWS}""")
    n_holders = fetch_one(con, "SELECT count(DISTINCT holder_id) FROM token_holders") or 0
    gaps.append(Gap(
        key="network-only", title="Holders known only by IP address (network tier)",
        checked=(f"{n_holders} presenter(s) for SPIFFE, mTLS, DPoP or workload identity; "
                 "these had none, only an address and user agent"),
        why="An address can be shared (NAT, proxies) or spoofed in forwarded headers: weaker evidence",
        columns=["holder", "tokens", "events", "classifications", "first seen", "last seen"],
        rows=[[r["holder_id"], str(r["tokens"]), str(r["events"]), text(r["classes"]),
               ts_text(r["first_seen"]), ts_text(r["last_seen"])] for r in network],
        total=network[0]["total"] if network else 0, numeric=(1, 2)))

    no_token = [f for f in formats if f["no_token"]]
    gaps.append(Gap(
        key="no-token", title="Events that carried no token evidence",
        checked=f"{summary['events']} event(s) for a token id, fingerprint or logged token",
        why="These requests cannot be tied to any token (logins, logouts, anonymous calls, or a "
            "log format without token fields)",
        columns=["format", "events without a token", "of events"],
        rows=[[f["format"], str(f["no_token"]), str(f["events"])] for f in no_token],
        total=sum(f["no_token"] for f in no_token), numeric=(1, 2)))

    rejects = fetch_rows(con, f"""
        SELECT s.path, r.line, r.reason, r.excerpt FROM rejects r LEFT JOIN sources s USING (source_id)
        ORDER BY s.path, r.line LIMIT {MAX_REJECTS}""")
    sources = fetch_rows(con, """
        SELECT path, format, events, rejects, bytes, sha256, ingested_at FROM sources ORDER BY path""")
    return {
        "summary": summary,
        "time_range": [ts_text(fetch_one(con, "SELECT min(ts) FROM events")),
                       ts_text(fetch_one(con, "SELECT max(ts) FROM events"))],
        "sources": sources, "formats": formats, "kinds": kind_counts, "tiers": tier_counts,
        "gaps": gaps, "rejects": rejects, "rejects_total": summary["rejects"],
    }


def finding_view(f: Finding) -> dict[str, Any]:
    sev = one_of(f.severity, SEVERITIES, "info")
    evidence = [{"where": f"{e.get('file')}:{e.get('line')}", "ts": text(e.get("ts"))}
                for e in f.evidence]
    return {
        "id": f.id, "rule": f.rule, "title": f.title, "severity": sev,
        "sev_rank": SEVERITIES.index(sev), "classification": f.classification,
        "cls": one_of(f.classification, CLASSES),
        "confidence": "" if f.confidence is None else f"{f.confidence:.2f}",
        "reasons": list(f.reasons), "token": f.token.get("key") or "",
        "token_anchor": anchor("tl-", f.token.get("key")),
        "token_client": f.token.get("client_id"), "token_issuer": f.token.get("issuer"),
        "holder": f.holder.get("id"), "holder_tier": f.holder.get("tier"),
        "intended": f.intended_holder.get("id"), "intended_tier": f.intended_holder.get("tier"),
        "first_seen": ts_text(f.first_seen), "last_seen": ts_text(f.last_seen),
        "first_sort": f.first_seen or "", "count": f.count,
        "evidence": evidence[:MAX_EVIDENCE_SHOWN], "evidence_more": evidence[MAX_EVIDENCE_SHOWN:],
        "attack": list(f.attack), "owasp": list(f.owasp),
    }


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITIES.index(one_of(f.severity, SEVERITIES, "info")),
                                           f.rule, f.token.get("key") or "", f.holder.get("id") or ""))


def token_table(con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], int]:
    total = fetch_one(con, "SELECT count(*) FROM tokens") or 0
    tokens = fetch_rows(con, f"""
        SELECT token_key, client_id, issuer, subject, audience, issue_kind, issued_at, exp, revoked_at,
               first_seen, last_seen, uses, holders, formats
        FROM tokens ORDER BY first_seen, token_key LIMIT {MAX_ROWS}""")
    holders: dict[str, list[dict[str, Any]]] = {}
    for h in fetch_rows(con, f"""
            SELECT token_key, holder_id, holder_tier, classification, confidence, count, reasons
            FROM token_holders
            WHERE token_key IN (SELECT token_key FROM tokens ORDER BY first_seen, token_key LIMIT {MAX_ROWS})
            ORDER BY token_key, first_seen, holder_id"""):
        holders.setdefault(h["token_key"], []).append({
            "id": h["holder_id"], "tier": h["holder_tier"], "classification": h["classification"],
            "cls": one_of(h["classification"], CLASSES),
            "confidence": "" if h["confidence"] is None else f"{h['confidence']:.2f}",
            "count": h["count"], "reason": (h["reasons"] or [""])[0]})
    out = []
    for t in tokens:
        hs = holders.get(t["token_key"], [])
        worst = min((CLASSES.index(h["cls"]) for h in hs if h["cls"] in ("stolen", "forwarded",
                                                                          "suspicious")), default=None)
        out.append({
            "key": t["token_key"], "client_id": t["client_id"], "issuer": t["issuer"],
            "subject": t["subject"], "audience": text(t["audience"]),
            "issue_kind": t["issue_kind"] or "not seen", "issued_at": ts_text(t["issued_at"]),
            "issued_sort": ts_sort(t["issued_at"]), "exp": ts_text(t["exp"]),
            "revoked_at": ts_text(t["revoked_at"]), "first_seen": ts_text(t["first_seen"]),
            "first_sort": ts_sort(t["first_seen"]), "uses": t["uses"], "holders": hs,
            "formats": text(t["formats"]), "worst": CLASSES[worst] if worst is not None else "",
        })
    return out, total


def holder_table(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[list[dict[str, str]]], int]:
    """The holders table. Identifiers may wrap anywhere; words, times and numbers do not. The
    workload column (names from a policy) is left out when no holder has one."""
    cols, rows = holder_rows(con)
    total = len(rows)
    keep = [i for i, c in enumerate(cols)
            if c != "workload" or any(r[i] for r in rows)]
    kinds = {"holder_id": "id", "src_ips": "id", "first_seen": "ts", "last_seen": "ts",
             "tokens": "num", "events": "num"}
    out = []
    for r in rows[:MAX_ROWS]:
        cells = []
        for i in keep:
            v = r[i]
            sort = ts_sort(v) if isinstance(v, datetime) else (
                f"{v:012d}" if isinstance(v, int) else text(v))
            cells.append({"text": text(v), "sort": sort, "cls": kinds.get(cols[i], "word")})
        out.append(cells)
    return [cols[i].replace("_", " ") for i in keep], out, total


def incident_views(incidents: Sequence[Any], findings: list[Finding]) -> list[dict[str, Any]]:
    """The first screen: one row per incident with its findings' titles and why they group."""
    by_id = {f.id: f for f in findings}
    out = []
    for inc in incidents:
        members = [by_id[i] for i in inc.findings if i in by_id]
        if not members:
            continue
        sev = one_of(inc.severity, SEVERITIES, "info")
        out.append({
            "id": inc.id, "anchor": anchor("inc-", inc.id), "severity": sev,
            "first_seen": ts_text(inc.first_seen), "last_seen": ts_text(inc.last_seen),
            "holders": list(inc.holders), "tokens": list(inc.tokens),
            "findings": [{"rule": f.rule, "title": f.title, "anchor": anchor("tl-", f.token.get("key")),
                          "cls": one_of(f.classification, CLASSES),
                          "classification": f.classification} for f in members],
            "reasons": list(inc.reasons),
            "related": [{"id": r["id"], "anchor": anchor("inc-", r["id"]), "reason": r["reason"]}
                        for r in inc.related],
        })
    return out
