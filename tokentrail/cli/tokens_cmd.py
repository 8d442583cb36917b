"""`tokentrail tokens` and `tokentrail holders`: every token with its holders, and the reverse."""

from __future__ import annotations

import click
import orjson

from tokentrail.case.store import Case, resolve_db_path
from tokentrail.provenance.classify import classify
from tokentrail.provenance.lineage import build_lineage

from ..analyse import install_policy
from ..results import holder_rows, token_rows, tokens_payload
from .common import (
    db_option,
    emit_rows,
    load_policy_option,
    open_case,
    open_output,
    output_options,
    policy_option,
)


def _analysed_case(db: str | None, policy_file: str | None) -> Case:
    case = open_case(resolve_db_path(db), read_only=False)
    sql = install_policy(case.con, load_policy_option(policy_file))
    build_lineage(case.con)
    classify(case.con, sql)
    return case


@click.command("tokens", epilog="""\b
Examples:
  tokentrail tokens
  tokentrail tokens --format json -o tokens.json
""")
@db_option
@policy_option
@output_options
def tokens_cmd(db: str | None, policy_file: str | None, fmt: str, output: str) -> None:
    """List every token with each holder that presented it and that holder's classification."""
    with _analysed_case(db, policy_file) as case:
        if fmt == "json":
            with open_output(output) as stream:
                stream.write(orjson.dumps(tokens_payload(case.con), option=orjson.OPT_INDENT_2)
                             .decode() + "\n")
            return
        columns, rows = token_rows(case.con)
    emit_rows(columns, rows, fmt, output)


@click.command("holders", epilog="""\b
Examples:
  tokentrail holders
  tokentrail holders --format csv -o holders.csv
""")
@db_option
@policy_option
@output_options
def holders_cmd(db: str | None, policy_file: str | None, fmt: str, output: str) -> None:
    """List every holder: the tokens it presented and how each presentation was classified."""
    with _analysed_case(db, policy_file) as case:
        columns, rows = holder_rows(case.con)
    emit_rows(columns, rows, fmt, output)
