"""Incidents: findings grouped into what happened, computed in SQL over the `findings` table.

One misuse often fires several rules (a stolen instance key is both an unknown holder and
instance credentials off the instance), and one fault can show on several tokens (an exchange
policy that mints bad tokens for one client). A responder contains incidents, not findings.

Two findings belong to one incident when one of these links them (each is evidence in the
case, and each incident's `reasons` names the links that built it):

1. the same token presented by the same holder (several rules on one misuse);
2. the same holder, and one token was minted from the other (refresh, exchange, role chain:
   `links`), close in time;
3. the same holder in the same IdP session (`session_id` of the evidence), close in time;
4. the same holder, not the token's owner or delegate (an outsider), presenting several
   tokens close in time (one actor with several stolen credentials);
5. the same rightful holder (owner or delegate) of tokens minted by exchanges that the same
   client requested at the same issuer, close in time: the fault is that issuer's exchange
   policy, not the holder.

"Close in time" means the findings' activity intervals are at most `window` apart (default
one hour). Links are transitive (connected components). Incidents that share a network address
or a token without being linked above are listed as `related`, not merged: an intruder using
three different stolen credentials from one address is three credentials to revoke, each with
its own cause, and the shared address is said on each of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import duckdb
import pandas as pd

from tokentrail.output import iso
from tokentrail.rules.findings import Finding

DEFAULT_WINDOW = timedelta(hours=1)
RELATED_LIMIT = 20
"""At most this many related incidents are listed on each (a shared NAT address can relate
thousands); JSON output says `related_truncated` when a list was cut."""
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")

# Finding facts the links need: the pair's class, the token's parent and how it was minted,
# and the addresses and sessions of the evidence events (event ids are source_id:line).
_FACTS_SQL = """
CREATE OR REPLACE TEMP TABLE _tt_inc_f AS
WITH ev AS (
    SELECT f.id, regexp_extract(u.eid, '^(.*):([0-9]+)$', 1) AS source_id,
           TRY_CAST(regexp_extract(u.eid, '^(.*):([0-9]+)$', 2) AS BIGINT) AS line
    FROM findings f, unnest(f.event_ids) AS u(eid)
), evf AS (
    SELECT ev.id,
           list(DISTINCT e.src_ip) FILTER (WHERE e.src_ip IS NOT NULL) AS addresses,
           list(DISTINCT e.session_id) FILTER (WHERE e.session_id IS NOT NULL) AS sessions
    FROM ev JOIN events e ON e.source_id = ev.source_id AND e.line = ev.line
    GROUP BY ev.id
), lk AS (
    SELECT child_key, min(parent_key) AS parent_key, min(kind) AS link_kind,
           min(requested_by) AS requested_by
    -- inferred parents (lineage.py) are shown by trace, not used as evidence that ties findings
    FROM links WHERE coalesce(basis, 'logged') <> 'inferred' GROUP BY child_key
)
SELECT f.id, f.rule, f.severity, f.token_key, f.holder_id, f.first_seen, f.last_seen,
       th.classification AS pair_class, lk.parent_key, lk.link_kind, lk.requested_by,
       t.issuer, coalesce(evf.addresses, []) AS addresses, coalesce(evf.sessions, []) AS sessions
FROM findings f
LEFT JOIN token_holders th ON th.token_key = f.token_key AND th.holder_id = f.holder_id
LEFT JOIN tokens t ON t.token_key = f.token_key
LEFT JOIN lk ON lk.child_key = f.token_key
LEFT JOIN evf ON evf.id = f.id
"""

_EDGES_SQL = """
CREATE OR REPLACE TEMP TABLE _tt_inc_edges AS
WITH p AS (
    SELECT x.id AS a, y.id AS b, x.token_key AS ta, y.token_key AS tb, x.holder_id AS h,
           x.first_seen <= y.last_seen + ?::INTERVAL
             AND y.first_seen <= x.last_seen + ?::INTERVAL AS close,
           x.parent_key AS pa, y.parent_key AS pb, x.link_kind AS ka, y.link_kind AS kb,
           x.requested_by AS ra, y.requested_by AS rb, x.issuer AS ia, y.issuer AS ib,
           x.pair_class AS ca, y.pair_class AS cb,
           list_intersect(x.sessions, y.sessions) AS sessions
    FROM _tt_inc_f x JOIN _tt_inc_f y ON x.id < y.id AND x.holder_id = y.holder_id
)
SELECT a, b, 'same token ' || ta || ' presented by the same holder ' || h AS reason
FROM p WHERE ta = tb
UNION ALL
SELECT a, b, 'same holder ' || h || '; token '
       || CASE WHEN pa = tb THEN ta || ' was minted from ' || tb
               ELSE tb || ' was minted from ' || ta END
