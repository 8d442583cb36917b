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
from ..schema import EVENT_COLUMNS, STORED_COLUMN_NAMES
from .mapping import Mapping

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 256 << 20  # read_json buffers a whole document: keep it under memory_limit

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
    document_bytes: int = MAX_DOCUMENT_BYTES  # largest single JSON document to expect
    rejects_table: str = "tt_csv_rejects"

    def lines_sql(self) -> str:
        return (
            f"read_csv({lit(self.path)}, columns={{'raw': 'VARCHAR'}}, delim='\\0', quote='', "
            f"escape='', header=false, auto_detect=false, new_line='\\r\\n', "
            f"strict_mode=false, "
            f"compression={lit(self.compression)}, max_line_size={MAX_LINE_BYTES}, "
            f"buffer_size={2 * MAX_LINE_BYTES}, "
            f"store_rejects=true, ignore_errors=true, rejects_table={lit(self.rejects_table)}, "
            f"rejects_scan={lit(self.rejects_table + '_scan')})"
        )

    def sql(self) -> str:
        """SELECT raw (VARCHAR), one row per line / element, in file order.

        No row numbers here: a row_number() window would run the whole pipeline on one
        thread. The stage table keeps file order instead (see `stage_sql`).
        """
        if self.container == "lines":
            return f"SELECT raw FROM {self.lines_sql()}"
        opts = (f"compression={lit(self.compression)}, "
                f"maximum_object_size={min(max(self.document_bytes, 1 << 24), MAX_DOCUMENT_BYTES)}")
        if self.container == "array":
            return (
                "SELECT CAST(json AS VARCHAR) AS raw FROM "
                f"read_json({lit(self.path)}, format='array', records=false, "
                f"columns={{'json': 'JSON'}}, {opts})"
            )
        if self.container == "wrapper":
            assert self.wrapper_key
            key = self.wrapper_key.replace('"', '""')
            return (
                "SELECT CAST(raw AS VARCHAR) AS raw FROM "
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
        "event_id": "NULL",  # virtual column: source_id:line
        "source_id": lit(source_id),
        "line": "NULL",  # from the stage's rowid
        "format": lit(fmt),
        "token_id": f"coalesce(m_token_id, {c}.jti, tt_uti({c}.uti))",
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


BLANK = "blank"  # _reason of a blank line: counted for line numbers, never stored


def compile_pipeline(mapping: Mapping, reader: Reader, *, source_id: str) -> str:
    """One row per input row, in file order: every stored event column except `line`,
    plus `_reason` (NULL for a good event) and `_excerpt` (redacted, rejects only)."""
    mapped = ",\n       ".join(_mapped_exprs(mapping))
    final = ",\n       ".join(_final_exprs(source_id, mapping.name))
    checks = "".join(
        f" WHEN TRY({chk.when}) THEN {lit(chk.reason)}" for chk in mapping.rejects
    )
    return f"""
SELECT * EXCLUDE (raw, r_missing, _workload, line, event_id),
       CASE WHEN _reason IS NOT NULL AND _reason <> '{BLANK}'
            THEN left(tt_redact_strict(raw), {EXCERPT_CHARS}) END AS _excerpt
FROM (
 SELECT * REPLACE ({HOLDER_ID_SQL} AS holder_id, {HOLDER_TIER_SQL} AS holder_tier),
        -- regexes, not trim(): trim copies every (long) line
        CASE WHEN raw IS NULL OR regexp_full_match(raw, '\\s*') THEN '{BLANK}'
             WHEN r_missing THEN (CASE WHEN json_valid(raw) THEN 'not a JSON object'
                                       ELSE 'invalid JSON' END)
             WHEN ts IS NULL THEN 'no usable timestamp'{checks}
        END AS _reason
 FROM (
  SELECT raw, r_missing, m_workload AS _workload,
       {final}
  FROM (
    SELECT *, CASE WHEN regexp_matches(_claims, '^\\s*\\{{')
                   THEN TRY(json_transform(_claims, {lit(CLAIMS_STRUCT)})) END AS _c
    FROM (
      SELECT *, coalesce(m_claims, TRY(tt_jwt_claims(m_tok))) AS _claims
      FROM (
        SELECT raw, r IS NULL AS r_missing,
       {mapped}
        FROM (
          SELECT raw,
                 CASE WHEN regexp_matches(raw, '^\\s*\\{{')
                      THEN TRY(json_transform(raw, {lit(mapping.structure_json)})) END AS r
          FROM ({reader.sql()})
        )
      )
    )
  )
 )
)"""


STAGE = "tt_stage"


def stage_sql(pipeline: str) -> str:
    """Materialise the pipeline in parallel; DuckDB keeps insertion order, so a row's rowid
    is its position in the reader's output (the line, for JSON Lines)."""
    return f"CREATE OR REPLACE TEMP TABLE {STAGE} AS {pipeline}"


def staged_rows_sql(base: int, line_adjust: bool) -> str:
    """The stage with `line`: its row position (rowid - base, where base is the first rowid;
    inside a transaction rowids start at a large offset), shifted past lines the CSV reader
    refused itself."""
    pos = f"(s.rowid - {int(base)} + 1)"
    if not line_adjust:
        return f"SELECT {pos} AS line, s.* FROM {STAGE} s"
    return (
        f"SELECT {pos} + coalesce(a.k, 0) AS line, s.* FROM {STAGE} s "
        f"ASOF LEFT JOIN tt_line_adjust a ON {pos} > a.before"
    )


def insert_events_sql(base: int, line_adjust: bool) -> str:
    cols = ", ".join(STORED_COLUMN_NAMES)
    return (f"INSERT INTO events ({cols}) SELECT {cols} "
            f"FROM ({staged_rows_sql(base, line_adjust)}) WHERE _reason IS NULL")


def insert_rejects_sql(source_id: str, base: int, line_adjust: bool) -> str:
    return (
        f"INSERT INTO rejects SELECT {lit(source_id)}, line, _reason, _excerpt "
        f"FROM ({staged_rows_sql(base, line_adjust)}) "
        f"WHERE _reason IS NOT NULL AND _reason <> '{BLANK}'"
    )


def column_probe_sql(mapping: Mapping, name: str, expr: str) -> str:
    """A zero-row query that fails when `expr` does not bind against the record struct."""
    return (
        f"SELECT ({expr}) FROM (SELECT json_transform('{{}}', {lit(mapping.structure_json)}) AS r) "
        "LIMIT 0"
    )
