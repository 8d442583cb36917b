"""Views for responders, stored in the case so plain `duckdb` users get them too.

They use only standard SQL over the case tables (no tokentrail macros), so they keep working
when the case file is opened by any DuckDB client.
"""

from __future__ import annotations

import duckdb

# The refresh token a grant minted beside its access token (Keycloak CODE_TO_TOKEN
# refresh_token_id, REFRESH_TOKEN updated_refresh_token_id), as a mapping declares it in
# extra.minted_refresh_token_id: a later refresh that presents it continues that issuance.
# lineage.py resolves parents the same way.
_MINTED = """
    SELECT extra->>'minted_refresh_token_id' AS refresh_id, min(token_key) AS token_key
    FROM events
    WHERE kind IN ('issue', 'exchange', 'refresh') AND token_key IS NOT NULL
      AND extra->>'minted_refresh_token_id' IS NOT NULL
      AND coalesce(outcome, 'success') <> 'failure'
    GROUP BY 1 HAVING count(DISTINCT token_key) = 1
"""

# A device as a user agent names it, without versions: the product and the platform in the
# first parentheses ("Mozilla/5.0 (iPhone; ...)" -> mozilla/iphone, "okta-cli/0.10.0 (okta-sdk
# ...; Mac OS X)" -> okta-cli/okta-sdk-java). Plain SQL (no tokentrail macro), so the view
# reads the same in any DuckDB client; provenance/classify (sqlparts) has the finer device family.
_DEVICE = ("lower(split_part(split_part(trim(e.user_agent), '/', 1), ' ', 1)) || '/' "
           "|| lower(regexp_extract(e.user_agent, '\\(\\s*([^;)\\s]+)', 1))")
_NET = ("CASE WHEN regexp_full_match(e.src_ip, '\\d+\\.\\d+\\.\\d+\\.\\d+') "
        "THEN regexp_replace(e.src_ip, '\\.\\d+$', '') || '.0/24' ELSE e.src_ip END")

# Worst first: the order a responder reads a session's pairs in.
_SEVERITY = ("CASE th.classification WHEN 'stolen' THEN 6 WHEN 'forwarded' THEN 5 "
             "WHEN 'suspicious' THEN 4 WHEN 'unknown' THEN 3 WHEN 'delegate' THEN 2 "
             "WHEN 'transport' THEN 1 WHEN 'owner' THEN 0 END")


