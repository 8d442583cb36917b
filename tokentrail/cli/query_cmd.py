"""`tokentrail query`: SQL over the case, for responders."""

from __future__ import annotations

import os
import sys

import click
import duckdb

from tokentrail.case.store import Case, resolve_db_path

from ..errors import UsageError
from .common import db_option, emit_rows, open_case, output_options, say


@click.command("query", epilog="""\b
Examples:
  tokentrail query "select * from v_token_holders where holders > 1"
  tokentrail query "select * from v_token_usage where token_key = 'j-42'" --format json
  tokentrail query - < questions.sql --format csv -o out.csv

\b
Views: v_token_usage, v_token_holders, v_issuance, v_holders, v_timeline, v_rejects
Tables: events, rejects, sources, meta
""")
@click.argument("sql", metavar="SQL|-")
@db_option
@output_options
def query_cmd(sql: str, db: str | None, fmt: str, output: str) -> None:
    """Run SQL against the case (read-only) and print the rows.

    Pass - to read the SQL from stdin. The SQL can read the case only: files, URLs, COPY TO,
    ATTACH and extensions are refused (DuckDB enable_external_access=false). Several
    statements run in order; the last one's rows are printed.
    """
    if sql == "-":
        sql = sys.stdin.read()
    if not sql.strip():
        raise UsageError("empty SQL")
    db_path = resolve_db_path(db)
    with open_case(db_path, read_only=True) as case:
        _sandbox(case, db_path)
        statements = _statements(case, sql)
        for statement in statements[:-1]:
            case.query(statement)
        columns, rows = case.query(statements[-1] if statements else sql)
    if len(statements) > 1:
        say(f"note: ran {len(statements)} statements; printed the result of the last one only")
    emit_rows(columns, rows, fmt, output)


def _statements(case: Case, sql: str) -> list[str]:
    """The SQL's statements, each as text (DuckDB's own parser splits them)."""
    try:
        return [s.query for s in case.con.extract_statements(sql)]
    except duckdb.Error:
        return [sql]  # let execution report the syntax error


def _sandbox(case: Case, db_path: str) -> None:
    """User SQL reads the case and nothing else: DuckDB's enable_external_access=false and
    lock_configuration, set after the case is open. A local Parquet lake is allow-listed."""
    from tokentrail.scale.lake import is_lake

    if is_lake(db_path):
        if "://" in db_path:
            return  # an object-store lake needs its extension and network: not sandboxed
        folder = os.path.abspath(db_path).rstrip("/") + "/"
        case.con.execute("SET allowed_directories = [?]", [folder])
    case.sandbox()
