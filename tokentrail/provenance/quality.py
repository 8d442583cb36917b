"""Data quality before lineage: token ids that do not name one credential.

Tokens are keyed by their own id (DESIGN.md, "token_key"), which is right when the id is the
credential's. Two real patterns break that and would raise a false cross-holder "stolen":

1. An id is unique only within its issuer (RFC 7519 section 4.1.7: the jti is assigned so that
   the same value is not used by another token of the *same issuer*). Records that share an id
   but disagree on both the issuer and the subject are not one token: e.g. Microsoft Graph
   activity logs carrying one placeholder SignInActivityId for requests of three tenants. Such
   an id is split: each of its events is keyed `<id>@<issuer>`. Issuers are compared loosely
   (one naming the other: a tenant id and its https://sts.windows.net/<tenant>/ issuer URL, a
   Keycloak realm and its /realms/<realm> URL are the same issuer), so one token seen by an
   IdP and a gateway is not split.
2. AWS's documented example credentials (access key ids AKIAIOSFODNN7EXAMPLE,
   ASIAIOSFODNN7EXAMPLE and the secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, as printed in
   the IAM user guide and the SDK examples) are test data that real logs carry (tutorials,
   attack simulations). Their events keep token_id but get no token_key, so no token, holder
   pair or classification is built from them.

Both are recorded in `data_quality` (one row per id, the standard rule hit columns), which
rule TT018 reports as an info finding. Everything is set-based SQL over the case, and
idempotent: a second run (or a run after more ingest) splits and notes the same way.
"""

from __future__ import annotations

import base64
import hashlib

import duckdb

EXAMPLE_KEY_IDS = ("AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE")
EXAMPLE_SECRETS = ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",)


def _fp(raw: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


def _in_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


EXAMPLE_IDS_SQL = _in_list(EXAMPLE_KEY_IDS)
EXAMPLE_FPS_SQL = _in_list(tuple(_fp(s) for s in EXAMPLE_SECRETS))
EXAMPLE_WHERE = f"(token_id IN {EXAMPLE_IDS_SQL} OR token_fp IN {EXAMPLE_FPS_SQL})"

EXAMPLE_SQL = f"UPDATE events SET token_key = NULL WHERE {EXAMPLE_WHERE} AND token_key IS NOT NULL"

# Events keyed by their id (or already split from it by an earlier run).
_BY_ID = ("(e.token_key = e.token_id OR substr(e.token_key, 1, length(e.token_id) + 1) "
          "= e.token_id || '@')")

# Ids seen with two issuers neither of which names the other, and two subjects.
CONFLICTS = f"""
SELECT DISTINCT a.token_id
FROM (SELECT DISTINCT e.token_id, e.issuer, e.subject FROM events e
      WHERE e.token_id IS NOT NULL AND e.issuer IS NOT NULL AND e.subject IS NOT NULL
        AND {_BY_ID}) a
JOIN (SELECT DISTINCT e.token_id, e.issuer, e.subject FROM events e
      WHERE e.token_id IS NOT NULL AND e.issuer IS NOT NULL AND e.subject IS NOT NULL
        AND {_BY_ID}) b
  ON a.token_id = b.token_id
WHERE a.subject <> b.subject
  AND strpos(lower(a.issuer), lower(b.issuer)) = 0
  AND strpos(lower(b.issuer), lower(a.issuer)) = 0
"""

SPLIT_SQL = f"""
UPDATE events SET token_key = events.token_id || '@' || events.issuer
FROM ({CONFLICTS}) c
WHERE events.token_id = c.token_id AND events.issuer IS NOT NULL
  AND (events.token_key = events.token_id
       OR substr(events.token_key, 1, length(events.token_id) + 1) = events.token_id || '@')
"""

DATA_QUALITY_SQL = f"""
CREATE OR REPLACE TABLE data_quality AS
WITH example_events AS (
    -- rk: time order, equal times by event id, so the first holder is the same on every run
    SELECT coalesce(token_id, 'fp:' || token_fp) AS token_key, holder_id, ts, event_id,
           row_number() OVER (PARTITION BY coalesce(token_id, 'fp:' || token_fp)
                              ORDER BY ts, event_id) AS rk
    FROM events WHERE {EXAMPLE_WHERE}
), example AS (
    SELECT token_key, arg_min(holder_id, rk) AS holder_id, min(ts) AS first_seen,
           max(ts) AS last_seen, count(*) AS count, list(event_id ORDER BY ts, event_id) AS event_ids,
           count(DISTINCT holder_id) AS holders
    FROM example_events GROUP BY token_key
), split_events AS (
    SELECT token_id, holder_id, ts, event_id, issuer, subject,
           row_number() OVER (PARTITION BY token_id ORDER BY ts, event_id) AS rk
    FROM events e
    WHERE e.token_id IS NOT NULL AND substr(e.token_key, 1, length(e.token_id) + 1) = e.token_id || '@'
), split AS (
    SELECT token_id AS token_key, arg_min(holder_id, rk) AS holder_id,
           min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS count,
           list(event_id ORDER BY ts, event_id) AS event_ids,
           count(DISTINCT issuer) AS issuers, count(DISTINCT subject) AS subjects,
           list_sort(list_distinct(list(issuer))) AS issuer_list
    FROM split_events
    GROUP BY token_id
)
SELECT 'example_credential' AS note, token_key, holder_id, first_seen, last_seen, count,
       event_ids,
       ['AWS documentation example credential (test data, not a credential): no token, '
        || 'holder or classification is built from it',
        CAST(count AS VARCHAR) || ' event(s), ' || CAST(holders AS VARCHAR) || ' holder(s)']
           AS reasons
FROM example
UNION ALL
SELECT 'id_across_issuers', token_key, holder_id, first_seen, last_seen, count, event_ids,
       ['one token id under ' || CAST(issuers AS VARCHAR) || ' issuers with '
        || CAST(subjects AS VARCHAR) || ' subjects: read as one token per issuer (a token id '
        || 'is unique only per issuer, RFC 7519 jti), keyed <id>@<issuer>',
        'issuers: ' || array_to_string(issuer_list, ', ')]
FROM split
"""


def check_token_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Set aside example credentials, split ids shared across issuers, record both."""
    con.execute(EXAMPLE_SQL)
    con.execute(SPLIT_SQL)
    con.execute(DATA_QUALITY_SQL)
