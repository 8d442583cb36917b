"""Scan benchmark: lineage + classification + every built-in rule, against ingest, on N events.

    python3 bench/bench_scan.py                    # 10,000,000 events (slow: generation alone
                                                   # takes minutes, ~10 GB of logs)
    python3 bench/bench_scan.py --events 1000000   # about 1.2 GB of logs
    python3 bench/bench_scan.py --events 100000    # a quick run

Generates (once, then reuses) a realistic multi-holder case of about N events in
bench/data/scan-N/ (git-ignored): an Envoy/Istio mesh access log (ingress + API gateway +
sidecars) and the identity provider's side in tokentrail's own JSON Lines format (issue,
token exchange with act chains, refresh, revocation). The mix has owners, partners outside the
mesh, delegated tokens minted by logged exchanges, DPoP-bound tokens, gateway hops (the same
request id and path presented again by the gateway's SPIFFE id), retries that share a request
id (and a DPoP proof), and rare incidents for every rule: forwarding, MCP token passthrough,
theft from outside (bearer replay, DPoP-bound token sent as Bearer, DPoP proof replay, one
token from three networks), use after revocation and after expiry, long lifetimes, raw tokens
in the log, refresh-token reuse, exchanges that widen scope or drop a binding.

Then, each in its own fresh subprocess:

  ingest  `python3 -m tokentrail ingest ENVOY IDP --db CASE --quiet`, into a fresh case
  scan    `python3 -m tokentrail scan --db CASE --format json -o OUT --fail-on none -q`
  split   the library steps one by one with timers (lineage statements, classify, each rule's
          SQL, the findings' detail/evidence lookups); --no-split skips it

and prints events, both times, their ratio (target: scan <= ingest), both peak RSS values
(target <= 1024 MiB), the findings by rule and the split. Times are wall-clock times of the
whole child (interpreter start and imports included); peak RSS is each child's own ru_maxrss
via os.wait4. The parent never imports duckdb or tokentrail (see bench_ingest.py).

A benchmark, not a test: it asserts nothing and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import (  # noqa: E402  (bench/ is not a package)
    REPO,
    RSS_TARGET_MIB,
    START_EPOCH,
    USER_AGENTS,
    WORKLOADS,
    Run,
    _fill,
    _rss_mib,
    child_env,
    fail,
    human_bytes,
    run_child,
    write_json,
)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT_EVENTS = 10_000_000
RATIO_TARGET = 1.0

# Mesh requests per token (each token is used ~this often in the 15 minutes after issue), and
# the expected lines per request / IdP events per token, to size the data to about N events.
USES_PER_TOKEN = 16
LINES_PER_REQUEST = 1.222  # 1 + gateway hops (~21.7 %) + 503 retries (0.5 %) + incidents
IDP_PER_TOKEN = 1.02  # issue / exchange / refresh, + 2 % revocations, + refresh replays

ORCH_SPIFFE = "spiffe://acme.example/ns/agents/sa/orchestrator"
GATEWAY_SPIFFE = "spiffe://acme.example/ns/istio-system/sa/acme-gateway"
MCP_SPIFFE = "spiffe://acme.example/ns/tools/sa/mcp-files"
ISSUER = "https://sso.acme.example/realms/acme"
APIS = ("code-api", "research-api", "files-api", "tasks-api", "billing-api", "search-api",
        "orders-api", "artifacts", "users-api", "inventory-api")
PARTNERS = ("globex-sync", "initech-etl", "umbrella-reports", "hooli-crm", "soylent-billing",
            "vehement-ci", "massive-dyn", "wonka-supply")
CHILD_SCOPES = ("openid profile", "repo:read repo:write", "files:read", "docs:read search",
                "orders:read orders:write", "billing:read", "tasks:write", "artifacts:write")
ORCH_SCOPE = ("openid profile agents:delegate repo:read repo:write files:read docs:read search "
              "orders:read orders:write billing:read tasks:write artifacts:write")
EXTERNAL_NETS = ("203.0.113.", "192.0.2.", "198.18.7.")  # three networks (TT015 compares /24s)
THIEF_UAS = ("curl/8.9.1", "python-requests/2.32.3", "Go-http-client/1.1")

# ---------------------------------------------------------------------------------------
# The generator (a child process; same approach as bench_ingest.py: DuckDB builds every line
# as text, one thread, so the same N always gives the same bytes).
#
# Tokens (T = requests / 16), by flavour:
#   orch     every 20th token: the orchestrator's own token (tasks-api), the subject token of
#            the next delegated tokens; 0.5 % of them DPoP-bound (their exchanges drop it: TT006)
#   partner  3 %: issued to one of 8 partner clients at its public address, presented from
#            there through the ingress gateway (owner by address)
#   act      20 %: minted by a logged token exchange of the orchestrator's token, act chain
#            [sub-agent, orchestrator], presented by the sub-agent (delegate); 0.5 % of the
#            exchanges add a scope (TT010)
#   dpop     10 %: cnf.jkt, every use with a DPoP proof from the owner's key
#   plain    the rest; 10 % of them obtained by a refresh grant (0.5 % of those refresh tokens
#            redeemed again from outside: TT009; 1 % logged twice for one request: benign);
#            0.05 % with a 7-day lifetime (TT012); 0.1 % presented by a client that logs the
#            raw Authorization header (TT013)
#   2 % of tokens are revoked a minute after their last ordinary use (benign)
# Requests (R ~ N / 1.29), each by the token's owner (3 replicas, own certificates) unless an
# incident says otherwise; 1 % health checks without a token; status mix as bench_ingest.py.
#   k=0  the request as first logged (API gateway with the workload as peer, the ingress with
#        the partner's address, or the API's sidecar)
#   k=1  gateway hop: 20 % of mesh requests and every partner request (not 401s) are logged
#        again by the API's sidecar with the gateway's SPIFFE id as peer, same request id,
#        path and trace, no DPoP proof (transport)
#   k=2  a 503 is retried 250 ms later: same request id and same DPoP proof (benign)
#   k=3..5 incidents, by a hash of the request:
#        fwd         another mesh workload presents the token at its own API (TT001, TT003)
#        ext / ext3  replay from an external address; ext3 from three networks (TT004,
#                    TT014, TT015)
#        mcp         mcp-files presents a delegated token (aud includes mcp-files) at
#                    storage-api (TT002)
#        late_exp    the owner presents the token 10 min after exp (TT008); near_exp 30 s
#                    after (within the clock skew: benign)
#        late_rev    a revoked token presented from outside 10 min after revocation (TT007)
#        dpop_bearer a DPoP-bound token sent as Bearer from outside (TT005)
#        dpop_replay a DPoP proof replayed from outside on a new request (TT017)

TOKENS_SQL = r"""
CREATE TEMP TABLE bt AS
WITH a AS (
  SELECT t, CAST(hash(t, 'kind') % 10000 AS INTEGER) AS tk,
         CAST(hash(t, 'owner') % {W} AS INTEGER) AS w,
         md5(CAST(t AS VARCHAR) || 'jti') AS jh,
         CAST({START} + (t * 86400) // {T} AS BIGINT) AS iat
  FROM range({T}) r(t)
), b AS (
  SELECT *,
         CASE WHEN t % 20 = 0 THEN 'orch' WHEN tk < 300 THEN 'partner' WHEN tk < 2300 THEN 'act'
              WHEN tk < 3300 THEN 'dpop' ELSE 'plain' END AS flavour,
         (t // 20) * 20 AS parent_t
  FROM a
), c AS (
  SELECT *,
         CASE flavour WHEN 'orch' THEN 'orchestrator' WHEN 'partner' THEN ({PARTNERS})[1 + w % 8]
              ELSE 'svc-' || w END AS client,
         CASE flavour WHEN 'orch' THEN {W} WHEN 'partner' THEN -1 ELSE w END AS hw,
         CASE flavour WHEN 'orch' THEN 'tasks-api' WHEN 'partner' THEN 'partner-api'
              ELSE ({APIS})[1 + w % 10] END AS api,
         substr(jh, 1, 8) || '-' || substr(jh, 9, 4) || '-4' || substr(jh, 14, 3) || '-a'
           || substr(jh, 18, 3) || '-' || substr(jh, 21, 12) AS jti,
         CASE flavour WHEN 'orch' THEN '{ORCH_SCOPE}' WHEN 'partner' THEN 'partner:read partner:write'
              ELSE ({CHILD_SCOPES})[1 + CAST(hash(t, 'sc') % 8 AS INTEGER)]
                   || CASE WHEN flavour = 'act' AND hash(t, 'widen') % 200 = 0 THEN ' admin:write'
                           ELSE '' END END AS scope,
         CASE WHEN flavour = 'orch' THEN 3600 WHEN flavour = 'act' THEN 1800
              WHEN flavour = 'dpop' THEN 900
              WHEN flavour = 'plain' AND hash(t, 'long') % 2000 = 0 THEN 604800 ELSE 3600 END
           AS lifetime,
         CASE WHEN flavour = 'dpop' THEN {B64:unhex(sha256('jkt' || w))}
              WHEN flavour = 'orch' AND hash(t, 'obound') % 200 = 0
              THEN {B64:unhex(sha256('jkt-orchestrator'))} END AS jkt,
         flavour = 'plain' AND hash(t, 'refresh') % 10 = 0 AS refreshed,
         flavour <> 'orch' AND hash(t, 'revoke') % 50 = 0 AS revoked,
         flavour = 'plain' AND hash(t, 'raw') % 1000 = 0 AS raw_logged,
         CASE WHEN flavour = 'partner' THEN '198.51.100.' || (10 + w % 8) END AS partner_ip
  FROM b
), d AS (
  SELECT c.*, iat + lifetime AS exp,
         iat + 960 + CAST(hash(t, 'rvt') % 60 AS BIGINT) AS revoke_at,
         CASE WHEN flavour IN ('orch', 'act', 'plain') THEN 'user-' || (t % 5000)
              ELSE 'service-account-' || client END AS sub,
         'spiffe://acme.example/ns/' || (['agents', 'tools', 'apps', 'payments', 'data', 'ci'])[1 + w % 6]
           || '/sa/svc-' || w AS owner_spiffe
  FROM c
)
SELECT d.*,
       CASE flavour WHEN 'act' THEN '["' || api || '","mcp-files"]'
            WHEN 'orch' THEN '["orchestrator","tasks-api"]' ELSE '["' || api || '"]' END AS aud_json,
       '["' || replace(scope, ' ', '","') || '"]' AS scopes_json,
       '{' || CASE WHEN flavour = 'act'
                   THEN '"act":{"act":{"sub":"{ORCH_SPIFFE}"},"sub":"' || owner_spiffe || '"},' ELSE '' END
           || '"aud":' || CASE WHEN flavour IN ('act', 'orch') THEN
                                CASE flavour WHEN 'act' THEN '["' || api || '","mcp-files"]'
                                     ELSE '["orchestrator","tasks-api"]' END
                               ELSE '"' || api || '"' END
           || ',"azp":"' || client || '"'
           || CASE WHEN jkt IS NOT NULL THEN ',"cnf":{"jkt":"' || jkt || '"}' ELSE '' END
           || ',"exp":' || exp || ',"iat":' || iat || ',"iss":"{ISSUER}","jti":"' || jti
           || '","scope":"' || scope || '","sub":"' || sub || '"'
           || CASE WHEN jkt IS NOT NULL THEN ',"typ":"DPoP"' ELSE '' END || '}' AS claims,
       '"' || {B64:unhex(sha256(jti || 'raw'))} || '"' AS token_fp_q,
       '"' || api || '.acme.example"' AS authority_q,
       '"outbound|8080||' || api || '.apps.svc.cluster.local"' AS cluster_q
FROM d ORDER BY t
"""

# claims -> a fake JWT for the raw Authorization header (TT013); kept apart: only 0.1 % need it
JWT_EXPR = ("'eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoIiwidHlwIjoiSldUIn0.' || {B64:encode(claims)} "
            "|| '.' || {B64:unhex(sha256(jti) || md5(jti))}")

HOLDERS_SQL = r"""
CREATE TEMP TABLE bh AS
SELECT w * 3 + pod AS hk, spiffe,
       '"' || sha256(spiffe || '#' || pod) || '"' AS fp_q,
       '10.' || (40 + w // 250) || '.' || (w % 250) || '.' || (10 + pod) AS ip
FROM (SELECT w, CASE WHEN w < {W} THEN 'spiffe://acme.example/ns/'
                          || (['agents', 'tools', 'apps', 'payments', 'data', 'ci'])[1 + w % 6]
                          || '/sa/svc-' || w
                     WHEN w = {W} THEN '{ORCH_SPIFFE}' WHEN w = {W} + 1 THEN '{GATEWAY_SPIFFE}'
                     ELSE '{MCP_SPIFFE}' END AS spiffe
      FROM range({W} + 3) a(w)), range(3) b(pod)
ORDER BY hk
"""

IDP_SQL = r"""
COPY (
WITH base AS (
  SELECT bt.*, h.ip AS pod_ip,
         hash(bt.t, 'refresh-retry') % 100 = 0 AS refresh_retry,
         bt.refreshed AND hash(bt.t, 'refresh-reuse') % 200 = 0 AS refresh_reuse,
         'rt-' || md5(CAST(bt.t AS VARCHAR) || 'rt') AS rt, p.jti AS parent_jti
  FROM bt LEFT JOIN bh h ON h.hk = bt.hw * 3 LEFT JOIN bt p ON p.t = bt.parent_t
), ev AS (
  -- issuance: issue, exchange (delegated) or refresh
  SELECT iat * 1000000 AS ts_us, 0 AS ord,
         CASE WHEN flavour = 'act' THEN 'exchange' WHEN refreshed THEN 'refresh' ELSE 'issue' END
           AS kind, jti AS tid,
         CASE WHEN flavour = 'act' THEN parent_jti WHEN refreshed THEN rt END AS parent,
         CASE WHEN flavour = 'partner' THEN NULL ELSE client END AS wl,
         coalesce(partner_ip, pod_ip) AS ip, {HEX:hash(t, 'i1')} || {HEX:hash(t, 'i2')} AS rid,
         base.*
  FROM base
  UNION ALL  -- a refresh retried: the same request logged twice (not a reuse)
  SELECT iat * 1000000 + 300000, 1, 'refresh', jti, rt, client, pod_ip,
         {HEX:hash(t, 'i1')} || {HEX:hash(t, 'i2')}, base.*
  FROM base WHERE refreshed AND refresh_retry
  UNION ALL  -- the same refresh token redeemed again, from outside (TT009)
  SELECT (iat + 1200) * 1000000, 2, 'refresh', md5(jti || 'reuse'), rt, NULL,
         '203.0.113.' || (hash(t, 'rx') % 250 + 1), {HEX:hash(t, 'x1')} || {HEX:hash(t, 'x2')},
         base.*
  FROM base WHERE refresh_reuse
  UNION ALL  -- revocation (logout), after the token's last ordinary use
  SELECT revoke_at * 1000000, 3, 'revoke', jti, NULL, client, coalesce(partner_ip, pod_ip),
         {HEX:hash(t, 'v1')} || {HEX:hash(t, 'v2')}, base.*
  FROM base WHERE revoked
)
SELECT concat(
  '{"ts":"', strftime(make_timestamp(ts_us), '%Y-%m-%dT%H:%M:%S.%gZ'),
  '","kind":"', kind, '","outcome":"success","token_id":"', tid, '"',
  CASE WHEN parent IS NOT NULL THEN ',"parent_token_key":"' || parent || '"' ELSE '' END,
  CASE WHEN kind = 'revoke' THEN ''
       ELSE ',"issuer":"{ISSUER}","subject":"' || sub || '","client_id":"' || client
            || '","audience":' || aud_json || ',"scopes":' || scopes_json
            || CASE WHEN flavour = 'act' THEN ',"act_chain":["' || owner_spiffe || '","{ORCH_SPIFFE}"]'
                    ELSE '' END
            || CASE WHEN jkt IS NOT NULL THEN ',"cnf_jkt":"' || jkt || '"' ELSE '' END
            || ',"iat":"' || strftime(make_timestamp(iat * 1000000), '%Y-%m-%dT%H:%M:%SZ')
            || '","exp":"' || strftime(make_timestamp(exp * 1000000), '%Y-%m-%dT%H:%M:%SZ') || '"'
  END,
  CASE WHEN wl IS NOT NULL THEN ',"workload":"client:' || wl || '"' ELSE '' END,
  ',"src_ip":"', ip, '","request_id":"', substr(rid, 1, 8), '-', substr(rid, 9, 4), '-4',
  substr(rid, 14, 3), '-8', substr(rid, 18, 3), '-', substr(rid, 21, 12),
  '","extra":{"realm":"acme","grant_type":"',
  CASE kind WHEN 'exchange' THEN 'urn:ietf:params:oauth:grant-type:token-exchange'
            WHEN 'refresh' THEN 'refresh_token' WHEN 'revoke' THEN 'revocation'
            ELSE 'client_credentials' END,
  '"}}') AS line
FROM ev
ORDER BY ts_us, t, ord
) TO '{OUT}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""

ENVOY_SQL = r"""
COPY (
WITH req AS (
  SELECT r,
         {START}::BIGINT * 1000000 + (r * 86400000000) // {R}
           + CAST(hash(r, 'us') % 1000 AS BIGINT) AS ts_us,
         greatest(0, (r * {T}) // {R} - CAST(hash(r, 'tok') % {LIVE} AS BIGINT)) AS t,
         CAST(hash(r, 'who') % 1000 AS INTEGER) AS who,
         CAST(hash(r, 'st') % 1000 AS INTEGER) AS st,
         CAST(hash(r, 'm') % 100 AS INTEGER) AS m,
         CAST(hash(r, 'pod') % 3 AS INTEGER) AS pod,
         CAST(hash(r, 'hop') % 100 AS INTEGER) AS hp,
         CAST(hash(r, 'inc') % 1000000 AS INTEGER) AS u,
         CAST(hash(r, 'fpq') % 4 AS INTEGER) AS fq
  FROM range({R}) x(r)
), j AS (
  SELECT req.*, tok.* EXCLUDE (t),
         CASE WHEN who < 10 THEN 'health' ELSE flavour END AS fl,
         CASE WHEN st < 880 THEN 200 WHEN st < 920 THEN 201 WHEN st < 935 THEN 204
              WHEN st < 955 THEN 401 WHEN st < 975 THEN 403 WHEN st < 990 THEN 404
              WHEN st < 995 THEN 500 ELSE 503 END AS code,
         CASE WHEN who < 10 THEN NULL
              WHEN flavour = 'dpop' AND u < 150 THEN 'dpop_bearer'
              WHEN flavour = 'dpop' AND u < 300 THEN 'dpop_replay'
              WHEN flavour IN ('plain', 'act', 'orch') AND u < 30 THEN 'fwd'
              WHEN flavour IN ('plain', 'act', 'orch') AND u < 40 THEN 'ext3'
              WHEN flavour IN ('plain', 'act', 'orch') AND u < 55 THEN 'ext'
              WHEN flavour = 'act' AND u < 155 THEN 'mcp'
              WHEN flavour = 'plain' AND u < 75 THEN 'late_exp'
              WHEN flavour = 'plain' AND u < 135 THEN 'near_exp'
              WHEN revoked AND u BETWEEN 1000 AND 2999 THEN 'late_rev'
         END AS inc,
         (w + 1 + CAST(hash(r, 'ow') % ({W} - 1) AS INTEGER)) % {W} AS ow,
         {HEX:hash(r, 'r1')} || {HEX:hash(r, 'r2')} AS rid0,
         {HEX:hash(r, 'tr1')} || {HEX:hash(r, 'tr2')} AS trace0,
         {HEX:hash(r, 'p1')} || {HEX:hash(r, 'p2')} AS proof0
  FROM req JOIN bt tok ON tok.t = req.t
), l1 AS (
  SELECT j.*, k, CASE WHEN k <= 2 THEN 0 ELSE k END AS pk,
         CASE WHEN k = 0 OR k = 2 THEN CASE fl WHEN 'health' THEN 'health' WHEN 'partner' THEN 'partner'
                                               ELSE 'owner' END
              WHEN k = 1 THEN 'gateway'
              WHEN inc = 'fwd' THEN 'other' WHEN inc = 'mcp' THEN 'mcp'
              WHEN inc IN ('late_exp', 'near_exp') THEN 'owner'
              ELSE 'external' END AS role,
         CASE WHEN k = 0 THEN ts_us
              WHEN k = 1 THEN ts_us + 3000 + CAST(hash(r, 'hopd') % 17000 AS BIGINT)
              WHEN k = 2 THEN ts_us + 250000
              WHEN inc = 'fwd' THEN ts_us + 5000000
              WHEN inc IN ('ext', 'ext3') THEN ts_us + 60000000 + (k - 3) * 40000000
              WHEN inc = 'dpop_bearer' THEN ts_us + 90000000
              WHEN inc = 'dpop_replay' THEN ts_us + 30000000
              WHEN inc = 'mcp' THEN ts_us + 2000000
              WHEN inc = 'late_exp' THEN (exp + 600) * 1000000 + CAST(hash(r, 'le') % 1000000 AS BIGINT)
              WHEN inc = 'near_exp' THEN (exp + 30) * 1000000 + CAST(hash(r, 'le') % 1000000 AS BIGINT)
              ELSE (revoke_at + 600) * 1000000 + CAST(hash(r, 'lr') % 1000000 AS BIGINT) END AS line_us
  FROM j, range(6) kk(k)
  WHERE k = 0
     OR (k = 1 AND fl <> 'health' AND code <> 401 AND (fl = 'partner' OR hp < 20))
     OR (k = 2 AND fl <> 'health' AND code = 503)
     OR (k = 3 AND inc IS NOT NULL)
     OR (k IN (4, 5) AND inc = 'ext3')
), l2 AS (
  SELECT l1.*,
         CASE role WHEN 'owner' THEN hw WHEN 'gateway' THEN {W} + 1 WHEN 'mcp' THEN {W} + 2
                   WHEN 'other' THEN ow END AS pw,
         k <= 2 AS same_request,
         CASE WHEN k <= 2 THEN code ELSE 200 END AS status,
         CASE WHEN role = 'external'
              THEN ({EXTERNAL_NETS})[1 + CASE WHEN inc = 'ext3' THEN k - 3
                                              ELSE CAST(hash(r, 'xn') % 3 AS INTEGER) END]
                   || (hash(r, 'xip', k) % 250 + 1) END AS ext_ip,
         CASE WHEN role = 'other' THEN
              CASE WHEN ({APIS})[1 + ow % 10] = api THEN ({APIS})[1 + (ow + 1) % 10]
                   ELSE ({APIS})[1 + ow % 10] END END AS other_api
  FROM l1
), l3 AS (
  SELECT l2.*, h.fp_q, h.spiffe, h.ip AS peer_ip,
         role IN ('owner', 'gateway', 'mcp', 'other') AS mesh,
         jkt IS NOT NULL AND ((role = 'owner' AND status <> 401) OR inc = 'dpop_replay' AND k = 3)
           AS with_proof,
         CASE WHEN same_request THEN rid0 ELSE {HEX:hash(r, k, 'r1')} || {HEX:hash(r, k, 'r2')} END AS rid,
         CASE WHEN same_request THEN trace0 ELSE {HEX:hash(r, k, 't1')} || {HEX:hash(r, k, 't2')} END
           AS trace
  FROM l2 LEFT JOIN bh h ON h.hk = l2.pw * 3 + l2.pod
)
SELECT concat(
  '{"authority":', CASE role WHEN 'other' THEN '"' || other_api || '.acme.example"'
                             WHEN 'mcp' THEN '"storage-api.acme.example"' ELSE authority_q END,
  ',"auth_scheme":', CASE WHEN role = 'health' THEN 'null'
                          WHEN jkt IS NOT NULL AND NOT (k = 3 AND inc = 'dpop_bearer') THEN '"DPoP"'
                          ELSE '"Bearer"' END,
  ',"authorization":', CASE WHEN raw_logged AND k = 0 AND role = 'owner'
                            THEN '"Bearer ' || {JWT} || '"' ELSE 'null' END,
  ',"downstream_peer_fingerprint_256":', CASE WHEN mesh THEN fp_q ELSE 'null' END,
  ',"downstream_peer_uri_san":', CASE WHEN mesh THEN '"' || spiffe || '"' ELSE 'null' END,
  ',"downstream_remote_address":"', CASE WHEN mesh THEN peer_ip WHEN role = 'partner' THEN partner_ip
                                         WHEN role = 'external' THEN ext_ip
                                         ELSE '10.20.0.' || (5 + r % 3) END,
  ':', 32768 + hash(r, k, 'port') % 28000,
  '","dpop_jkt":', CASE WHEN with_proof THEN '"' || jkt || '"' ELSE 'null' END,
  ',"dpop_proof_jti":', CASE WHEN with_proof THEN '"' || proof0 || '"' ELSE 'null' END,
  ',"jwt_payload":', CASE WHEN role = 'health' OR status = 401 THEN 'null' ELSE claims END,
  ',"method":"', (['GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT',
                   'PATCH', 'DELETE'])[1 + (m + pk) % 12],
  '","path":"', CASE WHEN role = 'health' THEN '/healthz/ready'
    WHEN role = 'mcp' THEN '/v1/blobs/' || (hash(r, 'blob') % 100000)
    ELSE '/v1/' || (['repos', 'documents', 'objects', 'tasks', 'invoices', 'search', 'orders',
                     'artifacts', 'users', 'items'])[1 + (CASE WHEN role = 'other' THEN ow ELSE w END) % 10]
         || CASE WHEN m < 40 THEN '/' || (hash(r, pk, 'id') % 100000)
                 WHEN m < 55 THEN '?limit=50&page=' || (hash(r, 'pg') % 20)
                 WHEN m < 70 THEN '/' || (hash(r, pk, 'id') % 100000) || '/history'
                 ELSE '' END END,
  '","protocol":"', CASE WHEN mesh THEN 'HTTP/2' ELSE 'HTTP/1.1' END,
  '","request_id":"', substr(rid, 1, 8), '-', substr(rid, 9, 4), '-4', substr(rid, 14, 3),
  '-b', substr(rid, 18, 3), '-', substr(rid, 21, 12),
  '","response_code":', status,
  ',"response_flags":"', CASE status WHEN 503 THEN 'UF' ELSE '-' END,
  '","route_name":"', CASE WHEN m % 25 = 0 THEN '-' ELSE api END,
  '","start_time":"', strftime(make_timestamp(line_us), '%Y-%m-%dT%H:%M:%S.%gZ'),
  '","token_fp":', CASE WHEN role <> 'health' AND (fq = 0 OR status = 401) THEN token_fp_q
                        ELSE 'null' END,
  ',"traceparent":"00-', trace, '-', {HEX:hash(r, k, 's')}, '-01"',
  ',"upstream_cluster":', cluster_q,
  ',"upstream_host":"', CASE WHEN status IN (401, 403) THEN '-'
                             ELSE '10.60.' || (w % 250) || '.' || (hash(r, 'up') % 3 + 10)
                                  || ':8080' END,
  '","user_agent":', CASE role WHEN 'health' THEN '"ELB-HealthChecker/2.0"'
                               WHEN 'partner' THEN '"' || client || '/3.4.1 okhttp/4.12.0"'
                               WHEN 'external' THEN '"' || ({THIEF_UAS})[1 + (r + k) % 3] || '"'
                               WHEN 'mcp' THEN '"mcp-files/0.9.1 undici/6.19.8"'
                               WHEN 'other' THEN ({UAS})[1 + ow % 12]
                               ELSE CASE WHEN fl = 'partner' THEN '"' || client || '/3.4.1 okhttp/4.12.0"'
                                         ELSE ({UAS})[1 + (hw % 12)] END END,
  ',"x_forwarded_for":', CASE WHEN role = 'external' THEN '"' || ext_ip || '"'
                              WHEN fl = 'partner' THEN '"' || partner_ip || '"'
                              WHEN role = 'health' THEN '"-"' ELSE 'null' END,
  '}') AS line
FROM l3
ORDER BY line_us, r, k
) TO '{OUT}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""


def _salted(sql: str) -> str:
    """hash(x, 'salt') -> hash(concat_ws('|', x, 'salt')). DuckDB combines the hashes of
    several arguments so that the low bits of one row's hashes agree across salts (two
    conditions `% 10 = 0` and `% 200 = 0` held together twice as often as chance); hashing the
    joined text keeps the flags independent, so the documented rates hold."""
    return re.sub(r"hash\(([^()']+?), '([^']+)'\)", r"hash(concat_ws('|', \1, '\2'))", sql)


def _list(values: tuple[str, ...], quoted: bool = False) -> str:
    q = '"' if quoted else ""
    return "[" + ", ".join(f"'{q}{v}{q}'" for v in values) + "]"


def sizes(events: int) -> tuple[int, int]:
    """(requests, tokens) for about `events` events in all."""
    requests = max(USES_PER_TOKEN * 100,
                   round(events / (LINES_PER_REQUEST + IDP_PER_TOKEN / USES_PER_TOKEN)))
    return requests, requests // USES_PER_TOKEN


def data_dir(events: int) -> Path:
    return DATA / f"scan-{events}"


def data_files(events: int) -> list[Path]:
    d = data_dir(events)
    return [d / "envoy-mesh-access.jsonl", d / "idp-tokentrail.jsonl"]


def generate(events: int, out_dir: Path) -> None:
    """Runs in a child process: write both files into out_dir, atomically (a temp dir)."""
    import duckdb

    requests, tokens = sizes(events)
    values: dict[str, object] = {
        "R": requests, "T": tokens, "LIVE": max(1, tokens * 900 // 86400), "W": WORKLOADS,
        "START": START_EPOCH, "ORCH_SPIFFE": ORCH_SPIFFE, "GATEWAY_SPIFFE": GATEWAY_SPIFFE,
        "MCP_SPIFFE": MCP_SPIFFE, "ISSUER": ISSUER, "ORCH_SCOPE": ORCH_SCOPE,
        "APIS": _list(APIS), "PARTNERS": _list(PARTNERS), "CHILD_SCOPES": _list(CHILD_SCOPES),
        "EXTERNAL_NETS": _list(EXTERNAL_NETS), "THIEF_UAS": _list(THIEF_UAS),
        "UAS": _list(USER_AGENTS, quoted=True),
    }
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".partial-", dir=out_dir.parent))
    envoy, idp = (tmp / p.name for p in data_files(events))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET threads = 1")  # keeps the output in a deterministic order
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET memory_limit = '4GB'")  # the final ORDER BY spills instead of growing
    con.execute(f"SET temp_directory = '{tmp}/spill'")
    con.execute(_salted(_fill(TOKENS_SQL, values)))
    con.execute(_salted(_fill(HOLDERS_SQL, values)))
    con.execute(_salted(_fill(IDP_SQL, {**values, "OUT": str(idp).replace("'", "''")})))
    envoy_sql = ENVOY_SQL.replace("{JWT}", JWT_EXPR)
    con.execute(_salted(_fill(envoy_sql, {**values, "OUT": str(envoy).replace("'", "''")})))
    con.close()
    shutil.rmtree(tmp / "spill", ignore_errors=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


# ---------------------------------------------------------------------------------------
# children

COUNT_CODE = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET enable_progress_bar = false")
print(*con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rejects)").fetchone())
"""

# The library steps of analyse() one by one, with timers. Wraps the rule runner's helpers
# (module globals, looked up at call time) to split each rule's SQL from the per-finding
# queries; edits nothing.
SPLIT_CODE = r"""
import json, sys, time
from tokentrail.case.store import Case
from tokentrail import lineage
from tokentrail.analyse import install_policy
from tokentrail.provenance.classify import classify
from tokentrail.rules import load_rules, runner

out = {"steps": {}, "rules": {}, "per_finding": {"lookups": 0.0}}
clock = time.perf_counter

def step(name, fn):
    t0 = clock()
    result = fn()
    out["steps"][name] = clock() - t0
    return result

orig_hits, orig_lookups = runner._hits, runner._lookups

def hits(con, rule):
    t0 = clock()
    rows = orig_hits(con, rule)
    out["rules"][rule.id] = {"sql": clock() - t0, "hits": len(rows)}
    return rows

def lookups(*a, **k):
    t0 = clock()
    try:
        return orig_lookups(*a, **k)
    finally:
        out["per_finding"]["lookups"] += clock() - t0

runner._hits, runner._lookups = hits, lookups
start = clock()
with Case(sys.argv[1]) as case:
    con = case.con
    out["open"] = clock() - start
    policy_sql = step("policy", lambda: install_policy(con, None))
    statements = [(n, getattr(lineage, n, None)) for n in
                  ("ALIAS_SQL", "TOKENS_SQL", "LINKS_SQL", "TOKEN_HOLDERS_SQL")]
    if all(sql for _, sql in statements):
        for name, sql in statements:
            step("lineage." + name[:-4].lower(), lambda sql=sql: con.execute(sql))
    else:  # build_lineage changed shape: time it whole
        step("lineage", lambda: lineage.build_lineage(con))
    step("classify", lambda: classify(con, policy_sql))
    rules = load_rules()
    findings = step("rules", lambda: runner.run_rules(con, rules))
    out["findings"] = len(findings)
    out["tokens"], out["pairs"] = con.execute(
        "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM token_holders)").fetchone()
    out["classes"] = dict(con.execute(
        "SELECT classification, count(*) FROM token_holders GROUP BY 1 ORDER BY 2 DESC").fetchall())
out["total"] = clock() - start
print(json.dumps(out))
"""


def parse_scan(path: Path) -> tuple[dict[str, int], int]:
    """Findings by rule, and the case's token count, from `scan --format json` output."""
    payload = json.loads(path.read_bytes())
    by_rule: dict[str, int] = {}
    for f in payload.get("findings", []):
        by_rule[f.get("rule", "?")] = by_rule.get(f.get("rule", "?"), 0) + 1
    return dict(sorted(by_rule.items())), int(payload.get("case", {}).get("tokens") or 0)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(rows: list[tuple[str, str, str]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'metric':<{w0}}  {'value':>{w1}}  note")
    print(f"{'-' * w0}  {'-' * w1}  ----")
    for name, value, note in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {note}".rstrip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                    help=f"about this many events in all (default {DEFAULT_EVENTS:,})")
    ap.add_argument("--regenerate", action="store_true",
                    help="write the data files again even if they exist")
    ap.add_argument("--keep", action="store_true",
                    help="keep the case database and the scan output (printed paths)")
    ap.add_argument("--no-split", action="store_true",
                    help="skip the third child that times lineage / classify / rules apart")
    ap.add_argument("--json", metavar="FILE",
                    help="also write the measurements as JSON to FILE (bench/run_all.py reads it)")
    ap.add_argument("--generate-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.events < 1000:
        ap.error("--events must be at least 1000")

    if args.generate_only:
        generate(args.events, Path(args.generate_only))
        return 0

    DATA.mkdir(parents=True, exist_ok=True)
    files = data_files(args.events)
    env = child_env()
    if args.regenerate or not all(f.exists() for f in files):
        print(f"generating about {args.events:,} events -> "
              f"{data_dir(args.events).relative_to(REPO)}/ ...", file=sys.stderr, flush=True)
        gen = run_child([sys.executable, str(Path(__file__).resolve()), "--events",
                         str(args.events), "--generate-only", str(data_dir(args.events))], env)
        if gen.returncode != 0:
            fail("generating the data", gen)
        print(f"generated in {gen.seconds:.1f} s", file=sys.stderr, flush=True)
    else:
        print(f"reusing {data_dir(args.events).relative_to(REPO)}/", file=sys.stderr, flush=True)
    size = sum(f.stat().st_size for f in files)

    work = Path(tempfile.mkdtemp(prefix="scan-run-", dir=DATA))
    split: dict | None = None
    try:
        case_db = work / "case.duckdb"
        out_json = work / "findings.json"
        print("ingest ...", file=sys.stderr, flush=True)
        ingest = run_child([sys.executable, "-m", "tokentrail", "ingest", *map(str, files),
                            "--db", str(case_db), "--quiet"], env)
        if ingest.returncode != 0:
            fail("tokentrail ingest", ingest)
        counted = run_child([sys.executable, "-c", COUNT_CODE, str(case_db)], env)
        if counted.returncode != 0:
            fail("counting the case", counted)
        n_events, n_rejects = (int(x) for x in counted.stdout.split()[-2:])

        print("scan ...", file=sys.stderr, flush=True)
        scan = run_child([sys.executable, "-m", "tokentrail", "scan", "--db", str(case_db),
                          "--format", "json", "-o", str(out_json), "--fail-on", "none", "-q"], env)
        if scan.returncode != 0:
            fail("tokentrail scan", scan)
        by_rule, n_tokens = parse_scan(out_json)

        split_run: Run | None = None
        if not args.no_split:
            print("split (library steps with timers) ...", file=sys.stderr, flush=True)
            split_run = run_child([sys.executable, "-c", SPLIT_CODE, str(case_db)], env)
            if split_run.returncode != 0:
                fail("split", split_run)
            split = json.loads(split_run.stdout.strip().splitlines()[-1])
        all_children = _rss_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        case_size = case_db.stat().st_size
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ratio = scan.seconds / ingest.seconds if ingest.seconds else float("inf")
    n_findings = sum(by_rule.values())
    rows = [
        ("events", f"{n_events:,}", f"{n_rejects:,} rejects; {n_tokens:,} tokens; "
                                    f"{len(files)} files, {human_bytes(size)}"),
        ("ingest", f"{ingest.seconds:.2f} s", f"{n_events / ingest.seconds:,.0f} events/s"),
        ("scan (lineage+classify+rules)", f"{scan.seconds:.2f} s",
         "CLI: open case, analyse, JSON out"),
        ("ratio scan/ingest", f"{ratio:.2f}", f"target <= {RATIO_TARGET} {verdict(ratio <= RATIO_TARGET)}"),
        ("ingest peak RSS", f"{ingest.maxrss_mib:.0f} MiB",
         f"target <= {RSS_TARGET_MIB} {verdict(ingest.maxrss_mib <= RSS_TARGET_MIB)}"),
        ("scan peak RSS", f"{scan.maxrss_mib:.0f} MiB",
         f"target <= {RSS_TARGET_MIB} {verdict(scan.maxrss_mib <= RSS_TARGET_MIB)}"),
        ("findings", f"{n_findings:,}", " ".join(f"{k}:{v}" for k, v in by_rule.items())),
        ("case size on disk", human_bytes(case_size), ""),
    ]
    print_table(rows)

    if split is not None and split_run is not None:
        steps = split["steps"]
        rules_t = sum(r["sql"] for r in split["rules"].values())
        per = split["per_finding"]
        lineage_t = sum(v for k, v in steps.items() if k.startswith("lineage"))
        print(f"\nsplit (third child, library calls; {split_run.seconds:.2f} s wall, "
              f"peak RSS {split_run.maxrss_mib:.0f} MiB; {split['tokens']:,} tokens, "
              f"{split['pairs']:,} (token, holder) pairs)")
        srows = [("lineage", f"{lineage_t:.2f} s", "")]
        srows += [("  " + k.split(".", 1)[1], f"{v:.2f} s", "")
                  for k, v in steps.items() if k.startswith("lineage.")]
        srows.append(("classify", f"{steps['classify']:.2f} s",
                      " ".join(f"{k}:{v}" for k, v in split["classes"].items())))
        srows.append(("rules", f"{steps['rules']:.2f} s", f"{split['findings']:,} findings"))
        srows.append(("  rule SQL (17 queries)", f"{rules_t:.2f} s", ""))
        srows.append(("  finding details + evidence", f"{per['lookups']:.2f} s",
                      "4 set-based queries for all findings"))
        other = steps["rules"] - rules_t - per["lookups"]
        srows.append(("  inserts + Python", f"{other:.2f} s", "one executemany INSERT"))
        srows.append(("open case + policy", f"{split['open'] + steps['policy']:.2f} s", ""))
        print_table(srows)
        slow = sorted(split["rules"].items(), key=lambda kv: -kv[1]["sql"])[:5]
        print("slowest rule SQL: " + ", ".join(f"{k} {v['sql']:.2f} s ({v['hits']} hits)"
                                                for k, v in slow))
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"largest child RSS (RUSAGE_CHILDREN) {all_children:.0f} MiB")
    if args.json:
        write_json(args.json, {
            "events": n_events, "bytes": size, "ingest_s": ingest.seconds,
            "ingest_rss_mib": ingest.maxrss_mib, "scan_s": scan.seconds,
            "scan_rss_mib": scan.maxrss_mib, "ratio": ratio, "findings": n_findings,
            "findings_by_rule": by_rule})
    return 0


if __name__ == "__main__":
    sys.exit(main())
