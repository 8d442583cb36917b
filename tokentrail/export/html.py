"""One self-contained HTML report: coverage and its gaps, findings, per-token timelines, the
delegation graph, and sortable, filterable tables. Works offline.

Log content is attacker-controlled, so the page is built with that in mind:
- every value reaches the page through a jinja2 template with autoescaping on, never by string
  concatenation in Python; SVG charts are geometry computed here (numbers) and text placed by
  the template;
- control and bidi characters are shown as visible `<U+202E>` markers (a "Trojan Source" name
  cannot reorder what a responder reads);
- no log value becomes a link, an id, a class name or part of the script; the one inline
  script and the one stylesheet are static files beside the template, allowed by hash in a
  Content-Security-Policy that also forbids every network fetch.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import jinja2
from markupsafe import Markup

from tokentrail.rules.findings import Finding

from .. import __version__
from ..errors import TokentrailError
from ..output import iso
from ..results import case_summary, holder_rows

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"

SEVERITIES = ("critical", "high", "medium", "low", "info")
CLASSES = ("owner", "delegate", "transport", "forwarded", "stolen", "suspicious", "unknown")
KINDS = ("issue", "exchange", "refresh", "revoke", "use", "deny", "introspect", "login", "other")
TIERS = ("spiffe", "mtls", "dpop", "workload", "network")
ISSUANCE = ("issue", "exchange", "refresh")

MAX_ROWS = 5000  # per table; the CLI's `tokens` / `holders` / `query` give everything
MAX_TIMELINES = 40
MAX_TIMELINE_EVENTS = 1500
MAX_GRAPH_NODES = 120
MAX_EVIDENCE_SHOWN = 5
MAX_REJECTS = 200

CLASS_COLOURS = {
    "owner": "#2f7d32", "delegate": "#1f6fb2", "transport": "#6b7280", "forwarded": "#c26a00",
    "stolen": "#c62828", "suspicious": "#a05a9c", "unknown": "#8d8d8d",
}
LIFECYCLE_COLOURS = {"issue": "#2f7d32", "exchange": "#6a3fb5", "refresh": "#00838f",
                     "revoke": "#c62828", "expiry": "#c26a00", "child": "#6a3fb5"}

# C0/C1 controls (tab and newline kept), zero-width and bidi formatting characters, line and
# paragraph separators, BOM: shown as visible markers instead of acting on the page.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _finalize(value: Any) -> Any:
    """Applied by jinja to every `{{ … }}` before escaping."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return visible(value)
    return value


def ts_text(value: Any) -> str:
    """A timestamp for people: `2026-11-02 09:38:05.117Z`."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        s = iso(value)
        return s.replace("T", " ").replace(".000000Z", "Z").replace("000Z", "Z")
    return str(value)


def ts_sort(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else ("" if value is None else str(value))


def text(value: Any) -> str:
    """Any column value as display text (lists joined, times formatted)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return ts_text(value)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return str(value)


def shorten(value: str, limit: int = 40) -> str:
    """Middle ellipsis: both the scheme and the last path segment of an id stay readable."""
    if len(value) <= limit:
        return value
    head = (limit - 1) * 3 // 5
    return value[:head] + "…" + value[-(limit - 1 - head):]


def _anchor(prefix: str, key: str | None) -> str:
    """An element id for a log value: a hash, so the value itself never becomes an id."""
    return prefix + hashlib.sha256((key or "").encode()).hexdigest()[:12]


def _one_of(value: Any, allowed: Sequence[str], default: str = "unknown") -> str:
    return value if isinstance(value, str) and value in allowed else default


# ----------------------------------------------------------------------------- coverage

def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = con.execute(sql, list(params)).fetchone()
    return row[0] if row else None