FROM p WHERE ta <> tb AND close AND (pa = tb OR pb = ta)
UNION ALL
SELECT a, b, 'same holder ' || h || ' in the same session ' || sessions[1]
FROM p WHERE ta <> tb AND close AND len(sessions) > 0
UNION ALL
SELECT a, b, 'the same outside holder ' || h || ' presented ' || ta || ' and ' || tb
       || ' (it owns neither)'
FROM p WHERE ta <> tb AND close
  AND coalesce(ca, 'stolen') NOT IN ('owner', 'delegate', 'transport', 'forwarded')
  AND coalesce(cb, 'stolen') NOT IN ('owner', 'delegate', 'transport', 'forwarded')
UNION ALL
SELECT a, b, 'exchanges requested by ' || ra || ' at ' || coalesce(ia, '?')
       || ' minted ' || ta || ' and ' || tb || ' for their rightful holder ' || h
       || ': the fault is the exchange, not the holder'
FROM p WHERE ta <> tb AND close AND ka = 'exchange' AND kb = 'exchange'
  AND ra = rb AND ia IS NOT DISTINCT FROM ib
  AND ca IN ('owner', 'delegate') AND cb IN ('owner', 'delegate')
"""

# Connected components: every finding reaches itself and its linked findings; an incident is
# named by the smallest finding id it reaches. UNION (not UNION ALL) makes the recursion stop.
_COMPONENTS_SQL = """
WITH RECURSIVE und AS (
    SELECT a, b FROM _tt_inc_edges UNION SELECT b, a FROM _tt_inc_edges
), reach(a, b) AS (
    SELECT id, id FROM _tt_inc_f
    UNION
    SELECT r.a, u.b FROM reach r JOIN und u ON u.a = r.b
)
SELECT a AS finding_id, min(b) AS root FROM reach GROUP BY a
"""


@dataclass
class Incident:
    id: str
    title: str
    severity: str
    first_seen: str | None
    last_seen: str | None
    findings: list[str]
    rules: list[str]
    tokens: list[str]
    holders: list[str]
    addresses: list[str]
    reasons: list[str]
    related: list[dict[str, str]] = field(default_factory=list)
    related_truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if not out.pop("related_truncated"):
            return out
        out["related_truncated"] = True  # only when the list was cut: small cases stay as they were
        return out


def incident_id(finding_ids: list[str]) -> str:
    """Stable across runs on the same input: a hash of the member finding ids."""
    text = "\x1f".join(sorted(finding_ids))
    return "TTI-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def build_incidents(con: duckdb.DuckDBPyConnection, findings: list[Finding], *,
                    window: timedelta = DEFAULT_WINDOW) -> list[Incident]:
    """Group the case's findings (the `findings` table the rules wrote) into incidents, set
    each Finding's `incident`, store `incidents` and `finding_incidents` tables, and return
    the incidents most severe first, then earliest first."""
    con.execute(_FACTS_SQL)
    interval = f"{int(window.total_seconds())} seconds"
    con.execute(_EDGES_SQL, [interval, interval])
    roots = dict(con.execute(_COMPONENTS_SQL).fetchall())
    edges = con.execute("SELECT a, b, reason FROM _tt_inc_edges ORDER BY a, b, reason").fetchall()
    facts = {r[0]: r for r in con.execute(
        "SELECT id, addresses, token_key, holder_id FROM _tt_inc_f").fetchall()}

    by_id = {f.id: f for f in findings}
    members: dict[str, list[str]] = {}
    for fid, root in roots.items():
        members.setdefault(root, []).append(fid)
    # an edge's two findings are in one component: its reasons belong to that component's root
    reasons_of: dict[str, set[str]] = {}
    for a, _b, reason in edges:
        reasons_of.setdefault(roots[a], set()).add(reason)
    incidents: list[Incident] = []
    of_finding: dict[str, str] = {}
    for ids in members.values():
        ids.sort()
        iid = incident_id(ids)
        group = [by_id[i] for i in ids if i in by_id]
        if not group:
            continue
        group.sort(key=lambda f: (SEVERITY_ORDER.index(f.severity), f.first_seen or "", f.rule))
        lead = group[0]
        reasons = sorted(reasons_of.get(roots[ids[0]], set()))
        if len(ids) == 1:
            reasons = [f"a single finding: no other finding has its holder with the same or a "
                       f"derived token, the same session or exchange within {_window_text(window)}"]
        addresses = sorted({a for i in ids if i in facts for a in (facts[i][1] or [])})
        holder = lead.holder.get("id") or ""
        title = f"{lead.title} ({holder})" if holder else lead.title
        incidents.append(Incident(
            id=iid, title=title, severity=lead.severity,
            first_seen=min((f.first_seen for f in group if f.first_seen), default=None),
            last_seen=max((f.last_seen for f in group if f.last_seen), default=None),
            findings=[f.id for f in group],
            rules=sorted({f.rule for f in group}),
            tokens=sorted({f.token.get("key") for f in group if f.token.get("key")}),
            holders=sorted({f.holder.get("id") for f in group if f.holder.get("id")}),
            addresses=addresses, reasons=reasons,
        ))
        for i in ids:
            of_finding[i] = iid
    incidents.sort(key=lambda i: (SEVERITY_ORDER.index(i.severity), i.first_seen or "", i.id))
    _relate(incidents, con=con)
    for f in findings:
        f.incident = of_finding.get(f.id)
    _store(con, incidents)
    return incidents


# Related incidents in SQL (see _relate): $limit is RELATED_LIMIT, keys n (report order),
# label (0 holder, 1 token, 2 address) and value. Each incident keeps its `limit` smallest
# candidates by (shares no token, report order), packed into one BIGINT so that `min(x, n)`
# picks them in one hash aggregate (a window over every candidate pair sorted them all).
# "Shares a token" is known from the candidate join itself: a kept candidate that shares a
# token is, in that token's list, preceded only by incidents that also share it and rank
# before it, so it is within the list's first limit + 1 and the join saw that token.
_RELATED_SQL = """
WITH ranked AS (
    SELECT n, label, value,
           row_number() OVER (PARTITION BY label, value ORDER BY n) AS pos,
           count(*) OVER (PARTITION BY label, value) AS cnt
    FROM _tt_rel_keys
), cut AS (
    SELECT n, bool_or(cnt > $limit + 1) AS cut FROM ranked GROUP BY n
), cand AS (
    SELECT a.n, b.n AS m, bool_or(a.label = 1) AS tok FROM ranked a
    JOIN ranked b ON b.label = a.label AND b.value = a.value AND b.pos <= $limit + 1 AND b.n <> a.n
    GROUP BY a.n, b.n
), top AS (
    SELECT n, count(*) AS total, min(((NOT tok)::BIGINT << 40) | m, $limit) AS packed
    FROM cand GROUP BY n
), kept AS (
    SELECT t.n, t.total, u.k, u.key & ((1::BIGINT << 40) - 1) AS m
    FROM top t, unnest(t.packed) WITH ORDINALITY AS u(key, k)
), sets AS (
    SELECT n, coalesce(list(value) FILTER (WHERE label = 0), []) AS h,
           coalesce(list(value) FILTER (WHERE label = 1), []) AS t,
           coalesce(list(value) FILTER (WHERE label = 2), []) AS a
    FROM _tt_rel_keys GROUP BY n
), shared AS (
    SELECT k.n, k.m, k.k, k.total, list_intersect(x.h, y.h) AS hs,
           list_intersect(x.t, y.t) AS ts, list_intersect(x.a, y.a) AS ads
    FROM kept k JOIN sets x ON x.n = k.n JOIN sets y ON y.n = k.m
)
SELECT k.n, list(k.m ORDER BY k.k),
       list(concat_ws('; ',
            CASE WHEN len(hs) > 0 THEN 'same holder ' || array_to_string(list_sort(hs), ', ') END,
            CASE WHEN len(ts) > 0 THEN 'same token ' || array_to_string(list_sort(ts), ', ') END,
            CASE WHEN len(ads) > 0 THEN 'same address ' || array_to_string(list_sort(ads), ', ') END)
            ORDER BY k.k),
       max(k.total) > $limit OR bool_or(c.cut)
