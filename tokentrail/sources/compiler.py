"""Compile a Mapping into DuckDB SQL that reads a whole file in one statement.

The pipeline, as nested SELECTs over one reader:

    reader      (line, raw)            JSON Lines via read_csv, arrays/wrappers via read_json;
                                       nested envelopes: documents (one per line via read_csv,
                                       or whole via read_json) unnested into records in SQL
    parsed      valid? object? -> r    one json_transform per record into the mapping's struct
    mapped      the mapping's column expressions over r (each TRY'd: one odd record never
                fails the file)
    derived     claims decoded once; fingerprint; token_key; holder from the strongest evidence
    checked     _reason: why a record is a reject, NULL for a good event

Good rows go to `events`, the others to `rejects` with a redacted excerpt; raw tokens exist
only inside this statement and are never selected into a table.
"""

from __future__ import annotations

import orjson

from tokentrail.case.schema import EVENT_COLUMNS, STORED_COLUMN_NAMES

from ..redact import EXCERPT_CHARS, REDACT_TRIGGER_SQL
from .mapping import Mapping
from .readers import Reader, lit

CLAIMS_STRUCT = (
    '{"jti":"VARCHAR","uti":"VARCHAR","iss":"VARCHAR","sub":"VARCHAR","azp":"VARCHAR",'
    '"client_id":"VARCHAR","cid":"VARCHAR","appid":"VARCHAR","aud":"JSON","scope":"JSON",'
    '"scp":"JSON","act":"JSON","cnf":{"jkt":"VARCHAR","x5t#S256":"VARCHAR"},"iat":"DOUBLE","nbf":"DOUBLE",'
    '"exp":"DOUBLE","sid":"VARCHAR"}'
)

# Columns whose text can carry a token (query strings, error messages): always redacted.
_REDACTED_TEXT = ("path", "error", "resource")

