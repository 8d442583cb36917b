"""Lineage: one row per token, per (token, holder) pair, and per parent→child link.

Rebuilt from `events` by `build_lineage` (a temp table of resolved parents, then three
CREATE TABLE … AS statements): the derived tables are a pure function of the events, so
re-running a scan after more ingest gives the same answer as a fresh case. Everything is SQL
over the whole case. Parents are logged, reached through a refresh-token alias, or (Keycloak
exchanges) inferred; `links.basis` says which (PARENTS_SQL).
"""

from __future__ import annotations

import duckdb

from tokentrail.provenance.agents import attribute_agents
from tokentrail.provenance.quality import check_token_ids

# What a presentation is: a use or a refused use. Issue/exchange/refresh events say who
# *received* a token; they feed the token's intended holder, not its presenters.
PRESENTATION_KINDS = "('use', 'deny')"
ISSUANCE_KINDS = "('issue', 'exchange', 'refresh')"

# Every issuance event with the parent it continues, and how the case knows it (links.basis):
# - logged: the log names the parent (a refresh's refresh token, an exchange's subject token);
# - alias: the log names a refresh token, and that refresh token was minted beside an access
#   token by an earlier grant (mapping key extra.minted_refresh_token_id: Keycloak's
#   refresh_token_id on CODE_TO_TOKEN, updated_refresh_token_id on REFRESH_TOKEN), so the
#   parent is that access token: issued -> refreshed -> used is one lineage;
# - inferred: an exchange whose subject token is not logged (Keycloak TOKEN_EXCHANGE) takes
#   the token it most plausibly came from: an earlier successful, unexpired issuance in the
#   same IdP session for the same subject, issued to the client the log names as the subject
#   token's (subject_token_client_id) when it does. Among those, first a token addressed to
#   the requesting client by another (its audience names the requester: a downstream service
#   exchanging the token it was handed, a delegation chain); then the requester's own grant
#   (code, refresh: an exchange's output is addressed to someone else, so the requester
#   exchanging again most plausibly starts from the user's grant); then the requester's own
#   exchanges; then anything else; within a rank the latest, then the lowest key. Never
#   across sessions or subjects; never when any event of the token names its parent.
PARENTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE _tt_parents AS
WITH minted AS (
    SELECT extra->>'minted_refresh_token_id' AS refresh_id, min(token_key) AS token_key,
           min(event_id) AS event_id
    FROM events
    WHERE kind IN {ISSUANCE_KINDS} AND token_key IS NOT NULL
      AND extra->>'minted_refresh_token_id' IS NOT NULL
      AND coalesce(outcome, 'success') <> 'failure'
    GROUP BY 1 HAVING count(DISTINCT token_key) = 1
), iss AS (
    SELECT event_id, token_key, parent_token_key, kind, format, ts, session_id, subject,
           client_id, audience, exp, holder_id, outcome,
           extra->>'subject_token_client_id' AS subject_client
    FROM events
    WHERE kind IN {ISSUANCE_KINDS} AND token_key IS NOT NULL
), named AS (
    SELECT i.event_id, i.token_key,
           CASE WHEN m.token_key IS NOT NULL AND m.token_key <> i.token_key THEN m.token_key
                ELSE i.parent_token_key END AS parent_key,
           CASE WHEN m.token_key IS NOT NULL AND m.token_key <> i.token_key THEN 'alias'
                ELSE 'logged' END AS basis,
           CASE WHEN m.token_key IS NOT NULL AND m.token_key <> i.token_key
                THEN 'refresh token ' || i.parent_token_key || ' was minted with ' || m.token_key
                     || ' (' || m.event_id || ')' END AS evidence
    FROM iss i LEFT JOIN minted m ON m.refresh_id = i.parent_token_key
    WHERE i.parent_token_key IS NOT NULL
), orphan AS (
    SELECT i.* FROM iss i
    WHERE i.kind = 'exchange' AND i.session_id IS NOT NULL AND i.subject IS NOT NULL
      AND coalesce(i.outcome, 'success') <> 'failure'
      AND i.token_key NOT IN (SELECT token_key FROM named)
), ranked AS (
    SELECT o.event_id, o.token_key, c.token_key AS parent_key, c.event_id AS parent_event_id,
           o.session_id, o.subject, o.subject_client,
           row_number() OVER (PARTITION BY o.event_id ORDER BY
               CASE WHEN coalesce(list_contains(c.audience, o.client_id), false)
                         AND c.client_id IS DISTINCT FROM o.client_id THEN 0
                    WHEN c.client_id = o.client_id AND c.kind <> 'exchange' THEN 1
                    WHEN c.client_id = o.client_id THEN 2 ELSE 3 END,
               c.ts DESC, c.token_key) AS rn
    FROM orphan o JOIN iss c
      ON c.session_id = o.session_id AND c.subject = o.subject AND c.ts <= o.ts
     AND c.token_key <> o.token_key AND coalesce(c.outcome, 'success') <> 'failure'
     AND (o.subject_client IS NULL OR c.client_id = o.subject_client)
     AND (c.exp IS NULL OR c.exp > o.ts)
)
SELECT event_id, token_key, parent_key, basis, evidence FROM named
UNION ALL
SELECT event_id, token_key, parent_key, 'inferred' AS basis,
       'inferred: subject token not logged; latest earlier issuance ' || parent_key || ' ('
       || parent_event_id || ') in identity-provider session ' || session_id || ' for subject '
       || subject || coalesce(' to client ' || subject_client || ' (subject_token_client_id)', '')
       AS evidence
