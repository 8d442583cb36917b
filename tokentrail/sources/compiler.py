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

from dataclasses import dataclass

import orjson

from tokentrail.case.schema import EVENT_COLUMNS, STORED_COLUMN_NAMES

from ..redact import EXCERPT_CHARS, REDACT_TRIGGER_SQL
from .mapping import NESTED_DOCUMENT_KEY, Mapping

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
    """Where records come from: a container kind and how to read it.

    `nested` (OTLP/JSON and the like) reads in steps: `documents_sql()` yields one row per
    document (a line of the file, or a whole JSON value), which the caller materialises in
    file order, then each outer level of `nested_plan` in turn; `sql()` (`nested_sql`, the
    plan's last SELECT) yields one row per innermost element of the `nested_paths`.
    """

    path: str
    container: str  # "lines" | "array" | "wrapper" | "nested" | "documents"
    compression: str = "none"  # "none" | "gzip"
    wrapper_key: str | None = None
    document_bytes: int = MAX_DOCUMENT_BYTES  # largest single JSON document to expect
    rejects_table: str = "tt_csv_rejects"
    nested_paths: tuple[tuple[str, ...], ...] = ()
    nested_mode: str = "lines"  # "lines": one document per line | "document": JSON values
    nested_sql: str | None = None  # the records, once the outer levels are materialised
    parallel: bool = True  # False: DuckDB's single-threaded CSV reader (see ingest._load)

    @property
    def passthrough(self) -> tuple[str, ...]:
        """Columns the reader adds beside `raw` that the pipeline carries to the stage."""
        return ("_doc_line", "_why") if self.container == "nested" else ()

    @property
    def reads_lines(self) -> bool:
        """Does the file itself go through the line reader (CSV rejects, line numbers)?"""
        return self.container == "lines" or (self.container == "nested"
                                             and self.nested_mode == "lines")

    def _json_opts(self) -> str:
        return (f"compression={lit(self.compression)}, "
                f"maximum_object_size={min(max(self.document_bytes, 1 << 24), MAX_DOCUMENT_BYTES)}")

    def documents_sql(self) -> str:
        """SELECT raw (VARCHAR): one row per document, in file order (nested only)."""
        assert self.container == "nested"
        if self.nested_mode == "lines":
            return f"SELECT raw FROM {self.lines_sql()}"
        return (
            "SELECT CAST(json AS VARCHAR) AS raw FROM "
            f"read_json({lit(self.path)}, format='unstructured', records=false, "
            f"columns={{'json': 'JSON'}}, {self._json_opts()})"
        )

    def lines_sql(self) -> str:
        return (
            f"read_csv({lit(self.path)}, columns={{'raw': 'VARCHAR'}}, delim='\\0', quote='', "
            f"escape='', header=false, auto_detect=false, new_line='\\r\\n', "
            + ("" if self.parallel else "parallel=false, ") +
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
        if self.container == "nested":
            assert self.nested_sql, "materialise the documents and outer levels first"
            return self.nested_sql
        opts = self._json_opts()
        if self.container == "documents":
            # Concatenated (pretty-printed) JSON documents: each one a record.
            return (
                "SELECT CAST(json AS VARCHAR) AS raw FROM "
                f"read_json({lit(self.path)}, format='unstructured', records=false, "
                f"columns={{'json': 'JSON'}}, {opts})"
            )
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


NESTED_TABLE = "tt_nest"  # tt_nest0, tt_nest1 ...: a nested file's outer levels, in file order
NESTED_SRC = "__tt_nested_src__"  # placeholder in a nested step for the rows it reads


@dataclass(frozen=True)
class NestedStep:
    """Materialise `table` from `sql`, whose NESTED_SRC is a subquery over the previous
    step's table (the documents, as doc_line and raw, for the first), in order and in
    batches of about a fixed number of bytes of `text` (the column that holds JSON)."""

    table: str
    text: str
    sql: str


def nested_plan(paths: tuple[tuple[str, ...], ...],
                table: str = NESTED_TABLE) -> tuple[list[NestedStep], str]:
    """How to turn documents (doc_line, raw, in file order) into records.

    Returns the tables to materialise, in order: each outer level, then the records; and the
    SELECT over the records: raw (the record's JSON text), _doc_line and _why (see below).
    One unnest per statement, over a bounded batch of rows: measured on OTLP files, a chain
    of unnests over large JSON values in one statement, or one statement over a vector of
    large values, holds many times the text in memory; each batch of a materialised level
    holds it a few times.

    A row carries its path (`_p`), the text of the record built so far (`_h`) and its current
    element (`_e`); a path shorter than the longest one passes through the extra levels.
    Each level parses an element once (json_extract with a wildcard gives its children); the
    element without its child array is the element's text with the children's text cut out
    (json_extract writes minified JSON, so the child array's text is exactly its children
    joined by commas), a string operation instead of a second parse (json_merge_patch).

    A document that is not a JSON object gives one row whose raw is the document (the
    pipeline rejects it as invalid JSON / not an object); an object with none of the paths'
    top-level arrays gives one row with `_why`; blank lines give none. `_doc_line` is set on
    those document-level rows only (their reject's line). An empty envelope gives no row.
    """
    assert paths

    def key(level: str) -> str:
        return orjson.dumps(level).decode()

    def case_p(values: list[str], default: str) -> str:
        whens = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(values))
        return f"CASE _p {whens} ELSE {default} END"

    def without(elem: str, level: str, kids: str) -> str:
        """`elem` (minified JSON text) without its member `level`, whose elements are kids."""
        member = f"{lit(key(level) + ':[')} || array_to_string({kids}, ',') || ']'"
        return (f"replace(replace(replace({elem}, ',' || {member}, ''), {member} || ',', ''), "
                f"{member}, '')")

    depth = max(len(p) for p in paths)
    tops = list(dict.fromkeys(p[0] for p in paths))
    names = " / ".join(tops)
    why = f"JSON object without {names} (not a {names} document)"
    top_paths = "[" + ", ".join(lit("$." + key(t)) for t in tops) + "]"
    has = " OR ".join(f"starts_with(CAST(_tops[{i + 1}] AS VARCHAR), '[')"
                      for i in range(len(tops)))
    firsts = [f"coalesce(list_transform(json_extract(_tops[{tops.index(p[0]) + 1}], '$[*]'), "
              f"lambda x: {{'p': {i}, 'e': CAST(x AS VARCHAR)}}), [])" for i, p in enumerate(paths)]
    first = f"list_concat({', '.join(firsts)})" if len(firsts) > 1 else firsts[0]
    steps = [NestedStep(f"{table}0", "raw", f"""
SELECT _doc_line, _rej, _why, _pe.p AS _p, '' AS _h, _pe.e AS _e FROM (
  SELECT doc_line AS _doc_line, CASE WHEN _bad THEN raw END AS _rej,
         CASE WHEN _bad AND _ok THEN {lit(why)} END AS _why,
         unnest(CASE WHEN _bad THEN [{{'p': NULL::INTEGER, 'e': NULL::VARCHAR}}]
                     ELSE {first} END) AS _pe
  FROM (
    SELECT *, NOT _ok OR NOT coalesce({has}, false) AS _bad
    FROM (
      SELECT doc_line, raw, _tops,
             coalesce(regexp_matches(raw, '^\\s*\\{{') AND _tops IS NOT NULL, false) AS _ok
      FROM (
        SELECT doc_line, raw, TRY(json_extract(raw, {top_paths})) AS _tops
        FROM {NESTED_SRC}
        WHERE raw IS NOT NULL AND NOT regexp_full_match(raw, '[ \\t\\r\\n]*')
      )
    )
  )
)""")]

    def descend(lvl: int) -> str:
        """From the elements at level lvl - 1 to their children (one row each)."""
        down = [lvl < len(p) for p in paths]
        kids = [f"CAST(json_extract(_e, {lit('$.' + key(p[lvl]) + '[*]')}) AS VARCHAR[])"
                if d else "[_e]" for p, d in zip(paths, down, strict=True)]
        outer = [f"{lit(',' + key(p[lvl - 1]) + ':')} || {without('_e', p[lvl], '_kids')}"
                 if d else "''" for p, d in zip(paths, down, strict=True)]
        # children first, then the outer text from them, then the unnest: each computed
        # once per element, not once per child
        return (f"SELECT _doc_line, _rej, _why, _p, _h, unnest(_kids) AS _e FROM ("
                f"SELECT _doc_line, _rej, _why, _p, _kids, "
                f"CASE WHEN _e IS NULL THEN _h ELSE _h || {case_p(outer, repr(''))} END AS _h "
                f"FROM ("
                f"SELECT _doc_line, _rej, _why, _p, _h, _e, "
                f"CASE WHEN _e IS NULL THEN [_e] ELSE {case_p(kids, '[_e]')} END AS _kids "
                f"FROM {NESTED_SRC}))")

    for lvl in range(1, depth - 1):
        steps.append(NestedStep(f"{table}{lvl}", "_e", descend(lvl)))
    last = case_p([lit("," + key(p[-1]) + ":") for p in paths], "NULL")
    records = f"{table}{depth - 1}"
    steps.append(NestedStep(records, "_e", f"""
SELECT CASE WHEN _rej IS NOT NULL THEN _rej
            ELSE '{{{key(NESTED_DOCUMENT_KEY)}:' || _doc_line || _h || {last} || _e || '}}'
       END AS raw,
       CASE WHEN _rej IS NOT NULL THEN _doc_line END AS _doc_line,
       _why
FROM ({descend(depth - 1)})"""))
    # The records too: the mapping's pipeline over an unnest in the same statement ran about
    # three times slower (measured) than over the materialised records.
    return steps, f"SELECT raw, _doc_line, _why FROM {records}"


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
