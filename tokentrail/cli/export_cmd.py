"""`tokentrail export --parquet DIR`: a case as a Parquet lake (partitioned by day)."""

from __future__ import annotations

import click

from tokentrail.case.store import resolve_db_path
from tokentrail.scale.lake import MANIFEST, export_case, missing_derived_tables

from ..analyse import analyse
from ..errors import InputError, UsageError
from ..rules import load_rules
from .common import db_option, load_policy_option, open_case, policy_option, say


@click.command("export", epilog="""\b
Examples:
  tokentrail export --parquet lake/ --db case.duckdb
  tokentrail export --parquet lake/ --db case.duckdb --overwrite
  tokentrail query "select format, count(*) from events group by 1" --db lake/
  tokentrail scan --engine spark --lake lake/
  aws s3 sync lake/ s3://bucket/cases/incident-42/     # then --db / --lake s3://...

\b
Layout: DIR/tokentrail-lake.json (schema version, tokentrail version, every table's
columns and row count), DIR/events/day=YYYY-MM-DD/format=NAME/*.parquet, and
DIR/{tokens,token_holders,links,findings}/day=YYYY-MM-DD/*.parquet, DIR/sources/,
DIR/rejects/. Days are UTC. The lake holds what the case holds: no raw token.
""")
@click.option("--parquet", "parquet_dir", required=True, metavar="DIR",
              help="Folder to write the lake to (created; must be empty, or a lake with --overwrite).")
@db_option
@policy_option
@click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
              help="Also load the rules in DIR (repeatable) for the findings table.")
@click.option("--no-analyse", "no_analyse", is_flag=True,
              help="Export the derived tables as the last scan left them (default: analyse first).")
@click.option("--overwrite", is_flag=True, help="Replace an existing lake in DIR.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def export_cmd(parquet_dir: str, db: str | None, policy_file: str | None, rules_dirs: tuple[str, ...],
               no_analyse: bool, overwrite: bool, quiet: bool) -> None:
    """Write the case (events, tokens, token holders, links, findings) as Parquet for engines
    where the data lives: Spark, Trino, BigQuery, Snowflake, or DuckDB itself.

    The case is analysed first (lineage, classification, rules; --policy, --rules) so the
    derived tables match the events; --no-analyse exports them as they are.
    """
    db_path = resolve_db_path(db)
    with open_case(db_path, read_only=False) as case:
        count = case.con.execute("SELECT count(*) FROM events").fetchone()
        if not count or not count[0]:
            raise InputError(f"case {db_path} has no events: nothing to export")
        if no_analyse:
            missing = missing_derived_tables(case.con)
            if missing:
                raise UsageError(f"the case has no {', '.join(missing)} yet; drop --no-analyse "
                                 "(or run `tokentrail scan --db CASE` first)")
        else:
            analyse(case.con, policy=load_policy_option(policy_file), rules=load_rules(rules_dirs))
        report = export_case(case, parquet_dir, overwrite=overwrite)
    if not quiet:
        for name, info in report.tables.items():
            parts = ", ".join(info["partition_by"]) or "not partitioned"
            say(f"{name}: {info['rows']} row(s) in {info['files']} file(s) ({parts})")
        say(f"wrote {report.location} ({MANIFEST} records the schema version)")