def _declared_issuance(fmt: str) -> str:
    """What a built-in format's mapping says it can show about issuance."""
    from ..sources.registry import get_mapping

    try:
        return get_mapping(fmt).provides.get("issuance", "")
    except TokentrailError:
        return ""


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
    formats = _rows(con, f"""
        WITH f AS (SELECT DISTINCT format FROM sources WHERE format IS NOT NULL)
        SELECT f.format, count(e.format) AS events,
               count(*) FILTER (WHERE e.kind IN {ISSUANCE}) AS issuance,
               count(*) FILTER (WHERE e.kind IN ('use', 'deny')) AS presentations,
               count(*) FILTER (WHERE e.kind = 'revoke') AS revocations,
               count(*) FILTER (WHERE e.format IS NOT NULL AND e.token_key IS NULL) AS no_token,
               min(e.ts) AS first, max(e.ts) AS last
        FROM f LEFT JOIN events e ON e.format = f.format
        GROUP BY f.format ORDER BY f.format""")
    for f in formats:
        f["declared"] = _declared_issuance(f["format"])
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

    never = _rows(con, f"""
        WITH k AS (SELECT token_key, list(DISTINCT kind ORDER BY kind) AS kinds FROM events
                   WHERE token_key IS NOT NULL GROUP BY token_key)
        SELECT t.token_key, t.client_id, t.first_seen, t.last_seen, t.uses, t.holders, t.formats,
               k.kinds, count(*) OVER () AS total
        FROM tokens t LEFT JOIN k USING (token_key)
        WHERE t.issued_at IS NULL ORDER BY t.first_seen, t.token_key LIMIT {MAX_ROWS}""")
    n_tokens = _scalar(con, "SELECT count(*) FROM tokens") or 0
    gaps.append(Gap(
        key="never-issued", title="Tokens used but never seen issued",
        checked=f"{n_tokens} token(s) against the issue, exchange and refresh events in the case",
        why="Nothing in the case says whom these were issued to: add the issuer's logs",
        columns=["token", "issued to (claims)", "seen as", "presenters", "first seen", "last seen",
                 "formats"],
        rows=[[r["token_key"], text(r["client_id"]), text(r["kinds"]), str(r["holders"]),
               ts_text(r["first_seen"]), ts_text(r["last_seen"]), text(r["formats"])] for r in never],
        total=never[0]["total"] if never else 0, numeric=(3,)))

    network = _rows(con, f"""
        SELECT holder_id, count(DISTINCT token_key) AS tokens, sum(count) AS events,
               list(DISTINCT classification ORDER BY classification) AS classes,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen, count(*) OVER () AS total
        FROM token_holders WHERE holder_tier = 'network'
        GROUP BY holder_id ORDER BY min(first_seen), holder_id LIMIT {MAX_ROWS}""")
    n_holders = _scalar(con, "SELECT count(DISTINCT holder_id) FROM token_holders") or 0
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

    rejects = _rows(con, f"""
        SELECT s.path, r.line, r.reason, r.excerpt FROM rejects r LEFT JOIN sources s USING (source_id)
        ORDER BY s.path, r.line LIMIT {MAX_REJECTS}""")
    sources = _rows(con, """
        SELECT path, format, events, rejects, bytes, sha256, ingested_at FROM sources ORDER BY path""")
    return {
        "summary": summary,
        "time_range": [ts_text(_scalar(con, "SELECT min(ts) FROM events")),
                       ts_text(_scalar(con, "SELECT max(ts) FROM events"))],
        "sources": sources, "formats": formats, "kinds": kind_counts, "tiers": tier_counts,
        "gaps": gaps, "rejects": rejects, "rejects_total": summary["rejects"],
    }


# ----------------------------------------------------------------------------- findings

def finding_view(f: Finding) -> dict[str, Any]:
    sev = _one_of(f.severity, SEVERITIES, "info")
    evidence = [{"where": f"{e.get('file')}:{e.get('line')}", "ts": text(e.get("ts"))}
                for e in f.evidence]
    return {
        "id": f.id, "rule": f.rule, "title": f.title, "severity": sev,
        "sev_rank": SEVERITIES.index(sev), "classification": f.classification,
        "cls": _one_of(f.classification, CLASSES),
        "confidence": "" if f.confidence is None else f"{f.confidence:.2f}",
        "reasons": list(f.reasons), "token": f.token.get("key") or "",
        "token_anchor": _anchor("tl-", f.token.get("key")),
        "token_client": f.token.get("client_id"), "token_issuer": f.token.get("issuer"),
        "holder": f.holder.get("id"), "holder_tier": f.holder.get("tier"),
        "intended": f.intended_holder.get("id"), "intended_tier": f.intended_holder.get("tier"),
        "first_seen": ts_text(f.first_seen), "last_seen": ts_text(f.last_seen),
        "first_sort": f.first_seen or "", "count": f.count,
        "evidence": evidence[:MAX_EVIDENCE_SHOWN], "evidence_more": evidence[MAX_EVIDENCE_SHOWN:],
        "attack": list(f.attack), "owasp": list(f.owasp),
    }


