"""The case's events in time order, optionally around one token, holder, address, session or
incident, inside a time window. One SQL query; the CLI only formats the rows.

Time bounds are absolute (ISO 8601: `2026-11-02T09:30:00Z`, `2026-11-02 09:30`, a date) or
relative (`-2h`, `30m`, `1d`, `90s`, `1w`, sign optional): a relative bound counts back from the
case's latest event, not from the wall clock, because logs are read after the fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from tokentrail.errors import InputError, UsageError

_RELATIVE = re.compile(r"^\s*-?\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}

TIMELINE_COLUMNS = ("ts", "kind", "outcome", "status", "holder_id", "holder_tier", "token_key",
                    "src_ip", "user_agent", "resource", "method", "path", "error", "session_id",
                    "request_id", "format", "file", "line", "event_id")


def parse_duration(text: str) -> timedelta | None:
    """`2h` → 2 hours; None when the text is not a relative duration."""
    m = _RELATIVE.match(text)
    if not m:
        return None
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_time(text: str, anchor: datetime | None, *, option: str = "time") -> datetime:
    """An absolute ISO 8601 time (UTC when no offset is given) or a duration counted back
    from `anchor` (the case's latest event). Raises UsageError naming the option."""
    text = text.strip()
    delta = parse_duration(text)
    if delta is not None:
        if anchor is None:
            raise InputError(f"{option} {text!r} is relative to the latest event, and the case "
                             "has no timed events")
        return anchor - delta
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} takes an ISO 8601 time (2026-11-02T09:30:00Z) or a duration "
                         f"back from the latest event (-2h, 30m, 1d), not {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def latest_event(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute("SELECT max(ts) FROM events").fetchone()
    return row[0] if row else None


@dataclass
class Window:
    since: datetime | None = None
    until: datetime | None = None

    def overlaps(self, first: str | None, last: str | None) -> bool:
        """Does activity from `first` to `last` (ISO strings) touch the window?"""
        lo = _iso(first) or _iso(last)
        hi = _iso(last) or lo
        if lo is None or hi is None:
            return self.since is None and self.until is None
        if self.since is not None and hi < self.since:
            return False
        return not (self.until is not None and lo > self.until)

    @property
    def empty(self) -> bool:
        return self.since is None and self.until is None


def _iso(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def window_from(con: duckdb.DuckDBPyConnection, since: str | None, until: str | None) -> Window:
    """--since/--until as a Window (relative bounds count back from the latest event)."""
    if not since and not until:
        return Window()
    anchor = latest_event(con)
    return Window(since=parse_time(since, anchor, option="--since") if since else None,
                  until=parse_time(until, anchor, option="--until") if until else None)


def timeline(con: duckdb.DuckDBPyConnection, *, window: Window | None = None,
             token: str | None = None, holder: str | None = None, ip: str | None = None,
             session: str | None = None, incident: str | None = None,
             limit: int | None = None) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Events in time order with the given pivots (all must match). `token` matches a token's
    key, issuer id or fingerprint; `incident` needs the `finding_incidents` table a scan
    writes, and selects its tokens' events by its holders plus those tokens' issuance,
    refresh and revocation, plus every evidence event of its findings."""
    where: list[str] = []
    params: list[Any] = []
    if token:
        where.append("(e.token_key = ? OR e.token_id = ? OR e.token_fp = ? OR e.parent_token_key = ?)")
        params += [token] * 4
    if holder:
        where.append("e.holder_id = ?")
        params.append(holder)
    if ip:
        where.append("e.src_ip = ?")
        params.append(ip)
    if session:
        where.append("e.session_id = ?")
        params.append(session)
    if incident:
        have = con.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_name = 'finding_incidents'").fetchone()
        if not have or not have[0]:
            raise InputError("this case has no incidents yet: run `tokentrail scan --db CASE` "
                             "first")
        found = con.execute("SELECT count(*) FROM finding_incidents WHERE incident_id = ?",
                            [incident]).fetchone()
        if not found or not found[0]:
            raise InputError(f"no incident {incident} in this case (ids come from `tokentrail "
                             "scan`; a re-scan after more ingest can change them)")
        where.append("""(
            EXISTS (SELECT 1 FROM finding_incidents fi JOIN findings f ON f.id = fi.finding_id
                    WHERE fi.incident_id = ? AND f.token_key = e.token_key
                      AND (f.holder_id = e.holder_id
                           OR e.kind IN ('issue', 'exchange', 'refresh', 'revoke')))
            OR EXISTS (SELECT 1 FROM finding_incidents fi JOIN findings f ON f.id = fi.finding_id
                       WHERE fi.incident_id = ? AND list_contains(f.event_ids, e.event_id)))""")
        params += [incident, incident]
    if window and window.since is not None:
        where.append("e.ts >= ?")
        params.append(window.since)
    if window and window.until is not None:
        where.append("e.ts <= ?")
        params.append(window.until)
    sql = f"""
        SELECT e.ts, e.kind, e.outcome, e.status, e.holder_id, e.holder_tier, e.token_key,
               e.src_ip, e.user_agent, e.resource, e.method, e.path, e.error, e.session_id,
               e.request_id, e.format, s.path AS file, e.line, e.event_id
        FROM events e LEFT JOIN sources s USING (source_id)
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY e.ts NULLS LAST, s.path, e.line
        {f"LIMIT {int(limit)}" if limit else ""}"""
    return TIMELINE_COLUMNS, con.execute(sql, params).fetchall()
