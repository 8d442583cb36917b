"""Agents as holders: an AI agent's own telemetry names the caller of a gateway request.

A gateway logs the W3C trace id (`trace_id`) and the traceparent's parent-id, the span id of
the caller's client span (`extra.caller_span_id`). Telemetry (a mapping that sets
`extra.signal` to `span` or `log`, like `otel`) carries the same trace id, its span id
(`extra.span_id`, `extra.parent_span_id`, `extra.span_kind`) and, on an agent's own spans and
logs, `agent` (`gen_ai.agent.id`). A presentation at the gateway whose trace and caller span
are one of agent X's spans was made by X: its holder becomes `agent:X` (tier `workload`). So
is a token-bearing span of X's own process that does not name X itself.

What must not happen, and how it is kept from happening:

- Stronger evidence is never replaced: only presentations whose holder is network-tier (an
  address) or unknown are attributed. SPIFFE, mTLS, DPoP and an authenticated client
  (`client:<id>`) stay, whatever the traces say.
- The agent an `invoke_agent` client span calls, and the agent a server span belongs to, did
  not make that call (the ingest mapping keeps those out of `agent`; what the server's process
  does next, below the server span, it does as the agent that received the call). The walk
  to ancestors stops at a server span: its parent is in another process.
- A span says where it went: a caller span whose `resource` (server.address / URL host) is
  not the gateway request's authority is not evidence for it. A traceparent forwarded
  verbatim by another service to another API therefore does not borrow the agent's name.
- A span is a moment: the request must fall inside the span (start - skew, end + skew).
- One span makes one request from one place: presentations with the same caller span from
  a different source address than the first one are not attributed.
- Without a caller span id the trace alone is used only when, around that time, exactly one
  agent and one instrumented service appear in the trace (nothing else in it could be the
  caller that telemetry would show).

Spans without `gen_ai.agent.id` (an HTTP client span under the agent's invoke_agent span)
take the agent of their nearest ancestor emitted by the same service (same service name,
namespace, instance, pod and host), through a recursive equi-join on (trace_id, span_id).

Set-based SQL over the whole case; when no event names an agent it is two cheap scans.
The change to `events` is recorded in `holder_attribution` (with the holder it replaced and
the evidence) and undone at the start of the next build, so a scan stays a function of the
ingested events.
"""

from __future__ import annotations

import duckdb

DEFAULT_SKEW_SECONDS = 120
MAX_DEPTH = 32  # ancestor steps searched for a span's agent
PRESENTATION_KINDS = "('use', 'deny')"

_ATTRIBUTION_COLUMNS = """
    source_id VARCHAR, line BIGINT, event_id VARCHAR, holder_id VARCHAR, holder_tier VARCHAR,
    prev_holder_id VARCHAR, prev_holder_tier VARCHAR, agent VARCHAR, method VARCHAR,
    span_event_id VARCHAR, agent_event_id VARCHAR, trace_id VARCHAR, span_id VARCHAR,
    evidence VARCHAR
"""

RESTORE_SQL = """
UPDATE events SET holder_id = a.prev_holder_id, holder_tier = a.prev_holder_tier
FROM holder_attribution a
WHERE events.source_id = a.source_id AND events.line = a.line
  AND events.holder_id IS NOT DISTINCT FROM a.holder_id
"""

# The spans (and log records, which name the span they were written in) of traces in which
# some event names an agent, and the other events of those traces.
NODES_SQL = """
CREATE OR REPLACE TEMP TABLE _tt_agent_traces AS
SELECT DISTINCT trace_id FROM events WHERE agent IS NOT NULL AND trace_id IS NOT NULL;

-- Every event of those traces, once: the JSON in `extra` is read for these rows only.
CREATE OR REPLACE TEMP TABLE _tt_in_traces AS
SELECT e.event_id, e.source_id, e.line, e.trace_id, e.ts, e.kind, e.agent, e.resource,
       e.src_ip, e.holder_id, e.holder_tier, e.pod, e.host, e.extra
FROM events e SEMI JOIN _tt_agent_traces t ON e.trace_id = t.trace_id;

-- Telemetry (a mapping's extra.signal: span or log) names its span; anything else in the
-- trace (gateway, application logs) may name the caller's span (extra.caller_span_id).
CREATE OR REPLACE TEMP TABLE _tt_otel AS
SELECT event_id, source_id, line, trace_id, ts, kind, agent, resource, holder_id, holder_tier,
       span_id, parent_span_id, signal, span_kind, receiving_agent, duration_ms, emitter
FROM (
  SELECT *, extra->>'signal' AS signal, extra->>'span_id' AS span_id,
         extra->>'parent_span_id' AS parent_span_id, extra->>'span_kind' AS span_kind,
         extra->>'receiving_agent' AS receiving_agent,
         TRY_CAST(extra->>'duration_ms' AS DOUBLE) AS duration_ms,
         concat_ws('|', coalesce(extra->>'service_namespace', ''),
                   coalesce(extra->>'service_name', ''),
                   coalesce(extra->>'service_instance_id', ''),
                   coalesce(pod, ''), coalesce(host, '')) AS emitter
  FROM _tt_in_traces
)
WHERE signal IN ('span', 'log') AND span_id IS NOT NULL;

-- One node per span: its parent, kind and time from the span; its agent from the span, else
-- from a log record written in it; a server span's agent is the one that received the call
-- (what its process does next, it does as that agent).
CREATE OR REPLACE TEMP TABLE _tt_nodes AS
SELECT trace_id, span_id, emitter,
       min(parent_span_id) FILTER (WHERE signal = 'span') AS parent_span_id,
       min(span_kind) FILTER (WHERE signal = 'span') AS span_kind,
       min(resource) FILTER (WHERE signal = 'span') AS resource,
       coalesce(min(ts) FILTER (WHERE signal = 'span'), min(ts)) AS ts_start,
       coalesce(max(ts + to_microseconds(CAST(coalesce(duration_ms, 0) * 1000 AS BIGINT)))
                FILTER (WHERE signal = 'span'), max(ts)) AS ts_end,
       coalesce(arg_min(coalesce(agent, receiving_agent), event_id)
                    FILTER (WHERE signal = 'span' AND coalesce(agent, receiving_agent) IS NOT NULL),
                arg_min(agent, event_id) FILTER (WHERE agent IS NOT NULL)) AS agent,
       coalesce(arg_min(event_id, event_id)
                    FILTER (WHERE signal = 'span' AND coalesce(agent, receiving_agent) IS NOT NULL),
                arg_min(event_id, event_id) FILTER (WHERE agent IS NOT NULL)) AS agent_event_id,
       arg_min(event_id, event_id) FILTER (WHERE signal = 'span') AS span_event_id
FROM _tt_otel
GROUP BY trace_id, span_id, emitter;
"""