def _sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITIES.index(_one_of(f.severity, SEVERITIES, "info")),
                                           f.rule, f.token.get("key") or "", f.holder.get("id") or ""))


# ----------------------------------------------------------------------------- timelines

@dataclass
class Chart:
    """Geometry for the template: every number is computed here, every label placed there."""
    width: int
    height: int
    items: list[dict[str, Any]] = field(default_factory=list)


TL_WIDTH, TL_X0, TL_X1 = 1200, 330, 1170
TL_LANE = 34


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _clock(t: datetime, span: timedelta) -> str:
    t = t.astimezone(UTC)
    if span >= timedelta(days=1):
        return t.strftime("%m-%d %H:%M")
    if span < timedelta(seconds=20):
        return t.strftime("%H:%M:%S.%f")[:-3]
    return t.strftime("%H:%M:%S")


def timeline(con: duckdb.DuckDBPyConnection, token_key: str,
             flagged: dict[str, list[str]]) -> dict[str, Any] | None:
    """One flagged token: a lane per holder over time, a mark per event, lines for issuance,
    exchanges into new tokens, revocation and expiry."""
    tok = _rows(con, """SELECT token_key, client_id, issuer, subject, issue_kind, issued_at, exp,
                               revoked_at, first_seen, last_seen FROM tokens WHERE token_key = ?""",
                [token_key])
    if not tok:
        return None
    t = tok[0]
    events = _rows(con, f"""
        SELECT e.ts, e.kind, e.holder_id, e.holder_tier, e.outcome, e.status, e.method, e.path,
               e.resource, e.error, s.path AS file, e.line
        FROM events e LEFT JOIN sources s USING (source_id)
        WHERE e.token_key = ? AND e.ts IS NOT NULL
        ORDER BY e.ts, e.event_id LIMIT {MAX_TIMELINE_EVENTS + 1}""",
                   [token_key])
    if not events:
        return None
    truncated = len(events) > MAX_TIMELINE_EVENTS
    events = events[:MAX_TIMELINE_EVENTS]
    children = _rows(con, "SELECT child_key, kind, ts FROM links WHERE parent_key = ? AND ts IS NOT NULL "
                          "ORDER BY ts", [token_key])
    classes = {r["holder_id"]: r for r in _rows(
        con, "SELECT holder_id, classification, confidence FROM token_holders WHERE token_key = ?",
        [token_key])}

    # the time domain: every event, plus expiry unless it lies far beyond the last event
    times = [e["ts"] for e in events] + [c["ts"] for c in children]
    times += [v for v in (t["revoked_at"], t["issued_at"]) if v is not None]
    t0: datetime = min(times)
    t1: datetime = max(times)
    exp_note = None
    if t["exp"] is not None:
        if t["exp"] <= t1 + (t1 - t0) / 5:
            t0, t1 = min(t0, t["exp"]), max(t1, t["exp"])
        else:
            exp_note = f"expires {ts_text(t['exp'])}, after the last event →"
    if t1 == t0:
        t0, t1 = t0 - timedelta(seconds=30), t1 + timedelta(seconds=30)
    span = t1 - t0

    def x(ts: datetime) -> float:
        return TL_X0 + float((ts - t0) / span) * (TL_X1 - TL_X0)

    markers: list[tuple[datetime, str, str, str]] = []
    if t["issued_at"] is not None:
        label = {"exchange": "minted by exchange", "refresh": "minted by refresh"}.get(
            t["issue_kind"] or "", "issued")
        markers.append((t["issued_at"], _one_of(t["issue_kind"], ISSUANCE, "issue"), label, "solid"))
    for c in children:
        markers.append((c["ts"], "child", f"{c['kind']} → {shorten(c['child_key'] or '', 14)}", "dot"))
    if t["revoked_at"] is not None:
        markers.append((t["revoked_at"], "revoke", "revoked", "solid"))
    if t["exp"] is not None and exp_note is None:
        markers.append((t["exp"], "expiry", "expiry", "dash"))
    top = 52 if markers else 14

    lanes: dict[str, int] = {}
    lane_kinds: dict[str, set[str]] = {}
    for e in events:
        lanes.setdefault(e["holder_id"] or "", len(lanes))
        lane_kinds.setdefault(e["holder_id"] or "", set()).add(e["kind"] or "other")
    received = {e["holder_id"] or "" for e in events
                if e["kind"] in ISSUANCE and e["outcome"] != "failure"}
    bottom = top + TL_LANE * len(lanes)
    chart = Chart(width=TL_WIDTH, height=bottom + 24)

    for holder, i in lanes.items():
        y = top + TL_LANE * i
        info = classes.get(holder)
        cls = _one_of(info["classification"], CLASSES) if info else None
        rules = flagged.get(holder, [])
        if info:
            note = info["classification"] + (f" {info['confidence']:.2f}" if info["confidence"] is not None
                                             else "")
        elif holder in received:
            note = "received it at issuance"
        elif lane_kinds[holder] & set(ISSUANCE):
            note = "asked for it at the token endpoint: refused"
        else:
            note = ", ".join(sorted(lane_kinds[holder]))
        chart.items.append({
            "type": "lane", "y": str(y), "h": str(TL_LANE), "ly": _fmt(y + 14), "ny": _fmt(y + 28),
            "label": shorten(holder, 42) if holder else "(no holder recorded)",
            "full": holder or "(no holder recorded)", "odd": i % 2 == 1,
            "note": " · ".join(v for v in (" ".join(rules), note) if v), "flag": bool(rules),
            "colour": CLASS_COLOURS.get(cls or "", "#9aa3ad"),
        })

    for i in range(5):  # time axis
        ts = t0 + span * (i / 4)
        chart.items.append({"type": "tick", "x": _fmt(x(ts)), "y1": str(top - 4), "y2": str(bottom),
                            "ty": str(bottom + 16), "label": _clock(ts, span),
                            "anchor": ("start", "middle", "middle", "middle", "end")[i]})

    for n, (ts, kind, label, style) in enumerate(sorted(markers, key=lambda m: m[0])):
        mx = x(ts)
        chart.items.append({
            "type": "marker", "x": _fmt(mx), "y1": str(top - 10 - (n % 2) * 16), "y2": str(bottom),
            "ty": str(top - 14 - (n % 2) * 16), "label": label, "colour": LIFECYCLE_COLOURS[kind],
            "dash": {"solid": "", "dash": "6 3", "dot": "2 3"}[style],
            "anchor": "end" if mx > TL_X1 - 80 else "start", "title": f"{label} {ts_text(ts)}",
        })

    for e in events:
        cy = top + TL_LANE * lanes[e["holder_id"] or ""] + TL_LANE / 2
        kind = _one_of(e["kind"], KINDS, "other")
        info = classes.get(e["holder_id"] or "")
        colour = (CLASS_COLOURS.get(info["classification"], "#555") if info and kind in ("use", "deny")
                  else LIFECYCLE_COLOURS.get(kind, "#555"))
        request = " ".join(v for v in (e["method"], e["path"]) if v)
        detail = [kind, ts_text(e["ts"]), e["holder_id"] or "(no holder)", e["resource"] or "", request,
                  f"status {e['status']}" if e["status"] is not None else (e["outcome"] or ""),
                  e["error"] or "", f"{e['file']}:{e['line']}"]
        shape = _shape(kind)
        chart.items.append({"type": "mark", "shape": shape, "x": _fmt(x(e["ts"])), "y": _fmt(cy),
                            "points": _points(shape, x(e["ts"]), cy), "colour": colour,
                            "title": " · ".join(d for d in detail if d)})

    return {"key": token_key, "anchor": _anchor("tl-", token_key), "client_id": t["client_id"],
            "issuer": t["issuer"], "issue_kind": t["issue_kind"] or "issuance not seen",
            "issued_at": ts_text(t["issued_at"]), "exp": ts_text(t["exp"]),
            "revoked_at": ts_text(t["revoked_at"]), "chart": chart, "exp_note": exp_note,
            "truncated": truncated, "events": len(events), "lanes": len(lanes),
            "rules": sorted({r for rs in flagged.values() for r in rs})}