_TYPES = {name: typ for name, typ, _ in EVENT_COLUMNS}


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
    if mapping.dedupe:
        parts = [f"TRY(CAST(({e}) AS VARCHAR))" for e in mapping.dedupe]
        known = " AND ".join(f"{p} IS NOT NULL" for p in parts)
        out.append(f"CASE WHEN {known} THEN [{', '.join(parts)}] END AS m_dkey")
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
    plus `_reason` (NULL for a good event) and `_excerpt` (redacted, rejects only).
    A nested reader's `_doc_line` (the line of a document rejected whole) is kept too, and
    with a `dedupe` key, `_dkey` (the record's key, NULL when a part of it is missing)."""
    mapped = ",\n       ".join(_mapped_exprs(mapping))
    final = ",\n       ".join(_final_exprs(source_id, mapping.name))
    checks = "".join(
        f" WHEN TRY({chk.when}) THEN {lit(chk.reason)}" for chk in mapping.rejects
        if not chk.first
    )
    early = "".join(
        f" WHEN TRY({chk.when}) THEN {lit(chk.reason)}" for chk in mapping.rejects if chk.first
    )
    # Reader columns beside raw are carried through the explicit select lists; none for the
    # line / array / wrapper readers, whose SQL is exactly what it was before nested reading.
    pt = "".join(f" {c}," for c in reader.passthrough)
    why = " WHEN _why IS NOT NULL THEN _why" if "_why" in reader.passthrough else ""
    drop = ", _why" if "_why" in reader.passthrough else ""
    dkey = " m_dkey AS _dkey," if mapping.dedupe else ""
    records = _let_layer(mapping, f"""
          SELECT raw,{pt}
                 CASE WHEN regexp_matches(raw, '^\\s*\\{{')
                      THEN TRY(json_transform(raw, {lit(mapping.structure_json)})) END AS r
          FROM ({_payload_sql(mapping, reader)})
        """)
    return f"""
SELECT * EXCLUDE (raw, r_missing, _workload, line, event_id{drop}),
       CASE WHEN _reason IS NOT NULL AND _reason <> '{BLANK}'
            THEN left(tt_redact_strict(raw), {EXCERPT_CHARS}) END AS _excerpt
FROM (
 SELECT * REPLACE ({HOLDER_ID_SQL} AS holder_id, {HOLDER_TIER_SQL} AS holder_tier),
        -- regexes, not trim(): trim copies every (long) line
        CASE{why} WHEN raw IS NULL OR regexp_full_match(raw, '[ \\t\\r\\n]*') THEN '{BLANK}'
             WHEN r_missing THEN (CASE WHEN json_valid(raw) THEN 'not a JSON object'
                                       ELSE 'invalid JSON' END){early}
             WHEN ts IS NULL THEN 'no usable timestamp'{checks}
        END AS _reason
 FROM (
  SELECT raw, r_missing, m_workload AS _workload,{pt}{dkey}
       {final}
  FROM (
    SELECT *, CASE WHEN regexp_matches(_claims, '^\\s*\\{{')
                   THEN TRY(json_transform(_claims, {lit(CLAIMS_STRUCT)})) END AS _c
    FROM (
      SELECT *, coalesce(m_claims, TRY(tt_jwt_claims(m_tok))) AS _claims
      FROM (
        SELECT raw, r IS NULL AS r_missing,{pt}
       {mapped}
        FROM ({records})
      )
    )
  )
 )
)"""


# A row of the direct load that is not an event (a reject or a blank line): kept in `events`
# only inside the file's transaction, with its reason in `error` and excerpt in `path`, then
# moved to `rejects` and deleted (direct_insert_sql). No format name can hold a NUL byte.
REJECT_MARK = "\x00reject"


def direct_insert_sql(pipeline: str) -> str:
    """Every row of the pipeline straight into `events` (one pass, no stage), `line` NULL:
    DuckDB keeps insertion order, so the file's rows get consecutive rowids in file order and
    the caller sets `line` from them (direct_lines_sql). Rejects and blank lines are marked
    with REJECT_MARK in `format` (reason in `error`, redacted excerpt in `path`) for the
    caller to move out."""
    special = {
        "line": "NULL",
        "format": f"CASE WHEN _reason IS NULL THEN format ELSE {lit(REJECT_MARK)} END",
        "error": "CASE WHEN _reason IS NULL THEN error ELSE _reason END",
        "path": "CASE WHEN _reason IS NULL THEN path ELSE _excerpt END",
    }
    cols = ", ".join(STORED_COLUMN_NAMES)
    values = ", ".join(special.get(c, c) for c in STORED_COLUMN_NAMES)
    return f"INSERT INTO events ({cols}) SELECT {values} FROM ({pipeline})"


def direct_lines_sql(source_id: str, base: int) -> str:
    """The direct load's line numbers: each row's position among the file's rows (rowid - base
    + 1, base the file's first rowid; inside the file's transaction its rows are contiguous)."""
    return (f"UPDATE events SET line = rowid - {int(base)} + 1 "
            f"WHERE source_id = {lit(source_id)}")


def move_rejects_sql(source_id: str) -> str:
    """The direct load's marked rows (not blank lines) into `rejects`."""
    return (f"INSERT INTO rejects SELECT source_id, line, error, path FROM events "
            f"WHERE source_id = {lit(source_id)} AND format = {lit(REJECT_MARK)} "
            f"AND error <> '{BLANK}'")


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


def insert_events_sql(base: int, line_adjust: bool, dedupe: bool = False) -> str:
    """Good rows into `events`; with a dedupe key, only the first row (by line) of each key
    (a set-based filter, and only for mappings that declare a key)."""
    cols = ", ".join(STORED_COLUMN_NAMES)
    first = (" QUALIFY _dkey IS NULL OR row_number() OVER (PARTITION BY _dkey ORDER BY line) = 1"
             if dedupe else "")
    return (f"INSERT INTO events ({cols}) SELECT {cols} "
            f"FROM ({staged_rows_sql(base, line_adjust)}) WHERE _reason IS NULL{first}")


def insert_rejects_sql(source_id: str, base: int, line_adjust: bool,
                       nested: bool = False) -> str:
    """A nested reader's document-level rejects keep their document's line (`_doc_line`);
    every other reject, like every event, has its row position."""
    line = "coalesce(_doc_line, line)" if nested else "line"
    return (
        f"INSERT INTO rejects SELECT {lit(source_id)}, {line}, _reason, _excerpt "
        f"FROM ({staged_rows_sql(base, line_adjust)}) "
        f"WHERE _reason IS NOT NULL AND _reason <> '{BLANK}'"
    )


def _payload_sql(mapping: Mapping, reader: Reader) -> str:
    """The reader's rows, with `raw` replaced by the JSON object held as a string at one of
    the mapping's `[read] payload` paths (the first that holds one). A substring test first,
    so records without the payload's key are not parsed twice."""
    inner = reader.sql()
    if not mapping.payload:
        return inner
    pt = "".join(f", {c}" for c in reader.passthrough)
    value = "NULL"
    for path in reversed(mapping.payload):
        json_path = "$." + ".".join(orjson.dumps(p).decode() for p in path.split("."))
        last = orjson.dumps(path.split(".")[-1]).decode()
        got = f"TRY(json_extract_string(raw, {lit(json_path)}))"
        value = (f"CASE WHEN contains(raw, {lit(last)}) AND regexp_matches({got}, '^\\s*\\{{') "
                 f"AND json_valid({got}) THEN {got} ELSE {value} END")
    return f"SELECT coalesce({value}, raw) AS raw{pt} FROM ({inner})"


def _let_layer(mapping: Mapping, inner: str) -> str:
    """The mapping's [let] values, computed once per record beside `r` as the struct `l`
    (each TRY'd like a column); without [let] the query is `inner` unchanged."""
    if not mapping.let:
        return inner
    # One layer per value, so a value can use those before it (l.<earlier>); a layer that
    # adds a field to a struct is a cheap projection.
    items = list(mapping.let.items())
    name, expr = items[0]
    sql = f"SELECT *, struct_pack({name} := TRY({expr})) AS l FROM ({inner})"
    for name, expr in items[1:]:
        sql = f"SELECT * REPLACE (struct_insert(l, {name} := TRY({expr})) AS l) FROM ({sql})"
    return sql


def column_probe_sql(mapping: Mapping, name: str, expr: str) -> str:
    """A zero-row query that fails when `expr` does not bind against the record struct."""
    record = f"SELECT '{{}}' AS raw, json_transform('{{}}', {lit(mapping.structure_json)}) AS r"
    return f"SELECT ({expr}) FROM ({_let_layer(mapping, record)}) LIMIT 0"