# Each span's agent: its own, else its nearest ancestor's in the same process. The walk goes
# up from a span only while the current span is not a server / consumer span.
SPAN_AGENT_SQL = f"""
CREATE OR REPLACE TEMP TABLE _tt_span_agent AS
WITH RECURSIVE walk(trace_id, span_id, emitter, up, kind, agent, agent_event_id, depth) AS (
    SELECT trace_id, span_id, emitter, parent_span_id, span_kind, agent, agent_event_id, 0
    FROM _tt_nodes
    UNION ALL
    SELECT w.trace_id, w.span_id, w.emitter, n.parent_span_id, n.span_kind, n.agent,
           n.agent_event_id, w.depth + 1
    FROM walk w
    JOIN _tt_nodes n ON n.trace_id = w.trace_id AND n.span_id = w.up AND n.emitter = w.emitter
    WHERE w.agent IS NULL AND coalesce(w.kind, '') NOT IN ('server', 'consumer')
      AND w.depth < {MAX_DEPTH}
)
SELECT trace_id, span_id, emitter, arg_min(agent, depth) AS agent,
       arg_min(agent_event_id, depth) AS agent_event_id, min(depth) AS depth
FROM walk WHERE agent IS NOT NULL
GROUP BY trace_id, span_id, emitter
"""


