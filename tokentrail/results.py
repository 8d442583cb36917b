"""The data each command prints, as plain Python: DESIGN.md's output contracts live here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb

from tokentrail.rules.findings import Finding
from tokentrail.rules.incidents import Incident

from . import __version__
from .output import jsonable

FINDING_CSV_COLUMNS = ("id", "severity", "rule", "title", "classification", "confidence",
                       "token_key", "token_id", "holder_id", "holder_tier", "intended_holder",
                       "first_seen", "last_seen", "count", "reasons", "evidence", "attack",
                       "incident")


# The scan document's `case` object; the Spark engine runs the same two queries.
CASE_COUNTS_SQL = """
    SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT token_key) FROM events),
           (SELECT count(DISTINCT holder_id) FROM events), (SELECT count(*) FROM rejects),
           (SELECT min(ts) FROM events), (SELECT max(ts) FROM events)"""
CASE_SOURCES_SQL = "SELECT path, format, events, rejects, sha256 FROM sources ORDER BY path"


def summary_of(counts: Sequence[Any], sources: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """The `case` object from the rows of CASE_COUNTS_SQL and CASE_SOURCES_SQL."""
    return {
        "events": counts[0], "tokens": counts[1], "holders": counts[2], "rejects": counts[3],
        "time_range": jsonable([counts[4], counts[5]]),
        "sources": [{"path": s[0], "format": s[1], "events": s[2], "rejects": s[3], "sha256": s[4]}
                    for s in sources],
    }


def case_summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    row = con.execute(CASE_COUNTS_SQL).fetchone()
    assert row is not None
    return summary_of(row, con.execute(CASE_SOURCES_SQL).fetchall())


def scan_payload(con: duckdb.DuckDBPyConnection, findings: list[Finding],
                 incidents: list[Incident] | None = None) -> dict[str, Any]:
    """DESIGN.md's scan document for a DuckDB case."""
    return scan_document(case_summary(con), findings, incidents)


def scan_document(case: dict[str, Any], findings: list[Finding],
                  incidents: list[Incident] | None = None) -> dict[str, Any]:
    """The scan document from its `case` object (either engine); `incidents` (additive)
    lists the incidents, and each finding names its own in `incident`."""
    payload: dict[str, Any] = {"tool": {"name": "tokentrail", "version": __version__}, "case": case}
    if incidents is not None:
        # an Incident holds only strings, lists of them and a flag: JSON as it is
        payload["incidents"] = [i.as_dict() for i in incidents]
    # plain values but for what output.json_bytes converts while it writes (no jsonable pass)
    payload["findings"] = [f.as_dict() for f in findings]
    return payload


def keep_findings(payload: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """The payload with only the findings in `keep` (baseline, time window); an incident
    keeps its remaining findings and goes when none remain."""
    if len(keep) == len(payload["findings"]) and all(f["id"] in keep for f in payload["findings"]):
        return payload  # nothing suppressed (the usual scan): no copy of every incident
    out = {**payload, "findings": [f for f in payload["findings"] if f["id"] in keep]}
    if "incidents" in payload:
        incidents = []
        for inc in payload["incidents"]:
            members = [i for i in inc["findings"] if i in keep]
            if members:
                incidents.append({**inc, "findings": members})
        ids = {i["id"] for i in incidents}
        for inc in incidents:
            inc["related"] = [r for r in inc.get("related", []) if r["id"] in ids]
        out["incidents"] = incidents
    return out


def finding_rows(findings: list[Finding]) -> list[tuple[Any, ...]]:
    rows = []
    for f in findings:
        rows.append((
            f.id, f.severity, f.rule, f.title, f.classification, f.confidence,
            f.token.get("key"), f.token.get("id"), f.holder.get("id"), f.holder.get("tier"),
            f.intended_holder.get("id"), f.first_seen, f.last_seen, f.count,
            "; ".join(f.reasons),
            " ".join(f"{e['file']}:{e['line']}" for e in f.evidence),
            " ".join(f.attack), f.incident,
        ))
    return rows


HOLDER_FIELDS = ("holder_id", "holder_tier", "classification", "confidence", "reasons",
                 "first_seen", "last_seen", "count")


def tokens_payload(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every token with all its holders and their classification (DESIGN.md contract)."""
    tokens = con.execute("""
        SELECT token_key, token_id, token_fp, issuer, subject, client_id, audience, scopes,
               act_chain, cnf_jkt, cnf_x5t, issue_kind, issued_at, issued_to_holder, exp,
               revoked_at, parent_token_key, first_seen, last_seen, uses, formats
        FROM tokens ORDER BY first_seen, token_key""").fetchall()
    cols = ("key", "id", "fp", "issuer", "subject", "client_id", "audience", "scopes",
            "act_chain", "cnf_jkt", "cnf_x5t", "issue_kind", "issued_at", "issued_to", "exp",
            "revoked_at", "parent", "first_seen", "last_seen", "uses", "formats")
    holders: dict[str, list[dict[str, Any]]] = {}
    for row in con.execute(f"SELECT token_key, {', '.join(HOLDER_FIELDS)} FROM token_holders "
                           "ORDER BY token_key, first_seen, holder_id").fetchall():
        h = dict(zip(("id", "tier", "classification", "confidence", "reasons", "first_seen",
                      "last_seen", "count"), row[1:], strict=True))
        holders.setdefault(row[0], []).append(jsonable(h))
    out = []
    for t in tokens:
        item = jsonable(dict(zip(cols, t, strict=True)))
        item["holders"] = holders.get(t[0], [])
        out.append(item)
    return out


def token_rows(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute("""
        SELECT th.token_key, t.client_id AS issued_to, th.holder_id, th.holder_tier,
               th.classification, th.confidence, th.count, th.first_seen, th.last_seen,
               th.reasons[1] AS reason
        FROM token_holders th JOIN tokens t USING (token_key)
        ORDER BY t.first_seen, th.token_key, th.first_seen""")
    return [d[0] for d in cur.description], cur.fetchall()


def holder_rows(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute("""
        SELECT holder_id, min(holder_tier) AS tier, min(workload) AS workload,
               count(DISTINCT token_key) AS tokens,
               list(DISTINCT classification ORDER BY classification) AS classifications,
               sum(count) AS events, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
               flatten(list(src_ips)).list_distinct() AS src_ips
        FROM token_holders GROUP BY holder_id ORDER BY min(first_seen), holder_id""")
    return [d[0] for d in cur.description], cur.fetchall()