def session_view_sql(classified: bool) -> str:
    """One row per identity-provider session (events.session_id: Keycloak sessionId, Okta
    externalSessionId, Entra sessionId, Auth0 session, a JWT's sid).

    Its tokens are those an event of the session names; its refresh family adds every token
    minted by a refresh grant from one of them (following parents, and the refresh token a
    grant minted beside its access token). Presenters are the use / deny events of those
    tokens. `worst_classification` needs `token_holders`, which only a scan builds: before
    one the view says NULL (a view over a missing table could not be created, and `query`
    must work on a freshly ingested case); `refresh_derived_views` swaps it in after a scan.
    """
    if classified:
        worst_cte = f""",
        w AS (
            SELECT fa.session_id,
                   arg_max(th.classification, {_SEVERITY}) AS worst_classification,
                   list(th.token_key || ' ' || th.holder_id ORDER BY th.token_key, th.holder_id)
                       FILTER (WHERE th.classification IN ('stolen', 'forwarded', 'suspicious'))
                       AS flagged_pairs
            FROM family fa JOIN token_holders th ON th.token_key = fa.token_key
            GROUP BY fa.session_id
        )"""
        worst, worst_pairs, worst_join = ("w.worst_classification", "w.flagged_pairs",
                                          "LEFT JOIN w USING (session_id)")
    else:
        worst_cte, worst, worst_pairs, worst_join = ("", "CAST(NULL AS VARCHAR)",
                                                     "CAST(NULL AS VARCHAR[])", "")
    return f"""
        WITH RECURSIVE minted AS ({_MINTED.strip()}),
        named AS (
            SELECT DISTINCT session_id, token_key FROM events
            WHERE session_id IS NOT NULL AND token_key IS NOT NULL
        ),
        -- refresh edges with their parent resolved first, so the recursion is an equi-join
        edges AS (
            SELECT DISTINCT e.token_key AS child_key,
                   coalesce(m.token_key, e.parent_token_key) AS parent_key
            FROM events e LEFT JOIN minted m ON m.refresh_id = e.parent_token_key
            WHERE e.kind = 'refresh' AND e.token_key IS NOT NULL
              AND e.parent_token_key IS NOT NULL
              AND coalesce(e.outcome, 'success') <> 'failure'
        ),
        family(session_id, token_key) AS (
            SELECT session_id, token_key FROM named
            UNION
            SELECT f.session_id, g.child_key
            FROM family f JOIN edges g ON g.parent_key = f.token_key
            WHERE g.child_key <> f.token_key
        ),
        refreshed AS (
            SELECT DISTINCT token_key FROM events
            WHERE kind = 'refresh' AND token_key IS NOT NULL
              AND coalesce(outcome, 'success') <> 'failure'
        ),
        s AS (
            SELECT e.session_id,
                   min(e.issuer) AS issuer,
                   list(DISTINCT e.subject ORDER BY e.subject) FILTER (WHERE e.subject IS NOT NULL)
                       AS subjects,
                   list(DISTINCT e.client_id ORDER BY e.client_id)
                       FILTER (WHERE e.client_id IS NOT NULL) AS clients,
                   min(e.ts) AS first_seen, max(e.ts) AS last_seen,
                   count(*) AS events,
                   count(*) FILTER (WHERE e.kind = 'login') AS logins,
                   list(DISTINCT e.src_ip ORDER BY e.src_ip) FILTER (WHERE e.src_ip IS NOT NULL)
                       AS session_ips,
                   list(DISTINCT e.format ORDER BY e.format) AS formats
            FROM events e WHERE e.session_id IS NOT NULL
            GROUP BY e.session_id
        ),
        f AS (
            SELECT fa.session_id,
                   list(DISTINCT fa.token_key ORDER BY fa.token_key) AS family_keys,
                   list(DISTINCT fa.token_key ORDER BY fa.token_key)
                       FILTER (WHERE fa.token_key IN (SELECT token_key FROM refreshed))
                       AS refresh_family
            FROM family fa GROUP BY fa.session_id
        ),
        issued AS (
            SELECT session_id, list(DISTINCT token_key ORDER BY token_key) AS token_keys
            FROM events
            WHERE kind IN ('issue', 'exchange', 'refresh') AND session_id IS NOT NULL
              AND token_key IS NOT NULL AND coalesce(outcome, 'success') <> 'failure'
            GROUP BY session_id
        ),
        p AS (
            SELECT fa.session_id,
                   list(DISTINCT e.holder_id ORDER BY e.holder_id) AS holder_ids,
                   list(DISTINCT {_NET} ORDER BY {_NET}) FILTER (WHERE e.src_ip IS NOT NULL)
                       AS networks,
                   list(DISTINCT {_DEVICE} ORDER BY {_DEVICE})
                       FILTER (WHERE nullif(trim(e.user_agent), '') IS NOT NULL) AS devices,
                   count(*) FILTER (WHERE e.kind = 'use') AS uses
            FROM family fa JOIN events e ON e.token_key = fa.token_key
            WHERE e.kind IN ('use', 'deny') AND e.holder_id IS NOT NULL
            GROUP BY fa.session_id
        ){worst_cte}
        SELECT s.session_id, s.issuer, s.subjects, s.clients, s.first_seen, s.last_seen,
               s.events, s.logins,
               len(coalesce(i.token_keys, [])) AS tokens_issued,
               coalesce(i.token_keys, []) AS token_keys,
               len(coalesce(f.refresh_family, [])) AS refreshed,
               coalesce(f.refresh_family, []) AS refresh_family,
               len(coalesce(p.holder_ids, [])) AS holders,
               coalesce(p.holder_ids, []) AS holder_ids,
               coalesce(p.networks, []) AS networks,
               coalesce(p.devices, []) AS devices,
               coalesce(p.uses, 0) AS uses,
               s.session_ips,
               {worst} AS worst_classification,
               {worst_pairs} AS flagged_pairs,
               s.formats
        FROM s LEFT JOIN f USING (session_id) LEFT JOIN issued i USING (session_id)
        LEFT JOIN p USING (session_id) {worst_join}
    """


