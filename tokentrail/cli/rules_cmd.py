"""`tokentrail rules list|show|test`."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ExitCode, UsageError
from ..rules import load_rules
from ..rules.fixtures import test_rule
from .common import emit_rows, output_options, say

rules_dir_option = click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
                                help="Also load the rules in DIR (repeatable).")


@click.group("rules", epilog="""\b
Examples:
  tokentrail rules list
  tokentrail rules show TT005
  tokentrail rules test --rules my-rules/
""")
def rules_cmd() -> None:
    """Detection rules: TOML metadata plus SQL, built in or from --rules DIR."""


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
        if r.id == rule_id:
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
