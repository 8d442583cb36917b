"""How a file's rows reach the pipeline: JSON Lines through DuckDB's CSV reader (one column,
the line), arrays and wrappers through read_json, concatenated documents, and nested
envelopes (OTLP batches, CloudTrail digests) unnested level by level into records with the
line of their document. Kept apart from the column mapping so a new container is one reader,
whatever the format.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import orjson

from .mapping import NESTED_DOCUMENT_KEY

MAX_LINE_BYTES = 16 * 1024 * 1024
CRLF, LF = "\\r\\n", "\\n"  # read_csv's new_line option, as the SQL text it takes
MAX_DOCUMENT_BYTES = 256 << 20  # read_json buffers a whole document: keep it under memory_limit


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
    # True: CRLF is one line end (DuckDB ends one at a lone CR too). A file known to hold no CR
    # is read with LF alone: the CRLF mode of DuckDB 2.0's parallel reader drops lines at
    # some buffer boundaries (2 of 10 M lines of bench/ 10 M file, none with LF alone).
    crlf: bool = True

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
            f"escape='', header=false, auto_detect=false, "
            f"new_line={lit(CRLF if self.crlf else LF)}, "
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


def drop_csv_rejects(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS temp.{table}")
    con.execute(f"DROP TABLE IF EXISTS temp.{table}_scan")