def _shape(kind: str) -> str:
    return {"use": "circle", "deny": "cross", "issue": "triangle", "exchange": "diamond",
            "refresh": "diamond", "revoke": "square"}.get(kind, "dot")


def _points(shape: str, x: float, y: float) -> str:
    if shape == "triangle":
        pts = [(x, y - 7), (x + 6, y + 5), (x - 6, y + 5)]
    elif shape == "diamond":
        pts = [(x, y - 7), (x + 6, y), (x, y + 7), (x - 6, y)]
    elif shape == "square":
        pts = [(x - 5, y - 5), (x + 5, y - 5), (x + 5, y + 5), (x - 5, y + 5)]
    elif shape == "cross":
        pts = [(x - 5, y - 5), (x + 5, y + 5), (x, y), (x + 5, y - 5), (x - 5, y + 5), (x, y)]
    else:
        return ""
    return " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in pts)


# ----------------------------------------------------------------------------- delegation graph

NODE_W, NODE_H, COL_GAP, ROW_GAP, G_PAD = 250, 34, 100, 22, 24


def _ident(actor: str | None, client: str | None, holder: str | None) -> str | None:
    if actor:
        return actor
    if client:
        return client if client.startswith(("client:", "arn:", "spiffe://")) else "client:" + client
    return holder


