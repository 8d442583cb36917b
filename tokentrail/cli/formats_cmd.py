"""`tokentrail formats`: what each built-in format reads and provides."""

from __future__ import annotations

from pathlib import Path

import click

from tokentrail.case.schema import EVENT_COLUMNS, PSEUDO_COLUMNS

from ..sources.registry import builtin_mappings, get_mapping
from .common import emit_rows, output_options


@click.command("formats", epilog="""\b
Examples:
  tokentrail formats
  tokentrail formats envoy            # print the mapping, a template for your own
  tokentrail formats --columns        # the normalised event columns a mapping fills
""")
@click.argument("name", required=False)
@click.option("--columns", is_flag=True, help="List the event columns a mapping can set.")
@output_options
def formats_cmd(name: str | None, columns: bool, fmt: str, output: str) -> None:
    """List the built-in log formats and what evidence each provides."""
    if columns:
        col_rows = [(n, t, d) for n, t, d in EVENT_COLUMNS]
        col_rows += [(n, "(input only)", d) for n, d in PSEUDO_COLUMNS.items()]
        emit_rows(["column", "type", "meaning"], col_rows, fmt, output)
        return
    if name:
        mapping = get_mapping(name)
        click.echo(Path(mapping.source).read_text(encoding="utf-8"), nl=False)
        return
    rows = [
        (m.name, m.title, m.provides.get("token_id", ""), m.provides.get("holder", ""),
         m.provides.get("issuance", ""), m.provides.get("limits", ""))
        for m in builtin_mappings()
    ]
    emit_rows(["format", "title", "token id", "holder evidence", "issuance", "cannot show"],
              rows, fmt, output)