FROM ranked WHERE rn = 1
"""

TOKENS_SQL = f"""
CREATE OR REPLACE TABLE tokens AS
WITH issued AS (
    -- Issuance events in time order, equal times by event id: `rk` is unique per token, so
    -- every arg_min below takes the same event on every run (arg_min over equal times keeps
    -- whichever tied row a thread saw first).
    SELECT token_key, kind, ts, event_id, holder_id, holder_tier, src_ip, client_id,
           pa.parent_key, format, user_agent, extra->>'client_name' AS client_name, session_id,
           row_number() OVER (PARTITION BY token_key ORDER BY ts, event_id) AS rk
    -- inferred parents stay in links (basis 'inferred'): tokens.parent_token_key is what the
    -- logs say, directly or through the refresh token minted with the parent
    FROM events LEFT JOIN (SELECT event_id, parent_key FROM _tt_parents
                           WHERE basis <> 'inferred') pa USING (event_id)
    WHERE kind IN {ISSUANCE_KINDS} AND token_key IS NOT NULL
      AND coalesce(outcome, 'success') <> 'failure'
), issuance AS (
    SELECT token_key,
           arg_min(kind, rk) AS issue_kind,
           min(ts) AS issued_at,
           arg_min(event_id, rk) AS issue_event_id,
           arg_min(holder_id, rk) AS issued_to_holder,
           arg_min(holder_tier, rk) AS issued_to_tier,
           arg_min(src_ip, rk) AS issued_ip,
           arg_min(client_id, rk) AS issued_client_id,
           arg_min(parent_key, rk) AS parent_token_key,
           arg_min(format, rk) AS issued_by_format,
           arg_min(user_agent, rk) AS issued_user_agent,
           -- the issuing app's display name when the IdP logs it (Okta actor.displayName)
           arg_min(client_name, rk) FILTER (WHERE client_name IS NOT NULL) AS client_name,
           -- the IdP session the token was issued in (sid, Okta externalSessionId, ...)
           arg_min(session_id, rk) FILTER (WHERE session_id IS NOT NULL) AS issued_session_id
    FROM issued
    GROUP BY token_key
), revocation AS (
    SELECT token_key, min(ts) AS revoked_at,
           (list(event_id ORDER BY ts, event_id))[1] AS revoke_event_id
    FROM events
    WHERE kind = 'revoke' AND token_key IS NOT NULL
      AND coalesce(outcome, 'success') <> 'failure'
    GROUP BY token_key
), seen AS (
    -- mode(x ORDER BY x): the most frequent value, the lowest on a tie, so a token seen as
    -- often with a realm name as with its JWT iss reads the same on every run and engine
    SELECT token_key,
           min(token_id) AS token_id,
           min(token_fp) AS token_fp,
           mode(issuer ORDER BY issuer) AS issuer,
           mode(subject ORDER BY subject) AS subject,
           mode(client_id ORDER BY client_id) AS claimed_client_id,
           mode(audience ORDER BY audience) AS audience,
           mode(scopes ORDER BY scopes) AS scopes,
           mode(act_chain ORDER BY act_chain) AS act_chain,
           mode(cnf_jkt ORDER BY cnf_jkt) AS cnf_jkt,
           mode(cnf_x5t ORDER BY cnf_x5t) AS cnf_x5t,
           mode(pod ORDER BY pod) AS pod,
           mode(host ORDER BY host) AS host,
           min(iat) AS iat,
           max(exp) AS exp,
           min(ts) AS first_seen,
           max(ts) AS last_seen,
           count(*) FILTER (WHERE kind = 'use') AS uses,
           count(DISTINCT holder_id) FILTER (WHERE kind IN {PRESENTATION_KINDS}) AS holders,
           bool_or(raw_token_logged) AS raw_token_logged,
           list(DISTINCT format ORDER BY format) AS formats
    FROM events
    WHERE token_key IS NOT NULL
    GROUP BY token_key
)
SELECT s.token_key, s.token_id, s.token_fp, s.issuer, s.subject,
       coalesce(i.issued_client_id, s.claimed_client_id) AS client_id,
       s.audience, s.scopes, s.act_chain, s.act_chain[1] AS current_actor,
       s.cnf_jkt, s.cnf_x5t, s.pod, s.host, s.iat, s.exp,
       i.issue_kind, i.issued_at, i.issue_event_id, i.issued_to_holder, i.issued_to_tier,
       i.issued_ip, i.parent_token_key, i.issued_by_format,
       r.revoked_at, r.revoke_event_id,
       s.first_seen, s.last_seen, s.uses, s.holders, s.raw_token_logged, s.formats,
       i.issued_user_agent, i.client_name, i.issued_session_id