def _attribution_sql(skew_seconds: int) -> str:
    skew = f"INTERVAL {int(skew_seconds)} SECOND"
    return f"""
CREATE OR REPLACE TABLE holder_attribution AS
WITH gw AS (
    -- presentations at a gateway (not telemetry) in an agent's trace, holder weaker than
    -- workload
    SELECT source_id, line, event_id, trace_id, ts, resource, src_ip, holder_id, holder_tier,
           extra->>'caller_span_id' AS caller_span_id
    FROM _tt_in_traces
    WHERE kind IN {PRESENTATION_KINDS} AND agent IS NULL
      AND coalesce(holder_tier, 'network') = 'network'
      AND coalesce(extra->>'signal', '') NOT IN ('span', 'log')
), by_span AS (
    SELECT g.*, s.span_id, s.span_event_id, a.agent, a.agent_event_id, a.depth,
           first_value(g.src_ip) OVER (PARTITION BY g.trace_id, g.caller_span_id
                                        ORDER BY g.ts, g.event_id) AS first_src_ip
    FROM gw g
    JOIN _tt_nodes s ON s.trace_id = g.trace_id AND s.span_id = g.caller_span_id
    JOIN _tt_span_agent a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
                         AND a.emitter = s.emitter
    WHERE coalesce(s.span_kind, '') NOT IN ('server', 'consumer')
      AND g.ts BETWEEN s.ts_start - {skew} AND s.ts_end + {skew}
      AND (s.resource IS NULL OR g.resource IS NULL
           OR contains(lower(g.resource), lower(s.resource))
           OR contains(lower(s.resource), lower(g.resource)))
), span_matches AS (
    SELECT source_id, line, event_id, trace_id, holder_id, holder_tier,
           -- one agent (HAVING); of its matching spans, the lowest id and that span's row
           min(agent) AS agent, 'caller_span' AS method,
           min(span_id) AS span_id, arg_min(span_event_id, span_id) AS span_event_id,
           arg_min(agent_event_id, span_id) AS agent_event_id, arg_min(depth, span_id) AS depth
    FROM by_span
    WHERE src_ip IS NOT DISTINCT FROM first_src_ip
    GROUP BY source_id, line, event_id, trace_id, holder_id, holder_tier
    HAVING count(DISTINCT agent) = 1
), trace_matches AS (
    -- no caller span logged: the trace alone, when one agent and one service are all the
    -- telemetry shows in that trace around the request
    SELECT g.source_id, g.line, g.event_id, g.trace_id, g.holder_id, g.holder_tier,
           min(a.agent) AS agent, 'trace_only' AS method,
           CAST(NULL AS VARCHAR) AS span_id, CAST(NULL AS VARCHAR) AS span_event_id,
           min(a.agent_event_id) AS agent_event_id, CAST(NULL AS INTEGER) AS depth
    FROM gw g
    JOIN _tt_nodes s ON s.trace_id = g.trace_id
    LEFT JOIN _tt_span_agent a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
                              AND a.emitter = s.emitter
    WHERE g.caller_span_id IS NULL
      AND s.ts_start <= g.ts + {skew} AND s.ts_end >= g.ts - {skew}
    GROUP BY g.source_id, g.line, g.event_id, g.trace_id, g.holder_id, g.holder_tier
    HAVING count(DISTINCT a.agent) = 1 AND count(DISTINCT s.emitter) = 1
), own_spans AS (
    -- the agent's own client / internal spans that carry a token but do not name the agent
    -- (the agent is named by an ancestor span of the same process, or a log written in it)
    SELECT o.source_id, o.line, o.event_id, o.trace_id, o.holder_id, o.holder_tier,
           a.agent, 'own_span' AS method, o.span_id, o.event_id AS span_event_id,
           a.agent_event_id, a.depth
    FROM _tt_otel o
    JOIN _tt_span_agent a ON a.trace_id = o.trace_id AND a.span_id = o.span_id
                         AND a.emitter = o.emitter
    WHERE o.signal = 'span' AND o.kind IN {PRESENTATION_KINDS} AND o.agent IS NULL
      AND coalesce(o.span_kind, '') NOT IN ('server', 'consumer')
      AND coalesce(o.holder_tier, 'network') = 'network'
), matched AS (
    SELECT * FROM span_matches
    UNION ALL SELECT * FROM trace_matches
    UNION ALL SELECT * FROM own_spans
)
SELECT source_id, line, event_id, 'agent:' || agent AS holder_id, 'workload' AS holder_tier,
       holder_id AS prev_holder_id, holder_tier AS prev_holder_tier, agent, method,
       span_event_id, agent_event_id, trace_id, span_id,
       'agent:' || agent || CASE method
           WHEN 'caller_span' THEN ' made this call: caller span ' || span_id || ' of trace '
                || trace_id || ' is its span (' || span_event_id || ')'
           WHEN 'own_span' THEN ' emitted this span (' || span_event_id || ')'
           ELSE ' is the only agent and service in trace ' || trace_id || ' at that time' END
       || CASE WHEN agent_event_id IS NOT NULL AND agent_event_id IS DISTINCT FROM span_event_id
               THEN '; gen_ai.agent.id from ' || agent_event_id ELSE '' END AS evidence
FROM matched
"""


def _skew_seconds(con: duckdb.DuckDBPyConnection) -> int:
    """The policy's clock skew when a policy is installed (analyse does that first)."""
    try:
        row = con.execute("SELECT value FROM policy_settings WHERE key = 'clock_skew_s'").fetchone()
    except duckdb.CatalogException:
        return DEFAULT_SKEW_SECONDS
    return int(row[0]) if row and row[0] is not None else DEFAULT_SKEW_SECONDS


def attribute_agents(con: duckdb.DuckDBPyConnection) -> int:
    """Undo the previous attribution, attribute again; returns the events attributed.

    Leaves `holder_attribution` (possibly empty) for lineage and reports to join.
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS holder_attribution ({_ATTRIBUTION_COLUMNS})")
    previous = con.execute("SELECT count(*) FROM holder_attribution").fetchone()
    if previous and previous[0]:
        con.execute(RESTORE_SQL)
    agents = con.execute("SELECT count(*) FROM events WHERE agent IS NOT NULL "
                         "AND trace_id IS NOT NULL").fetchone()
    if not agents or not agents[0]:
        if previous and previous[0]:
            con.execute("DELETE FROM holder_attribution")
        return 0
    con.execute(NODES_SQL)
    con.execute(SPAN_AGENT_SQL)
    con.execute(_attribution_sql(_skew_seconds(con)))
    con.execute("""
        UPDATE events SET holder_id = a.holder_id, holder_tier = a.holder_tier
        FROM holder_attribution a
        WHERE events.source_id = a.source_id AND events.line = a.line
    """)
    for table in ("_tt_agent_traces", "_tt_in_traces", "_tt_otel", "_tt_nodes", "_tt_span_agent"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    done = con.execute("SELECT count(*) FROM holder_attribution").fetchone()
    return int(done[0]) if done else 0
