"""The per-case evidence tables the steps join (built once per scan, as TEMP tables): holders
seen as owners, each client's usual networks, IdP sign-ins and refresh thefts by session,
handovers between networks, instance credentials off their instance, and the policy asked
once per identity."""

from __future__ import annotations

import duckdb

from .sqlparts import PolicySQL, _device_family, _holder_ip, _name_of, _net24, _norm_name, _private
from .steps import classification_sql

INSTANCE_OFF_SQL = """
CREATE OR REPLACE TEMP TABLE _tt_instance_off AS
WITH uses AS (
    SELECT e.token_key, e.holder_id, e.ts, e.event_id, e.src_ip, t.host,
           NOT (e.src_ip LIKE '10.%' OR e.src_ip LIKE '192.168.%' OR e.src_ip LIKE '127.%'
                OR e.src_ip LIKE '169.254.%'
                OR (e.src_ip LIKE '172.%' AND TRY_CAST(split_part(e.src_ip, '.', 2) AS INTEGER)
                    BETWEEN 16 AND 31)
                OR (e.src_ip LIKE '100.%'
                    AND TRY_CAST(split_part(e.src_ip, '.', 2) AS INTEGER) BETWEEN 64 AND 127)
                OR lower(e.src_ip) LIKE 'fc%' OR lower(e.src_ip) LIKE 'fd%'
                OR lower(e.src_ip) LIKE 'fe80:%' OR e.src_ip = '::1') AS public_address
    FROM events e JOIN tokens t ON t.token_key = e.token_key
    WHERE t.host LIKE 'i-%' AND e.kind IN ('use', 'deny') AND e.holder_id IS NOT NULL
      AND ((e.src_ip LIKE '%.%.%.%' AND lower(e.src_ip) = upper(e.src_ip))
           OR e.src_ip LIKE '%:%:%')
      AND e.src_ip NOT LIKE '% %'
), ranked AS (
    SELECT u.*, first_value(u.src_ip) OVER (PARTITION BY u.token_key ORDER BY u.ts, u.event_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_ip
    FROM uses u
)
SELECT token_key, holder_id,
       min(CASE WHEN public_address
                THEN 'credentials of instance ' || host || ' used from public address ' || src_ip
                ELSE 'credentials of instance ' || host || ' used from ' || src_ip || ', not '
                     || first_ip || ' where the instance first used them' END) AS reason
FROM ranked WHERE public_address OR src_ip <> first_ip
GROUP BY token_key, holder_id
"""


