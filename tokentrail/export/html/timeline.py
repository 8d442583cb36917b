"""A flagged token's timeline: a lane per holder over time, a mark per event, lines for
issuance, exchanges, revocation and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from .data import fetch_rows
from .svg import Chart, fmt
from .text import CLASS_COLOURS, CLASSES, ISSUANCE, KINDS, LIFECYCLE_COLOURS, anchor, one_of, shorten, ts_text

MAX_TIMELINE_EVENTS = 1500

TL_WIDTH, TL_X0, TL_X1 = 1200, 330, 1170
TL_LANE = 34


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
    tok = fetch_rows(con, """SELECT token_key, client_id, issuer, subject, issue_kind, issued_at, exp,
                               revoked_at, first_seen, last_seen FROM tokens WHERE token_key = ?""",
                [token_key])
    if not tok:
        return None
    t = tok[0]
    events = fetch_rows(con, f"""
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
    children = fetch_rows(con, "SELECT child_key, kind, ts FROM links "
                          "WHERE parent_key = ? AND ts IS NOT NULL ORDER BY ts", [token_key])
    classes = {r["holder_id"]: r for r in fetch_rows(
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
        markers.append((t["issued_at"], one_of(t["issue_kind"], ISSUANCE, "issue"), label, "solid"))
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
        cls = one_of(info["classification"], CLASSES) if info else None
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
            "type": "lane", "y": str(y), "h": str(TL_LANE), "ly": fmt(y + 14), "ny": fmt(y + 28),
            "label": shorten(holder, 42) if holder else "(no holder recorded)",
            "full": holder or "(no holder recorded)", "odd": i % 2 == 1,
            "note": " · ".join(v for v in (" ".join(rules), note) if v), "flag": bool(rules),
            "colour": CLASS_COLOURS.get(cls or "", "#9aa3ad"),
        })

    for i in range(5):  # time axis
        ts = t0 + span * (i / 4)
        chart.items.append({"type": "tick", "x": fmt(x(ts)), "y1": str(top - 4), "y2": str(bottom),
                            "ty": str(bottom + 16), "label": _clock(ts, span),
                            "anchor": ("start", "middle", "middle", "middle", "end")[i]})

    for n, (ts, kind, label, style) in enumerate(sorted(markers, key=lambda m: m[0])):
        mx = x(ts)
        chart.items.append({
            "type": "marker", "x": fmt(mx), "y1": str(top - 10 - (n % 2) * 16), "y2": str(bottom),
            "ty": str(top - 14 - (n % 2) * 16), "label": label, "colour": LIFECYCLE_COLOURS[kind],
            "dash": {"solid": "", "dash": "6 3", "dot": "2 3"}[style],
            "anchor": "end" if mx > TL_X1 - 80 else "start", "title": f"{label} {ts_text(ts)}",
        })

    for e in events:
        cy = top + TL_LANE * lanes[e["holder_id"] or ""] + TL_LANE / 2
        kind = one_of(e["kind"], KINDS, "other")
        info = classes.get(e["holder_id"] or "")
        colour = (CLASS_COLOURS.get(info["classification"], "#555") if info and kind in ("use", "deny")
                  else LIFECYCLE_COLOURS.get(kind, "#555"))
        request = " ".join(v for v in (e["method"], e["path"]) if v)
        detail = [kind, ts_text(e["ts"]), e["holder_id"] or "(no holder)", e["resource"] or "", request,
                  f"status {e['status']}" if e["status"] is not None else (e["outcome"] or ""),
                  e["error"] or "", f"{e['file']}:{e['line']}"]
        shape = _shape(kind)
        chart.items.append({"type": "mark", "shape": shape, "x": fmt(x(e["ts"])), "y": fmt(cy),
                            "points": _points(shape, x(e["ts"]), cy), "colour": colour,
                            "title": " · ".join(d for d in detail if d)})

    return {"key": token_key, "anchor": anchor("tl-", token_key), "client_id": t["client_id"],
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
    return " ".join(f"{fmt(a)},{fmt(b)}" for a, b in pts)
