"""Compile a Mapping into DuckDB SQL that reads a whole file in one statement.

The pipeline, as nested SELECTs over one reader:

    reader      (line, raw)            JSON Lines via read_csv, arrays/wrappers via read_json
    parsed      valid? object? -> r    one json_transform per record into the mapping's struct
    mapped      the mapping's column expressions over r (each TRY'd: one odd record never
                fails the file)
    derived     claims decoded once; fingerprint; token_key; holder from the strongest evidence
    checked     _reason: why a record is a reject, NULL for a good event

Good rows go to `events`, the others to `rejects` with a redacted excerpt; raw tokens exist
only inside this statement and are never selected into a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..redact import EXCERPT_CHARS, REDACT_TRIGGER_SQL
from ..schema import EVENT_COLUMNS
from .mapping import Mapping

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 1 << 30

CLAIMS_STRUCT = (
    '{"jti":"VARCHAR","uti":"VARCHAR","iss":"VARCHAR","sub":"VARCHAR","azp":"VARCHAR",'
    '"client_id":"VARCHAR","cid":"VARCHAR","appid":"VARCHAR","aud":"JSON","scope":"JSON",'
    '"scp":"JSON","act":"JSON","cnf":{"jkt":"VARCHAR","x5t#S256":"VARCHAR"},"iat":"DOUBLE","nbf":"DOUBLE",'
    '"exp":"DOUBLE","sid":"VARCHAR"}'
)

# Columns whose text can carry a token (query strings, error messages): always redacted.
_REDACTED_TEXT = ("path", "error", "resource")

_TYPES = {name: typ for name, typ, _ in EVENT_COLUMNS}


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Reader:
    """Where records come from: a container kind and how to read it."""

    path: str
    container: str  # "lines" | "array" | "wrapper"
    compression: str = "none"  # "none" | "gzip"
    wrapper_key: str | None = None
    rejects_table: str = "tt_csv_rejects"
    line_adjust: bool = False  # JSON Lines file whose reader rejected some lines itself

    def lines_sql(self) -> str:
        return (
            f"read_csv({lit(self.path)}, columns={{'raw': 'VARCHAR'}}, delim='\\0', quote='', "
            f"escape='', header=false, auto_detect=false, new_line='\\r\\n', "
            f"strict_mode=false, "
            f"compression={lit(self.compression)}, max_line_size={MAX_LINE_BYTES}, "
            f"store_rejects=true, ignore_errors=true, rejects_table={lit(self.rejects_table)}, "
            f"rejects_scan={lit(self.rejects_table + '_scan')})"
        )

    def sql(self) -> str:
        """SELECT line, raw (VARCHAR) in file order."""
        if self.container == "lines":
            base = f"SELECT row_number() OVER () AS n, raw FROM {self.lines_sql()}"
            if not self.line_adjust:
                return f"SELECT n AS line, raw FROM ({base})"
            # Lines the CSV reader refused (invalid UTF-8, NUL, too long) are missing from its
            # output; shift later rows back to their real line numbers.
            return (
                f"SELECT s.n + coalesce(a.k, 0) AS line, s.raw FROM ({base}) s "
                f"ASOF LEFT JOIN tt_line_adjust a ON s.n > a.before"
            )
        opts = (f"compression={lit(self.compression)}, maximum_object_size={MAX_DOCUMENT_BYTES}")
        if self.container == "array":
            return (
                "SELECT row_number() OVER () AS line, CAST(json AS VARCHAR) AS raw FROM "
                f"read_json({lit(self.path)}, format='array', records=false, "
                f"columns={{'json': 'JSON'}}, {opts})"
            )
        if self.container == "wrapper":
            assert self.wrapper_key
            key = self.wrapper_key.replace('"', '""')
            return (
                "SELECT row_number() OVER () AS line, CAST(raw AS VARCHAR) AS raw FROM "
                f"(SELECT unnest(\"{key}\") AS raw FROM read_json({lit(self.path)}, "
                f"format='auto', records=true, columns={{{lit(self.wrapper_key)}: 'JSON[]'}}, {opts}))"
            )
        raise ValueError(f"unknown container {self.container}")


def _mapped_exprs(mapping: Mapping) -> list[str]:
    out = []
    for name, typ, _ in EVENT_COLUMNS:
        expr = mapping.columns.get(name)
        value = f"TRY_CAST(TRY({expr}) AS {typ})" if expr else f"CAST(NULL AS {typ})"
        out.append(f"{value} AS m_{name}")
    raw_token = mapping.columns.get("raw_token")
    out.append(f"TRY(tt_auth_token(CAST(({raw_token}) AS VARCHAR))) AS m_tok" if raw_token
               else "CAST(NULL AS VARCHAR) AS m_tok")
    out.append(f"TRY(tt_auth_scheme(CAST(({raw_token}) AS VARCHAR))) AS m_scheme" if raw_token
               else "CAST(NULL AS VARCHAR) AS m_scheme")
    claims = mapping.columns.get("claims")
    out.append(f"TRY(CAST(({claims}) AS VARCHAR)) AS m_claims" if claims
               else "CAST(NULL AS VARCHAR) AS m_claims")
    workload = mapping.columns.get("workload")
    out.append(f"TRY_CAST(TRY({workload}) AS VARCHAR) AS m_workload" if workload
               else "CAST(NULL AS VARCHAR) AS m_workload")
    if mapping.extra:
        values = [f"TRY({v})" for v in mapping.extra.values()]
        pairs = ", ".join(f"{lit(k)}, {v}" for k, v in zip(mapping.extra, values, strict=True))
        all_null = " AND ".join(f"({v}) IS NULL" for v in values)
        out.append(f"CASE WHEN {all_null} THEN NULL ELSE json_object({pairs}) END AS m_extra_obj")
    else:
        out.append("CAST(NULL AS JSON) AS m_extra_obj")
    return out


def _final_exprs(source_id: str, fmt: str) -> list[str]:
    c = "_c"
    derived: dict[str, str] = {
        "event_id": f"{lit(source_id + ':')} || CAST(line AS VARCHAR)",
        "source_id": lit(source_id),
        "line": "line",
        "format": lit(fmt),
        "token_id": f"coalesce(m_token_id, {c}.jti, {c}.uti)",
        "token_fp": "coalesce(rtrim(m_token_fp, '='), tt_fp(m_tok))",
        "issuer": f"coalesce(m_issuer, {c}.iss)",
        "subject": f"coalesce(m_subject, {c}.sub)",
        "client_id": f"coalesce(m_client_id, {c}.azp, {c}.client_id, {c}.cid, {c}.appid)",
        "audience": f"coalesce(m_audience, tt_str_list({c}.aud))",
        "scopes": f"coalesce(m_scopes, tt_scopes({c}.scope), tt_scopes({c}.scp))",
        "act_chain": f"coalesce(m_act_chain, CASE WHEN {c}.act IS NOT NULL "
                     f"THEN nullif(tt_act_chain({c}.act), []) END)",
        "cnf_jkt": f"coalesce(m_cnf_jkt, {c}.cnf.jkt)",
        "cnf_x5t": f"coalesce(tt_x5t(m_cnf_x5t), {c}.cnf.\"x5t#S256\")",
        "auth_scheme": "coalesce(m_auth_scheme, m_scheme)",
        "peer_x5t": "tt_x5t(m_peer_x5t)",
        "session_id": f"coalesce(m_session_id, {c}.sid)",
        "iat": f"coalesce(m_iat, tt_epoch({c}.iat))",
        "nbf": f"coalesce(m_nbf, tt_epoch({c}.nbf))",
        "exp": f"coalesce(m_exp, tt_epoch({c}.exp))",
        "claims_verified": f"CASE WHEN {c} IS NULL THEN NULL ELSE coalesce(m_claims_verified, false) END",
        "raw_token_logged": "coalesce(m_raw_token_logged, m_tok IS NOT NULL)",
        "holder_id": "m_holder_id",
        "holder_tier": "m_holder_tier",
        # Cast back to JSON (a parse) only for the few objects the redaction touched.
        "extra": f"CASE WHEN m_extra_obj IS NULL THEN NULL "
                 f"WHEN regexp_matches(CAST(m_extra_obj AS VARCHAR), {REDACT_TRIGGER_SQL}) "
                 f"THEN CAST(tt_redact(CAST(m_extra_obj AS VARCHAR)) AS JSON) ELSE m_extra_obj END",
    }
    token_id = derived["token_id"]
    token_fp = derived["token_fp"]
    derived["token_key"] = f"coalesce(m_token_key, {token_id}, 'fp:' || {token_fp})"
    out = []
    for name, typ, _ in EVENT_COLUMNS:
        expr = derived.get(name, f"m_{name}")
        if name in _REDACTED_TEXT:
            expr = f"tt_redact({expr})"
        out.append(f"CAST({expr} AS {typ}) AS {name}")
    return out


# Holder from the strongest presenter evidence; evaluated over the final columns (see DESIGN.md,
# "Tokens and holders"). Never from the token's own claims.
HOLDER_TIER_SQL = (
    "coalesce(holder_tier, CASE WHEN peer_spiffe IS NOT NULL THEN 'spiffe' "
    "WHEN peer_x5t IS NOT NULL THEN 'mtls' WHEN proof_jkt IS NOT NULL THEN 'dpop' "
    "WHEN _workload IS NOT NULL OR agent IS NOT NULL THEN 'workload' "
    "WHEN src_ip IS NOT NULL THEN 'network' END)"
)
HOLDER_ID_SQL = (
    "coalesce(holder_id, CASE WHEN peer_spiffe IS NOT NULL THEN peer_spiffe "
    "WHEN peer_x5t IS NOT NULL THEN 'x5t:' || peer_x5t "
    "WHEN proof_jkt IS NOT NULL THEN 'jkt:' || proof_jkt "
    "WHEN _workload IS NOT NULL THEN _workload "
    "WHEN agent IS NOT NULL THEN 'agent:' || agent "
    "WHEN src_ip IS NOT NULL THEN 'ip:' || src_ip || coalesce('/' || tt_ua_family(user_agent), '') "
    "END)"
)


def compile_pipeline(mapping: Mapping, reader: Reader, *, source_id: str) -> str:
    """The SELECT every insert reads from: all event columns plus raw and _reason."""
    mapped = ",\n       ".join(_mapped_exprs(mapping))
    final = ",\n       ".join(_final_exprs(source_id, mapping.name))
    checks = "".join(
        f" WHEN TRY({chk.when}) THEN {lit(chk.reason)}" for chk in mapping.rejects
    )
    return f"""