def delegation_graph(con: duckdb.DuckDBPyConnection, findings: list[Finding]) -> dict[str, Any]:
    """Who handed authority to whom: act chains (earlier actor → current actor, subject → first
    actor), logged exchanges and role chains (holder of the subject token → holder of the new
    one), and the flagged presentations (intended holder → presenter)."""
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    kinds: dict[str, str] = {}

    def add(src: str | None, dst: str | None, label: str, kind: str, src_kind: str, dst_kind: str) -> None:
        if not src or not dst:
            return
        kinds.setdefault(src, src_kind)
        kinds.setdefault(dst, dst_kind)
        e = edges.setdefault((src, dst), {"labels": [], "kind": kind, "count": 0})
        if label not in e["labels"]:
            e["labels"].append(label)
        e["count"] += 1
        if kind == "flagged":
            e["kind"] = kind

    for r in _rows(con, """SELECT act_chain, subject, count(*) AS n FROM tokens
                           WHERE len(coalesce(act_chain, [])) > 0 GROUP BY ALL ORDER BY ALL"""):
        chain = [a for a in r["act_chain"] if a]
        for i in range(len(chain) - 1):
            add(chain[i + 1], chain[i], "act", "act", "actor", "actor")
        if chain and r["subject"]:
            add("sub:" + r["subject"], chain[-1], "on behalf of", "act", "subject", "actor")

    for r in _rows(con, """
            SELECT l.kind, l.basis, l.requested_by, l.received_by, p.current_actor AS p_actor,
                   p.client_id AS p_client, p.issued_to_holder AS p_holder,
                   c.current_actor AS c_actor, c.client_id AS c_client
            FROM links l LEFT JOIN tokens p ON p.token_key = l.parent_key
            LEFT JOIN tokens c ON c.token_key = l.child_key
            WHERE l.kind IN ('exchange', 'role-chain') ORDER BY l.ts"""):
        src = _ident(r["p_actor"], r["p_client"], r["p_holder"])
        if r["kind"] == "role-chain":
            dst = _ident(None, r["c_client"] or r["requested_by"], r["received_by"])
        else:
            dst = _ident(r["c_actor"], None, r["received_by"]) or _ident(None, r["requested_by"], None)
        # an inferred parent (lineage.py: subject token not logged) is drawn, and says so
        label = r["kind"] + (" (inferred)" if r.get("basis") == "inferred" else "")
        add(src, dst, label, "link", "client", "holder")

    flagged_nodes: set[str] = set()
    for f in findings:
        src, dst = f.intended_holder.get("id"), f.holder.get("id")
        if src and dst and src != dst:
            add(src, dst, f.rule, "flagged", "holder", "holder")
            flagged_nodes.add(dst)

    nodes = list(kinds)
    truncated = len(nodes) > MAX_GRAPH_NODES
    if truncated:
        keep = set(nodes[:MAX_GRAPH_NODES])
        nodes = nodes[:MAX_GRAPH_NODES]
        edges = {k: v for k, v in edges.items() if k[0] in keep and k[1] in keep}
    pos, routes, width, height = _layout(nodes, list(edges))

    items: list[dict[str, Any]] = []
    for (s, d), e in edges.items():
        colour = {"act": "#1f6fb2", "link": "#6a3fb5", "flagged": "#c62828"}[e["kind"]]
        label = ", ".join(e["labels"])
        path, (lx, ly) = _edge_path(pos, routes.get((s, d)), s, d)
        items.append({"type": "edge", "d": path, "colour": colour, "kind": e["kind"],
                      "dash": "5 3" if e["kind"] == "flagged" else "",
                      "label": shorten(label, 28), "lx": _fmt(lx), "ly": _fmt(ly),
                      "title": f"{s} → {d}: {label}"})
    for n in nodes:
        x, y = pos[n]
        kind = kinds[n]
        items.append({"type": "node", "x": _fmt(x), "y": _fmt(y), "w": str(NODE_W), "h": str(NODE_H),
                      "tx": _fmt(x + 10), "ty": _fmt(y + NODE_H / 2 + 4), "label": shorten(n, 34),
                      "title": n, "kind": kind, "flagged": n in flagged_nodes,
                      "fill": {"subject": "#f3f0e8", "actor": "#e8f0fa", "client": "#efe9f8"}.get(
                          kind, "#f4f4f4")})
    return {"chart": Chart(width=max(width, 400), height=height, items=items),
            "nodes": len(nodes), "edges": len(edges), "truncated": truncated}


