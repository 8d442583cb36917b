"""`tokentrail rules list|show|test`."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from tokentrail.scale.portable import DIALECTS, export

from ..errors import ExitCode, UsageError
from ..rules import load_rules
from ..rules.fixtures import test_rule
from .common import emit_rows, load_policy_option, open_output, output_options, policy_option, say

rules_dir_option = click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
                                help="Also load the rules in DIR (repeatable).")


@click.group("rules", epilog="""\b
Examples:
  tokentrail rules list
  tokentrail rules show TT005
  tokentrail rules test --rules my-rules/
  tokentrail rules export --dialect spark -o tokentrail-spark.sql
""")
def rules_cmd() -> None:
    """Detection rules: TOML metadata plus SQL, built in or from --rules DIR; `export` prints
    them (with lineage and classification) for Spark, Trino, BigQuery or Snowflake."""


@rules_cmd.command("list", epilog="Example:\n  tokentrail rules list --format json")
@rules_dir_option
@output_options
def list_cmd(rules_dirs: tuple[str, ...], fmt: str, output: str) -> None:
    """List the rules with severity, classification and ATT&CK ids."""
    rows = [(r.id, r.severity, r.classification, r.title, " ".join(r.attack))
            for r in load_rules(rules_dirs)]
    emit_rows(["id", "severity", "classification", "title", "attack"], rows, fmt, output)


@rules_cmd.command("show", epilog="Example:\n  tokentrail rules show TT001")
@click.argument("rule_id")
@rules_dir_option
def show_cmd(rule_id: str, rules_dirs: tuple[str, ...]) -> None:
    """Print one rule file (metadata, SQL, fixture)."""
    for r in load_rules(rules_dirs):
        if r.id.casefold() == rule_id.strip().casefold():
            click.echo(Path(r.source).read_text(encoding="utf-8"), nl=False)
            return
    raise UsageError(f"no rule {rule_id!r}; see `tokentrail rules list`")


@rules_cmd.command("test", epilog="Example:\n  tokentrail rules test --rules my-rules/")
@rules_dir_option
def test_cmd(rules_dirs: tuple[str, ...]) -> None:
    """Run every rule's fixture through the whole engine; exit 1 if one fails."""
    failed = 0
    for r in load_rules(rules_dirs):
        result = test_rule(r)
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {r.id} {result.message}")
        failed += not result.ok
    if failed:
        say(f"{failed} rule fixture(s) failed")
        raise SystemExit(int(ExitCode.FINDINGS))


@rules_cmd.command("export", epilog="""\b
Examples:
  tokentrail rules export --dialect spark
  tokentrail rules export --dialect trino --policy tokentrail.toml -o tokentrail.sql
  tokentrail rules export --dialect bigquery --format json

\b
Prints, in order: the policy tables (DDL and rows), the lineage and classification steps
(CREATE TABLE ... AS, MERGE) and every rule's query, transpiled from DuckDB SQL with sqlglot
and tokentrail's macros inlined. A statement that cannot be translated is printed as a
comment naming it and the reason (also on stderr).
""")
@click.option("--dialect", required=True, type=click.Choice(DIALECTS), help="Target SQL dialect.")
@rules_dir_option
@policy_option
@click.option("--format", "fmt", type=click.Choice(("sql", "json")), default="sql", show_default=True,
              help="sql: one script; json: one object per statement (stage, name, sql, error).")
@click.option("-o", "--output", "output", default="-", metavar="FILE", show_default=True,
              help="Write to FILE instead of stdout.")
def export_cmd(dialect: str, rules_dirs: tuple[str, ...], policy_file: str | None, fmt: str,
               output: str) -> None:
    """Print the lineage, classification and every rule as SQL for another engine."""
    result = export(dialect, policy=load_policy_option(policy_file), rules=load_rules(rules_dirs))
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            stream.write(result.text())
    for t in result.failed:
        say(f"not translated to {dialect}: {t.step.name}: {t.error}")