FROM shared k JOIN cut c USING (n) GROUP BY k.n
"""


def _relate(incidents: list[Incident], limit: int = RELATED_LIMIT,
            con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Incidents sharing a holder, a token or an address without a link above: say so on
    each, but keep them apart. `incidents` is in report order; each incident lists those
    sharing a token first (the closer tie), then the rest, each group in report order, at most
    `limit` of them (`related_truncated` says the list was cut).

    One gateway address can be shared by thousands of incidents, so comparing every pair is
    out of the question: each incident's candidates are the first `limit + 1` incidents of
    every holder, token and address it has (in report order). That is enough: an incident's
    first `limit` related ones are, in every such list they appear in, preceded only by the
    incident itself and by ones ranked before them. Done in SQL: 40 k incidents with 20
    related each took 3.5 s of Python (bench case), most of it wording 700 k reasons."""
    keys = [(n, label, value) for n, inc in enumerate(incidents)
            for label, values in enumerate((inc.holders, inc.tokens, inc.addresses))
            for value in set(values)]
    for inc in incidents:
        inc.related, inc.related_truncated = [], False
    if not keys:
        return
    own = con is None
    db = duckdb.connect() if con is None else con
    db.register("_tt_rel_keys", pd.DataFrame(keys, columns=["n", "label", "value"]))
    try:
        rows = db.execute(_RELATED_SQL.replace("$limit", str(int(limit)))).fetchall()
    finally:
        db.unregister("_tt_rel_keys")
        if own:
            db.close()
    for n, others, reasons, truncated in rows:
        inc = incidents[n]
        inc.related = [{"id": incidents[m].id, "reason": r} for m, r in zip(others, reasons, strict=True)]
        inc.related_truncated = bool(truncated)