SELECT * REPLACE ({HOLDER_ID_SQL} AS holder_id, {HOLDER_TIER_SQL} AS holder_tier),
       CASE WHEN r_missing THEN (CASE WHEN json_valid(raw) THEN 'not a JSON object'
                                         ELSE 'invalid JSON' END)
               WHEN ts IS NULL THEN 'no usable timestamp'{checks}
          END AS _reason
FROM (
  SELECT line, raw, r_missing, m_workload AS _workload,
       {final}
  FROM (
    SELECT *, CASE WHEN regexp_matches(_claims, '^\\s*\\{{')
                   THEN TRY(json_transform(_claims, {lit(CLAIMS_STRUCT)})) END AS _c
    FROM (
      SELECT *, coalesce(m_claims, TRY(tt_jwt_claims(m_tok))) AS _claims
      FROM (
        SELECT line, raw, r IS NULL AS r_missing,
       {mapped}
        FROM (
          SELECT line, raw,
                 CASE WHEN regexp_matches(raw, '^\\s*\\{{')
                      THEN TRY(json_transform(raw, {lit(mapping.structure_json)})) END AS r
          FROM ({reader.sql()})
          -- regexes, not trim(): trim copies every (long) line
          WHERE raw IS NOT NULL AND NOT regexp_full_match(raw, '\\s*')
        )
      )
    )
  )
)"""


def insert_events_sql(pipeline: str) -> str:
    cols = ", ".join(name for name, _, _ in EVENT_COLUMNS)
    return f"INSERT INTO events ({cols}) SELECT {cols} FROM ({pipeline}) WHERE _reason IS NULL"


def insert_rejects_sql(pipeline: str, source_id: str) -> str:
    return (
        f"INSERT INTO rejects SELECT {lit(source_id)}, line, _reason, "
        f"left(tt_redact_strict(raw), {EXCERPT_CHARS}) FROM ({pipeline}) WHERE _reason IS NOT NULL"
    )


def column_probe_sql(mapping: Mapping, name: str, expr: str) -> str:
    """A zero-row query that fails when `expr` does not bind against the record struct."""
    return (
        f"SELECT ({expr}) FROM (SELECT json_transform('{{}}', {lit(mapping.structure_json)}) AS r) "
        "LIMIT 0"
    )
