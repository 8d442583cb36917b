"""Views for responders, stored in the case so plain `duckdb` users get them too.

They use only standard SQL over the case tables (no tokentrail macros), so they keep working
when the case file is opened by any DuckDB client.
"""

from __future__ import annotations

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
    "v_rejects": """
        SELECT s.path AS file, r.line, r.reason, r.excerpt, s.format
        FROM rejects r LEFT JOIN sources s USING (source_id)
    """,
}


def create_views_sql() -> list[str]:
    return [f"CREATE OR REPLACE VIEW {name} AS {body.strip()}" for name, body in VIEWS.items()]
