"""The case schema: column names and types that mappings, rules and exports depend on.

Kept as data so the mapping compiler can check a mapping's column names, the migrations can
create the tables, and docs can list the columns, all from one definition.
"""

from __future__ import annotations

# Columns of `events`, in table order. The mapping compiler fills every one of these.
EVENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("event_id", "VARCHAR", "stable id: <source_id>:<line>"),
    ("source_id", "VARCHAR", "the file this record came from (sources.source_id)"),
    ("line", "BIGINT",
     "line in the file (JSON Lines) or record number (JSON array, wrapper, nested envelope)"),
    ("ts", "TIMESTAMPTZ", "when it happened, UTC"),
    ("format", "VARCHAR", "the mapping that read it"),
    ("kind", "VARCHAR", "issue exchange refresh revoke use introspect login other; deny = a "
                        "presentation refused (authentication or authorisation)"),
    ("outcome", "VARCHAR", "success or failure"),
    ("token_key", "VARCHAR", "join key: the token's own id, else fp:<token_fp>"),
    ("token_fp", "VARCHAR", "base64url SHA-256 of the raw token (= DPoP ath)"),
    ("token_id", "VARCHAR", "issuer's id: jti, uti, Okta AT..., AWS ASIA..., K8s credential JTI"),
    ("parent_token_key", "VARCHAR", "token this one was exchanged/refreshed/chained from, or the "
                                    "credential presented to obtain it"),
    ("issuer", "VARCHAR", "iss, realm or authorization server"),
    ("subject", "VARCHAR", "whose authority the token carries"),
    ("client_id", "VARCHAR", "client the token was issued to (azp/client_id/cid/appid)"),
    ("audience", "VARCHAR[]", "aud"),
    ("scopes", "VARCHAR[]", "scope/scp"),
    ("act_chain", "VARCHAR[]", "RFC 8693 act.sub chain, current actor first"),
    ("cnf_jkt", "VARCHAR", "DPoP key the token is bound to"),
    ("cnf_x5t", "VARCHAR", "certificate the token is bound to (x5t#S256)"),
    ("auth_scheme", "VARCHAR", "Bearer, DPoP, Basic ... as presented"),
    ("proof_jkt", "VARCHAR", "thumbprint of the key that signed a valid DPoP proof"),
    ("proof_jti", "VARCHAR", "jti of the DPoP proof"),
    ("peer_x5t", "VARCHAR", "client certificate of the presenting connection, base64url"),
    ("peer_spiffe", "VARCHAR", "SPIFFE ID of the verified mTLS peer"),
    ("holder_id", "VARCHAR", "who presented (or received) the token, strongest evidence"),
    ("holder_tier", "VARCHAR", "spiffe mtls dpop workload network"),
    ("host", "VARCHAR", "host or node the event names"),
    ("pod", "VARCHAR", "pod (namespace/name) the token is bound to or the event names"),
    ("agent", "VARCHAR", "AI agent id from the agent's own telemetry"),
    ("src_ip", "VARCHAR", "network address of the caller"),
    ("user_agent", "VARCHAR", "user agent of the caller"),
    ("session_id", "VARCHAR", "IdP session / sid"),
    ("request_id", "VARCHAR", "request id (retries share it)"),
    ("trace_id", "VARCHAR", "W3C trace id"),
    ("resource", "VARCHAR", "service or API the event is about"),
    ("method", "VARCHAR", "HTTP method or API action"),
    ("path", "VARCHAR", "request path (query string redacted)"),
    ("status", "INTEGER", "HTTP status or equivalent"),
    ("error", "VARCHAR", "error code or reason"),
    ("iat", "TIMESTAMPTZ", "token issued at"),
    ("nbf", "TIMESTAMPTZ", "token not before"),
    ("exp", "TIMESTAMPTZ", "token expires"),
    ("claims_verified", "BOOLEAN", "claims come from a verifier (true) or were decoded unverified"),
    ("raw_token_logged", "BOOLEAN", "the log line held a raw token (fingerprinted and dropped)"),
    ("extra", "JSON", "format-specific fields, token-redacted"),
)

EVENT_COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in EVENT_COLUMNS)

# Columns computed by the database from others (never written by ingest). A virtual column
# costs nothing to store: a unique string per row is the most expensive thing to compress.
VIRTUAL_COLUMNS: dict[str, str] = {
    "event_id": "source_id || ':' || CAST(line AS VARCHAR)",
}
STORED_COLUMN_NAMES: tuple[str, ...] = tuple(
    c for c in EVENT_COLUMN_NAMES if c not in VIRTUAL_COLUMNS
)

# Inputs a mapping may set that are not stored: the engine turns them into stored columns.
PSEUDO_COLUMNS: dict[str, str] = {
    "raw_token": "a raw token or Authorization header value: fingerprinted, decoded, dropped",
    "claims": "a JSON object of token claims (e.g. a verifier's decoded payload)",
    "workload": "attested caller identity (client:<id>, k8s:<ns>/<pod>, aws:<instance>)",
}

# Columns the engine derives; a mapping may still set them to override the derivation.
DERIVED_COLUMNS = ("event_id", "source_id", "line", "format", "token_key", "holder_id",
                   "holder_tier", "raw_token_logged")

KINDS = ("issue", "exchange", "refresh", "revoke", "use", "deny", "introspect", "login", "other")
HOLDER_TIERS = ("spiffe", "mtls", "dpop", "workload", "network")