def classify(con: duckdb.DuckDBPyConnection, policy: PolicySQL | None = None) -> None:
    """Add classification, confidence and reasons to every row of token_holders."""
    policy = policy or PolicySQL()
    h = "holder_id"
    # Holders seen presenting some token as its owner: known internal identities.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_matched AS
        SELECT DISTINCT th.holder_id FROM token_holders th JOIN tokens t USING (token_key)
        WHERE th.holder_id = t.issued_to_holder OR th.holder_id = 'client:' || t.client_id
           OR th.holder_id = t.current_actor
           OR (th.holder_tier IN ('spiffe', 'workload') AND {_name_of(h)} = t.client_id)
           OR (th.holder_tier IN ('spiffe', 'workload') AND t.client_name IS NOT NULL
               AND {_norm_name(_name_of(h))} = {_norm_name('t.client_name')})
    """)
    # Public /24s each client's tokens were presented from (the owner's usual networks).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_client_nets AS
        SELECT DISTINCT t.client_id, th.token_key,
               {_net24("split_part(substr(th.holder_id, 4), '/', 1)")} AS net
        FROM token_holders th JOIN tokens t USING (token_key)
        WHERE t.client_id IS NOT NULL AND starts_with(th.holder_id, 'ip:')
          AND NOT {_private("split_part(substr(th.holder_id, 4), '/', 1)")}
    """)
    # Addresses that logged in to an IdP session themselves (per user-agent family), and
    # addresses that redeemed a refresh token in the session with the device (product and
    # platform) that signed in to it: the same phone on Wi-Fi, then on its carrier. A refresh
    # from a device that never signed in (another platform, a script) does not count.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_session_logins AS
        WITH ok AS (
          SELECT session_id, src_ip, kind, event_id, tt_ua_family(user_agent) AS ua,
                 {_device_family('user_agent')} AS device
          FROM events
          WHERE kind IN ('login', 'refresh') AND session_id IS NOT NULL AND src_ip IS NOT NULL
            AND coalesce(outcome, 'success') <> 'failure')
        SELECT session_id, src_ip, ua, 'login' AS how, CAST(NULL AS VARCHAR) AS device,
               min(event_id) AS event_id, CAST(NULL AS VARCHAR) AS login_event_id
        FROM ok WHERE kind = 'login' GROUP BY ALL
        UNION ALL
        SELECT r.session_id, r.src_ip, r.ua, 'refresh', r.device, min(r.event_id), min(l.event_id)
        FROM ok r JOIN ok l ON l.kind = 'login' AND l.session_id = r.session_id
                           AND l.device = r.device
        WHERE r.kind = 'refresh'
        GROUP BY ALL
    """)
    # Each (token, network holder) whose address signed in to the token's IdP session itself,
    # or refreshed in it with the device that signed in (step 6b): a join here, so the step
    # reads one row (a correlated lookup with functions of the outer row is not portable).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_session_owner AS
        WITH cand AS (
          SELECT th.token_key, th.holder_id,
                 CASE sl.how WHEN 'login'
                 THEN 'address ' || sl.src_ip || ' signed in to the token''s identity-provider session '
                      || sl.session_id || ' itself (' || sl.event_id || ', same user agent family)'
                 ELSE 'address ' || sl.src_ip || ' redeemed a refresh token in the token''s '
                      || 'identity-provider session ' || sl.session_id || ' (' || sl.event_id
                      || ') with the device that signed in to it (' || sl.device || ', '
                      || sl.login_event_id || '): the same device on another network' END AS reason,
                 row_number() OVER (PARTITION BY th.token_key, th.holder_id
                                    ORDER BY CASE WHEN sl.how = 'login' THEN 0 ELSE 1 END,
                                             sl.event_id) AS rn
          FROM token_holders th JOIN tokens t USING (token_key)
          JOIN _tt_session_logins sl ON sl.session_id = t.issued_session_id
                                    AND sl.src_ip = {_holder_ip('th.holder_id')}
          WHERE len(th.user_agents) <= 1
            AND sl.ua IS NOT DISTINCT FROM tt_ua_family(th.user_agents[1])
            AND (sl.how = 'login' OR sl.device = {_device_family('th.user_agents[1]')}))
        SELECT token_key, holder_id, reason FROM cand WHERE rn = 1
    """)
    # Tokens minted by a refresh grant in an IdP session from a new holder: an external
    # address none of the session's earlier sign-ins / grants / refreshes came from, with a
    # device (user-agent product + platform) none of them had. A phone changing networks keeps
    # its device; a second device that signed in itself is an earlier holder of its address.
    # Earlier holders include presentations that name the session (Graph activity logs):
    # an app's token-endpoint user agent (MSAL) is not its resource one (Azure CLI), so a
    # presenter whose device the session already had is not judged a new holder.
    # Unknown user agents on either side prove nothing, so they never make a theft.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_session_theft AS
        WITH hold AS (
          SELECT session_id, ts, event_id, kind, src_ip, {_device_family('user_agent')} AS device
          FROM events
          WHERE kind IN ('login', 'issue', 'refresh', 'use', 'deny') AND session_id IS NOT NULL
            AND src_ip IS NOT NULL AND coalesce(outcome, 'success') <> 'failure')
        SELECT t.token_key,
               'redeemed a refresh token in identity-provider session ' || t.issued_session_id
               || ' from a new holder (' || t.issued_ip || ', ' || {_device_family('t.issued_user_agent')}
               || ', ' || t.issue_event_id || '): new network and new device compared with every '
               || 'earlier holder of the session (' || string_agg(DISTINCT h.src_ip || ' ' || h.device, ', ')
               || ')' || coalesce('; refresh family ' || min(t.parent_token_key), '')
               || '; no exchange' AS reason,
               list(DISTINCT h.device) AS earlier_devices
        FROM tokens t JOIN hold h ON h.session_id = t.issued_session_id AND h.ts < t.issued_at
        WHERE t.issue_kind = 'refresh' AND t.issued_ip IS NOT NULL
          AND NOT {_private('t.issued_ip')}
          AND {_device_family('t.issued_user_agent')} IS NOT NULL
        GROUP BY t.token_key, t.issued_session_id, t.issued_ip, t.issued_user_agent, t.issue_event_id
        HAVING bool_and(h.device IS NOT NULL OR h.kind IN ('use', 'deny'))
           AND NOT bool_or(h.src_ip = t.issued_ip)
           AND NOT bool_or(h.device = {_device_family('t.issued_user_agent')})
    """)
    # One device moving between networks (a phone between carrier addresses, a laptop from
    # office to home): a network holder presenting with exactly the user agent the token's
    # owner presented it with from the address that obtained it, and never in use at the same
    # time as any other holder of the token (windows over the holders in time order, not a
    # self-join: one shared token can have thousands of holders). Concurrent use is not a
    # handover.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_handover AS
        WITH spans AS (
          SELECT token_key, holder_id, holder_tier, user_agents, first_seen, last_seen,
                 -- NULLS FIRST (neither is ever NULL here): BigQuery has no NULLS LAST in a
                 -- framed window, and this SQL is exported (scale/portable)
                 max(last_seen) OVER (PARTITION BY token_key
                                      ORDER BY first_seen NULLS FIRST, holder_id NULLS FIRST
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_last,
                 lead(first_seen) OVER (PARTITION BY token_key
                                        ORDER BY first_seen NULLS FIRST, holder_id NULLS FIRST) AS next_first
          FROM token_holders
        ), owners AS (
          SELECT th.token_key, th.holder_id AS owner_id, th.user_agents
          FROM token_holders th JOIN tokens t USING (token_key)
          WHERE th.holder_tier = 'network' AND t.issued_ip IS NOT NULL
            AND {_holder_ip('th.holder_id')} = t.issued_ip
        )
        SELECT s.token_key, s.holder_id, min(o.owner_id) AS owner_id
        FROM spans s JOIN owners o ON o.token_key = s.token_key AND o.owner_id <> s.holder_id
                                  AND o.user_agents = s.user_agents
        WHERE s.holder_tier = 'network' AND len(s.user_agents) = 1
          AND coalesce(s.before_last < s.first_seen, true)
          AND coalesce(s.next_first > s.last_seen, true)
        GROUP BY s.token_key, s.holder_id
    """)
    # Ask the policy once per distinct identity, not once per use in the CASE below: each
    # lookup is a join, and the classification mentions a workload a dozen times.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_ids AS
        SELECT id, {policy.of(policy.workload_of, 'id')} AS workload,
               coalesce({policy.of(policy.is_transport, 'id')}, false) AS transport,
               coalesce({policy.of(policy.in_nat, 'id')}, false) AS nat,
               {policy.of(policy.is_trusted_net, 'id')} AS trusted
        FROM (SELECT DISTINCT id FROM (
                SELECT holder_id AS id FROM token_holders
                UNION ALL SELECT issued_to_holder FROM tokens
                UNION ALL SELECT current_actor FROM tokens
                UNION ALL SELECT 'client:' || client_id FROM tokens
                UNION ALL SELECT 'client:' || client_name FROM tokens) WHERE id IS NOT NULL)
    """)
    cached = PolicySQL(
        workload_of="(SELECT workload FROM _tt_ids WHERE id = {h})",
        is_transport="(SELECT transport FROM _tt_ids WHERE id = {h})",
        in_nat="(SELECT nat FROM _tt_ids WHERE id = {h})",
        is_trusted_net="(SELECT trusted FROM _tt_ids WHERE id = {h})",
        skew_seconds=policy.skew_seconds,
    )
    # Instance-profile credentials presented off their instance (TT016's evidence, DESIGN.md
    # step 3): a public address, or another address than the first one that used them.
    con.execute(INSTANCE_OFF_SQL)
    con.execute(classification_sql(cached))