def _layout(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[
        dict[str, tuple[float, float]], dict[tuple[str, str], list[str]], int, int]:
    """A layered (Sugiyama-style) layout: columns by longest path, a waypoint in every column
    an edge passes through (so it runs between boxes, not across them), and rows ordered by
    the mean row of their neighbours to cut crossings. Returns box corners (waypoints too),
    each long edge's waypoints, and the canvas size."""
    layer = _layers(nodes, edges)
    vlayer = dict(layer)
    routes: dict[tuple[str, str], list[str]] = {}
    vedges: list[tuple[str, str]] = []
    for i, (s, d) in enumerate(edges):
        if s == d:
            continue
        chain = [s]
        if layer[d] - layer[s] > 1:
            for k in range(layer[s] + 1, layer[d]):
                w = f"\x00{i}:{k}"  # a waypoint; never a real identity (ids have no NUL)
                vlayer[w] = k
                chain.append(w)
            routes[(s, d)] = chain[1:]
        chain.append(d)
        vedges.extend(zip(chain, chain[1:], strict=False))
    columns: dict[int, list[str]] = {}
    for n in vlayer:
        columns.setdefault(vlayer[n], []).append(n)
    order = {n: float(i) for col in columns.values() for i, n in enumerate(col)}
    preds: dict[str, list[str]] = {n: [] for n in vlayer}
    succs: dict[str, list[str]] = {n: [] for n in vlayer}
    for s, d in vedges:
        preds[d].append(s)
        succs[s].append(d)
    for sweep in range(6):
        neighbours = preds if sweep % 2 == 0 else succs
        for col in sorted(columns, reverse=sweep % 2 == 1):
            def bary(n: str, nb: dict[str, list[str]] = neighbours) -> float:
                ys = [order[m] for m in nb[n]]
                return sum(ys) / len(ys) if ys else order[n]
            columns[col].sort(key=bary)
            for i, n in enumerate(columns[col]):
                order[n] = float(i)
    pos = {n: (float(G_PAD + col * (NODE_W + COL_GAP)), float(G_PAD + 16 + i * (NODE_H + ROW_GAP)))
           for col, members in columns.items() for i, n in enumerate(members)}
    ncols = max(columns) + 1 if columns else 1
    nrows = max((len(c) for c in columns.values()), default=1)
    return (pos, routes, max(400, G_PAD * 2 + ncols * (NODE_W + COL_GAP) - COL_GAP),
            G_PAD * 2 + 16 + nrows * (NODE_H + ROW_GAP))


def _edge_path(pos: dict[str, tuple[float, float]], waypoints: list[str] | None, s: str,
               d: str) -> tuple[str, tuple[float, float]]:
    """SVG path data for one edge, and where its label goes."""
    (sx, sy), (dx, dy) = pos[s], pos[d]
    mid = NODE_H / 2
    if s == d:  # an exchange that kept the same holder: a loop over the box
        x1, x2, y = sx + NODE_W * 0.35, sx + NODE_W * 0.65, sy
        return (f"M{_fmt(x1)},{_fmt(y)} C{_fmt(x1)},{_fmt(y - 30)} {_fmt(x2)},{_fmt(y - 30)} "
                f"{_fmt(x2)},{_fmt(y)}", (sx + NODE_W / 2, sy - 24))
    if dx <= sx:  # against the flow (a cycle): leave left, come back in from the right
        x1, y1, x2, y2 = sx, sy + mid, dx + NODE_W, dy + mid
        bend = 60.0 if dx == sx else max(60.0, (x1 - x2) / 2)
        if dx == sx:
            x1, x2 = sx + NODE_W, dx + NODE_W
            return (f"M{_fmt(x1)},{_fmt(y1)} C{_fmt(x1 + bend)},{_fmt(y1)} {_fmt(x2 + bend)},{_fmt(y2)} "
                    f"{_fmt(x2)},{_fmt(y2)}", (x1 + 48, (y1 + y2) / 2))
        return (f"M{_fmt(x1)},{_fmt(y1)} C{_fmt(x1 - bend)},{_fmt(y1)} {_fmt(x2 + bend)},{_fmt(y2)} "
                f"{_fmt(x2)},{_fmt(y2)}", ((x1 + x2) / 2, (y1 + y2) / 2 - 4))
    points = [(sx + NODE_W, sy + mid)]
    for w in waypoints or []:
        wx, wy = pos[w]
        points += [(wx, wy + mid), (wx + NODE_W, wy + mid)]
    points.append((dx, dy + mid))
    parts = [f"M{_fmt(points[0][0])},{_fmt(points[0][1])}"]
    for i in range(1, len(points)):
        (x1, y1), (x2, y2) = points[i - 1], points[i]
        if i % 2 == 1:  # between columns: a curve
            b = (x2 - x1) / 2
            parts.append(f"C{_fmt(x1 + b)},{_fmt(y1)} {_fmt(x2 - b)},{_fmt(y2)} {_fmt(x2)},{_fmt(y2)}")
        else:  # through a column, in the row kept free for it
            parts.append(f"L{_fmt(x2)},{_fmt(y2)}")
    if waypoints:
        (x1, y1), (x2, _) = points[1], points[2]
        label = ((x1 + x2) / 2, y1 - 4)
    else:
        (x1, y1), (x2, y2) = points[0], points[1]
        label = ((x1 + x2) / 2, (y1 + y2) / 2 - 4)
    return " ".join(parts), label


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering after dropping the edges that close a cycle (DFS back edges)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        if s != d:
            succ[s].append(d)
    state: dict[str, int] = {}
    order: list[str] = []
    dag: dict[str, list[str]] = {n: [] for n in nodes}
    for root in nodes:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            n, it = stack[-1]
            for m in it:
                if state.get(m) == 1:
                    continue  # back edge: a cycle, ignored for layering
                dag[n].append(m)
                if m not in state:
                    state[m] = 1
                    stack.append((m, iter(succ[m])))
                    break
            else:
                state[n] = 2
                order.append(n)
                stack.pop()
    layer = dict.fromkeys(nodes, 0)
    for n in reversed(order):  # topological order
        for m in dag[n]:
            layer[m] = max(layer[m], layer[n] + 1)
    return layer


# ----------------------------------------------------------------------------- tables

def token_table(con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], int]:
    total = _scalar(con, "SELECT count(*) FROM tokens") or 0
    tokens = _rows(con, f"""
        SELECT token_key, client_id, issuer, subject, audience, issue_kind, issued_at, exp, revoked_at,
               first_seen, last_seen, uses, holders, formats
        FROM tokens ORDER BY first_seen, token_key LIMIT {MAX_ROWS}""")
    holders: dict[str, list[dict[str, Any]]] = {}
    for h in _rows(con, f"""
            SELECT token_key, holder_id, holder_tier, classification, confidence, count, reasons
            FROM token_holders
            WHERE token_key IN (SELECT token_key FROM tokens ORDER BY first_seen, token_key LIMIT {MAX_ROWS})
            ORDER BY token_key, first_seen, holder_id"""):
        holders.setdefault(h["token_key"], []).append({
            "id": h["holder_id"], "tier": h["holder_tier"], "classification": h["classification"],
            "cls": _one_of(h["classification"], CLASSES),
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


# ----------------------------------------------------------------------------- rendering

@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml", "j2"),
                                            default_for_string=True, default=True),
        finalize=_finalize, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["tstext"] = ts_text
    return env


@cache
def _asset(name: str) -> tuple[Markup, str]:
    """A static stylesheet or script to inline, and its CSP hash. Our own file, not log data."""
    body = (TEMPLATES / name).read_text(encoding="utf-8")
    assert "</" not in body, f"{name} must not contain '</'"
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return Markup(body), f"'sha256-{digest}'"


def incident_views(incidents: Sequence[Any], findings: list[Finding]) -> list[dict[str, Any]]:
    """The first screen: one row per incident with its findings' titles and why they group."""
    by_id = {f.id: f for f in findings}
    out = []
    for inc in incidents:
        members = [by_id[i] for i in inc.findings if i in by_id]
        if not members:
            continue
        sev = _one_of(inc.severity, SEVERITIES, "info")
        out.append({
            "id": inc.id, "anchor": _anchor("inc-", inc.id), "severity": sev,
            "first_seen": ts_text(inc.first_seen), "last_seen": ts_text(inc.last_seen),
            "holders": list(inc.holders), "tokens": list(inc.tokens),
            "findings": [{"rule": f.rule, "title": f.title, "anchor": _anchor("tl-", f.token.get("key")),
                          "cls": _one_of(f.classification, CLASSES),
                          "classification": f.classification} for f in members],
            "reasons": list(inc.reasons),
            "related": [{"id": r["id"], "anchor": _anchor("inc-", r["id"]), "reason": r["reason"]}
                        for r in inc.related],
        })
    return out


def render_html_report(con: duckdb.DuckDBPyConnection, *, findings: list[Finding],
                       generated: datetime | None = None,
                       incidents: Sequence[Any] | None = None) -> str:
    """The report as one HTML string (see `write_html_report`); it opens with the incidents
    (tokentrail.rules.incidents) when they are given."""
    ordered = _sorted_findings(findings)
    flagged: dict[str, dict[str, list[str]]] = {}
    for f in ordered:
        key = f.token.get("key")
        if key:
            rules = flagged.setdefault(key, {}).setdefault(f.holder.get("id") or "", [])
            if f.rule not in rules:
                rules.append(f.rule)
    timelines = []
    for key in list(flagged)[:MAX_TIMELINES]:
        tl = timeline(con, key, flagged[key])
        if tl is not None:
            timelines.append(tl)
    tokens, tokens_total = token_table(con)
    holder_cols, holders, holders_total = holder_table(con)
    css, css_hash = _asset("report.css")
    js, js_hash = _asset("report.js")
    views = [finding_view(f) for f in ordered]
    by_sev = [(s, sum(1 for v in views if v["severity"] == s)) for s in SEVERITIES]
    return _environment().get_template(TEMPLATE).render(
        version=__version__,
        generated=ts_text(generated or datetime.now(UTC)),
        css=css, js=js, csp=f"default-src 'none'; style-src {css_hash}; script-src {js_hash}; "
                            "img-src data:; base-uri 'none'; form-action 'none'",
        cov=coverage(con), findings=views, by_sev=by_sev,
        incidents=incident_views(incidents or [], ordered),
        timelines=timelines, timelines_total=len(flagged), max_timelines=MAX_TIMELINES,
        graph=delegation_graph(con, ordered), class_colours=CLASS_COLOURS,
        lifecycle_colours=LIFECYCLE_COLOURS,
        tokens=tokens, tokens_total=tokens_total,
        holder_cols=holder_cols, holders=holders, holders_total=holders_total, max_rows=MAX_ROWS,
    )


def write_html_report(con: duckdb.DuckDBPyConnection, path: str, *, findings: list[Finding],
                      incidents: Sequence[Any] | None = None) -> None:
    """Write the report to `path` atomically: a temporary file beside it, then a rename, so a
    reader never sees half a report and a failed run leaves the old one in place."""
    html = render_html_report(con, findings=findings, incidents=incidents)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)  # like --csv DIR
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["render_html_report", "write_html_report"]