FROM seen s
LEFT JOIN issuance i USING (token_key)
LEFT JOIN revocation r USING (token_key)
"""

LINKS_SQL = f"""
CREATE OR REPLACE TABLE links AS
SELECT e.token_key AS child_key, pa.parent_key AS parent_key,
       CASE WHEN e.kind = 'exchange' THEN 'exchange'
            WHEN e.kind = 'refresh' THEN 'refresh'
            WHEN e.format = 'cloudtrail' THEN 'role-chain'
            ELSE 'issue' END AS kind,
       e.ts, e.event_id, e.client_id AS requested_by, e.holder_id AS received_by,
       pa.basis, pa.evidence
FROM events e JOIN _tt_parents pa USING (event_id)
WHERE e.kind IN {ISSUANCE_KINDS} AND e.token_key IS NOT NULL
  AND pa.parent_key IS NOT NULL AND pa.parent_key <> e.token_key
"""

# A presentation relayed by a hop: the same request (request id or trace) was presented by
# another holder of the same token no later than this one.
TOKEN_HOLDERS_SQL = f"""
CREATE OR REPLACE TABLE token_holders AS
WITH p AS (
    SELECT e.event_id, e.token_key, e.holder_id, e.holder_tier, e.kind, e.ts, e.request_id,
           e.trace_id, e.path, e.resource, e.src_ip, e.user_agent, e.auth_scheme, e.format,
           e.proof_jkt, e.proof_jti, e.peer_x5t,
           -- the source records client certificates (a missing one is evidence there)
           e.source_id IN (SELECT source_id FROM events WHERE peer_x5t IS NOT NULL) AS logs_certs,
           t.exp AS t_exp, t.revoked_at AS t_revoked_at, t.cnf_jkt AS t_cnf_jkt,
           t.cnf_x5t AS t_cnf_x5t,
           -- Request and trace ids come from the client: only a presenter that can be a hop
           -- inside the network (an identity, or a private address) is taken for a relay.
           (e.holder_tier <> 'network' OR tt_private_ip(e.src_ip)) AS hop_capable
    FROM events e JOIN tokens t USING (token_key)
    WHERE e.kind IN {PRESENTATION_KINDS} AND e.holder_id IS NOT NULL
), req AS (
    -- Relays and replays are judged on distinct presentations, not on rows: a log that
    -- repeats one request thousands of times (a retry storm, a file ingested twice, a replay
    -- tool) would make the self-joins below quadratic in its copies. Identical copies judge
    -- alike, so each distinct (token, request, holder, path, resource, time) is joined once
    -- and the verdict carried back to every copy. Only requests (traces) that more than
    -- one holder presented the token for can be relays: the rest never reach the joins.
    SELECT DISTINCT token_key, request_id, holder_id, path, resource, ts, hop_capable
    FROM p SEMI JOIN (SELECT token_key, request_id FROM p WHERE request_id IS NOT NULL
                      GROUP BY token_key, request_id HAVING min(holder_id) <> max(holder_id)) shared
         USING (token_key, request_id)
), trc AS (
    SELECT DISTINCT token_key, trace_id, request_id, holder_id, path, resource, ts, hop_capable
    FROM p SEMI JOIN (SELECT token_key, trace_id FROM p WHERE trace_id IS NOT NULL
                      GROUP BY token_key, trace_id HAVING min(holder_id) <> max(holder_id)) shared
         USING (token_key, trace_id)
), req_relayed AS (
    -- two equi-joins (request id, trace id) instead of one OR join: hash joins, not a
    -- token-wide cross product
    SELECT a.token_key, a.request_id, a.holder_id, a.path, a.resource, a.ts, a.hop_capable,
           min(b.holder_id) AS relayed_from
    FROM req a JOIN req b ON a.token_key = b.token_key AND a.request_id = b.request_id
    WHERE a.holder_id <> b.holder_id AND (a.path = b.path OR a.resource = b.resource)
      AND b.ts <= a.ts AND a.ts - b.ts <= INTERVAL 60 SECOND AND a.hop_capable
    GROUP BY a.token_key, a.request_id, a.holder_id, a.path, a.resource, a.ts, a.hop_capable
), trc_relayed AS (
    -- the same trace is the same request only when the request ids do not say otherwise
    SELECT a.token_key, a.trace_id, a.request_id, a.holder_id, a.path, a.resource, a.ts,
           a.hop_capable, min(b.holder_id) AS relayed_from
    FROM trc a JOIN trc b ON a.token_key = b.token_key AND a.trace_id = b.trace_id
    WHERE a.holder_id <> b.holder_id AND (a.path = b.path OR a.resource = b.resource)
      AND (a.request_id IS NULL OR b.request_id IS NULL OR a.request_id = b.request_id)
      AND b.ts <= a.ts AND a.ts - b.ts <= INTERVAL 60 SECOND AND a.hop_capable
    GROUP BY a.token_key, a.trace_id, a.request_id, a.holder_id, a.path, a.resource, a.ts, a.hop_capable
), relay_pairs AS (
    SELECT p.event_id, r.relayed_from
    FROM p JOIN req_relayed r
      ON p.token_key = r.token_key AND p.request_id = r.request_id AND p.holder_id = r.holder_id
     AND p.ts = r.ts AND p.path IS NOT DISTINCT FROM r.path
     AND p.resource IS NOT DISTINCT FROM r.resource AND p.hop_capable = r.hop_capable
    UNION ALL
    SELECT p.event_id, r.relayed_from
    FROM p JOIN trc_relayed r
      ON p.token_key = r.token_key AND p.trace_id = r.trace_id AND p.holder_id = r.holder_id
     AND p.ts = r.ts AND p.request_id IS NOT DISTINCT FROM r.request_id
     AND p.path IS NOT DISTINCT FROM r.path AND p.resource IS NOT DISTINCT FROM r.resource
     AND p.hop_capable = r.hop_capable
), relayed AS (
    SELECT event_id, true AS relayed, min(relayed_from) AS relayed_from
    FROM relay_pairs GROUP BY event_id
), proofs AS (
    -- RFC 9449 §11.1: a DPoP proof is single-use. Distinct presentations of each proof jti
    -- (copies of one presentation cannot replay each other: same request, same holder, same
    -- second), with the first event id of each for the tie on equal times.
    SELECT proof_jti, request_id, holder_id, ts, min(event_id) AS first_event_id
    FROM p WHERE proof_jti IS NOT NULL
    GROUP BY proof_jti, request_id, holder_id, ts
), proof_replays AS (
    -- the same proof jti on a later, different request (not a retry of the same request id,
    -- not the same holder within a second)
    SELECT a.proof_jti, a.request_id, a.holder_id, a.ts,
           min(b.first_event_id) FILTER (WHERE b.ts = a.ts) AS tie_event_id,
           bool_or(b.ts < a.ts) AS earlier
    FROM proofs a JOIN proofs b ON a.proof_jti = b.proof_jti AND b.ts <= a.ts
         AND (a.request_id IS NULL OR b.request_id IS NULL OR a.request_id <> b.request_id)
         AND NOT (a.holder_id = b.holder_id AND a.ts - b.ts <= INTERVAL 1 SECOND)
    GROUP BY a.proof_jti, a.request_id, a.holder_id, a.ts
), replays AS (
    SELECT p.event_id, true AS replay
    FROM p JOIN proof_replays r
      ON p.proof_jti = r.proof_jti AND p.holder_id = r.holder_id AND p.ts = r.ts
     AND p.request_id IS NOT DISTINCT FROM r.request_id
    WHERE r.earlier OR r.tie_event_id < p.event_id
)
-- list_distinct(list(x)) rather than list(DISTINCT x): one hash table, not one per list;
-- it drops NULLs too, so an empty list means "none seen".
SELECT p.token_key, p.holder_id,
       min(p.holder_tier) AS holder_tier,
       count(*) AS count,
       count(*) FILTER (WHERE p.kind = 'use') AS uses,
       count(*) FILTER (WHERE p.kind = 'deny') AS denies,
       count(DISTINCT p.request_id) AS requests,
       min(p.ts) AS first_seen, max(p.ts) AS last_seen,
       list_sort(list_distinct(list(p.src_ip))) AS src_ips,
       list_sort(list_distinct(list(p.resource))) AS resources,
       list_sort(list_distinct(list(p.user_agent)))
           AS user_agents,
       list_sort(list_distinct(list(p.auth_scheme)))
           AS auth_schemes,
       list_sort(list_distinct(list(p.format))) AS formats,
       -- binding evidence (RFC 9449 / RFC 8705)
       count(*) FILTER (WHERE p.t_cnf_jkt IS NOT NULL AND p.kind = 'use'
                        AND (p.proof_jkt IS NULL OR p.proof_jkt <> p.t_cnf_jkt)) AS dpop_unproven,
       count(*) FILTER (WHERE p.t_cnf_x5t IS NOT NULL AND p.kind = 'use' AND p.peer_x5t IS NOT NULL
                        AND p.peer_x5t <> p.t_cnf_x5t) AS cert_mismatch,
       count(*) FILTER (WHERE p.t_cnf_x5t IS NOT NULL AND p.kind = 'use' AND p.peer_x5t IS NULL
                        AND p.logs_certs) AS cert_absent,
       count(*) FILTER (WHERE p.t_cnf_jkt IS NOT NULL AND p.auth_scheme = 'Bearer')
           AS bound_as_bearer,
       -- time evidence, with the skew allowance applied by the classifier
       max(p.ts - p.t_exp) FILTER (WHERE p.kind = 'use' AND p.ts > p.t_exp) AS max_after_exp,
       max(p.ts - p.t_revoked_at) FILTER (WHERE p.kind = 'use' AND p.ts > p.t_revoked_at)
           AS max_after_revoke,
       count(*) FILTER (WHERE rp.replay) AS proof_replays,
       bool_and(coalesce(r.relayed, false)) AS relayed,
       min(r.relayed_from) AS relayed_from,
       list(p.event_id ORDER BY p.ts, p.event_id) AS event_ids,
       -- how a holder that is not in the log line itself was found (agents.py)
       list_sort(list_distinct(list(ha.evidence))) AS holder_evidence
