"""`tokentrail query`: SQL over the case, for responders."""

from __future__ import annotations

import sys

import click

from ..case import resolve_db_path
from ..errors import UsageError
from .common import db_option, emit_rows, open_case, output_options


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

    Pass - to read the SQL from stdin.
    """
    if sql == "-":
        sql = sys.stdin.read()
    if not sql.strip():
        raise UsageError("empty SQL")
    with open_case(resolve_db_path(db), read_only=True) as case:
        columns, rows = case.query(sql)
    emit_rows(columns, rows, fmt, output)