def _store(con: duckdb.DuckDBPyConnection, incidents: list[Incident]) -> None:
    con.execute("""CREATE OR REPLACE TABLE incidents (
        incident_id VARCHAR, title VARCHAR, severity VARCHAR, first_seen TIMESTAMPTZ,
        last_seen TIMESTAMPTZ, findings VARCHAR[], rules VARCHAR[], tokens VARCHAR[],
        holders VARCHAR[], addresses VARCHAR[], reasons VARCHAR[], related VARCHAR[])""")
    con.execute("CREATE OR REPLACE TABLE finding_incidents (finding_id VARCHAR, incident_id VARCHAR)")
    if not incidents:
        return
    # One INSERT from a DataFrame: executemany costs a statement per row (28 s for 12k incidents).
    inc_df = pd.DataFrame([[i.id, i.title, i.severity, i.first_seen, i.last_seen, i.findings,
                            i.rules, i.tokens, i.holders, i.addresses, i.reasons,
                            [r["id"] for r in i.related]] for i in incidents],
                          columns=["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"])
    con.register("_tt_inc_df", inc_df)
    try:
        con.execute("""INSERT INTO incidents SELECT a, b, c, d::TIMESTAMPTZ, e::TIMESTAMPTZ,
            f::VARCHAR[], g::VARCHAR[], h::VARCHAR[], i::VARCHAR[], j::VARCHAR[], k::VARCHAR[],
            l::VARCHAR[] FROM _tt_inc_df""")
    finally:
        con.unregister("_tt_inc_df")
    member_df = pd.DataFrame([[f, i.id] for i in incidents for f in i.findings],
                             columns=["finding_id", "incident_id"])
    con.register("_tt_inc_members", member_df)
    try:
        con.execute("INSERT INTO finding_incidents SELECT finding_id, incident_id FROM _tt_inc_members")
    finally:
        con.unregister("_tt_inc_members")


def incident_time_range(incidents: list[Incident]) -> tuple[str | None, str | None]:
    firsts = [i.first_seen for i in incidents if i.first_seen]
    lasts = [i.last_seen for i in incidents if i.last_seen]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


__all__ = ["DEFAULT_WINDOW", "Incident", "build_incidents", "incident_id", "iso"]