FROM p LEFT JOIN relayed r USING (event_id) LEFT JOIN replays rp USING (event_id)
LEFT JOIN holder_attribution ha USING (event_id)
GROUP BY p.token_key, p.holder_id
"""


# A token seen once with its id and fingerprint (a logged JWT, an app that logs both) and
# elsewhere only by fingerprint (a DPoP `ath`, a gateway's token_fp): one token, one key.
ALIAS_SQL = """
UPDATE events SET token_key = a.token_id
FROM (SELECT token_fp, min(token_id) AS token_id FROM events
      WHERE token_fp IS NOT NULL AND token_id IS NOT NULL GROUP BY token_fp
      HAVING count(DISTINCT token_id) = 1) a
WHERE events.token_key = 'fp:' || a.token_fp
"""


def build_lineage(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)build tokens, links and token_holders from events.

    First the holders the log line could not name itself: a gateway request made by an AI
    agent, found through the agent's own trace spans (agents.py, `holder_attribution`). Then
    the ids that do not name one credential: split per issuer, or set aside as test data
    (quality.py, `data_quality`)."""
    attribute_agents(con)
    con.execute(ALIAS_SQL)
    check_token_ids(con)
    con.execute(PARENTS_SQL)
    con.execute(TOKENS_SQL)
    con.execute(LINKS_SQL)
    con.execute(TOKEN_HOLDERS_SQL)