VIEWS: dict[str, str] = {
    # One row per (token, holder): the first question in any token incident.
    "v_token_usage": """
        SELECT e.token_key,
               min(e.token_id) AS token_id,
               e.holder_id,
               min(e.holder_tier) AS holder_tier,
               count(*) AS events,
               count(*) FILTER (WHERE e.kind = 'use') AS uses,
               count(*) FILTER (WHERE e.kind = 'deny' OR e.outcome = 'failure') AS failures,
               min(e.ts) AS first_seen,
               max(e.ts) AS last_seen,
               list(DISTINCT e.src_ip ORDER BY e.src_ip) FILTER (WHERE e.src_ip IS NOT NULL) AS src_ips,
               list(DISTINCT e.resource ORDER BY e.resource)
                   FILTER (WHERE e.resource IS NOT NULL) AS resources,
               list(DISTINCT e.kind ORDER BY e.kind) AS kinds,
               list(DISTINCT e.format ORDER BY e.format) AS formats
        FROM events e
        WHERE e.token_key IS NOT NULL AND e.holder_id IS NOT NULL
        GROUP BY e.token_key, e.holder_id
    """,
    # One row per token: how many holders presented it, and who it was issued to.
    "v_token_holders": """
        SELECT e.token_key,
               min(e.token_id) AS token_id,
               min(e.token_fp) AS token_fp,
               min(e.issuer) AS issuer,
               min(e.subject) AS subject,
               min(e.client_id) AS client_id,
               count(DISTINCT e.holder_id) FILTER (WHERE e.kind IN ('use', 'deny')) AS holders,
               list(DISTINCT e.holder_id ORDER BY e.holder_id)
                   FILTER (WHERE e.kind IN ('use', 'deny') AND e.holder_id IS NOT NULL) AS holder_ids,
               count(*) FILTER (WHERE e.kind = 'use') AS uses,
               bool_or(e.kind IN ('issue', 'exchange', 'refresh')) AS issuance_seen,
               bool_or(e.kind = 'revoke') AS revocation_seen,
               min(e.ts) AS first_seen,
               max(e.ts) AS last_seen,
               max(e.exp) AS exp,
               list(DISTINCT e.format ORDER BY e.format) AS formats
        FROM events e
        WHERE e.token_key IS NOT NULL
        GROUP BY e.token_key
    """,
    # Every issuance, exchange, refresh and revocation: the lineage skeleton.
    "v_issuance": """
        SELECT e.ts, e.kind, e.outcome, e.token_key, e.parent_token_key, e.issuer, e.subject,
               e.client_id, e.audience, e.scopes, e.act_chain, e.cnf_jkt, e.cnf_x5t,
               e.holder_id, e.session_id, e.exp, e.format, s.path AS file, e.line, e.event_id
        FROM events e LEFT JOIN sources s USING (source_id)
        WHERE e.kind IN ('issue', 'exchange', 'refresh', 'revoke')
    """,
    # One row per holder: what it presented, from where.
    "v_holders": """
        SELECT e.holder_id,
               min(e.holder_tier) AS holder_tier,
               count(DISTINCT e.token_key) AS tokens,
               count(*) AS events,
               min(e.ts) AS first_seen,
               max(e.ts) AS last_seen,
               list(DISTINCT e.src_ip ORDER BY e.src_ip) FILTER (WHERE e.src_ip IS NOT NULL) AS src_ips,
               list(DISTINCT e.user_agent ORDER BY e.user_agent)
                   FILTER (WHERE e.user_agent IS NOT NULL) AS user_agents
        FROM events e
        WHERE e.holder_id IS NOT NULL
        GROUP BY e.holder_id
    """,
    # Events with the file and line they came from, for evidence and timelines.
    "v_timeline": """
        SELECT e.ts, e.kind, e.outcome, e.token_key, e.holder_id, e.holder_tier, e.src_ip,
               e.method, e.resource, e.path, e.status, e.error, e.format, s.path AS file, e.line,
               e.event_id
        FROM events e LEFT JOIN sources s USING (source_id)
    """,
    # One row per identity-provider session: its tokens, refresh family, presenters and (after
    # a scan) the worst classification among them.
    "v_sessions": session_view_sql(classified=False),
    "v_rejects": """
        SELECT s.path AS file, r.line, r.reason, r.excerpt, s.format
        FROM rejects r LEFT JOIN sources s USING (source_id)
    """,
}


def create_views_sql() -> list[str]:
    return [f"CREATE OR REPLACE VIEW {name} AS {body.strip()}" for name, body in VIEWS.items()]


def refresh_derived_views(con: duckdb.DuckDBPyConnection) -> None:
    """Re-create the views that read a scan's tables, now that they exist (after a scan, or
    in a lake that holds them): a view is bound when it is created, so before a scan it
    reads NULL for what only the scan knows. Also brings older cases the views added since."""
    rows = con.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'main'").fetchall()
    tables = {r[0] for r in rows}
    if "events" not in tables:
        return
    for stmt in create_views_sql():
        con.execute(stmt)
    if "token_holders" in tables:
        con.execute("CREATE OR REPLACE VIEW v_sessions AS "
                    + session_view_sql(classified=True).strip())
