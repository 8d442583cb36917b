"""The README, --help and CHANGELOG stay true to the code."""

from __future__ import annotations

import re

from click.testing import CliRunner
from conftest import REPO

from tokentrail import __version__
from tokentrail.case.views import VIEWS
from tokentrail.cli import main
from tokentrail.sources.registry import formats_markdown

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_formats_table_is_generated_from_the_mappings():
    assert formats_markdown() in README


def test_readme_first_screen_has_exactly_the_two_commands_and_ci_runs_the_test_one():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block
    commands = [ln for ln in first_block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert len(commands) == 2
    assert "tokentrail scan sample-logs/" in commands[0]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci


def test_readme_documents_every_command_and_view():
    for name in main.commands:
        assert f"tokentrail {name}" in README
    for view in VIEWS:
        assert f"`{view}`" in README


def test_readme_queries_run_on_the_sample_case(tmp_path):
    db = tmp_path / "s.duckdb"
    r = CliRunner().invoke(main, ["ingest", str(REPO / "sample-logs"), "--db", str(db), "-q"])
    assert r.exit_code == 0, r.output
    sql_block = re.search(r"```sql\n(.*?)```", README, re.S)
    assert sql_block
    for chunk in sql_block.group(1).split(";"):
        stmt = "\n".join(ln for ln in chunk.splitlines() if not ln.startswith("--")).strip()
        if not stmt:
            continue
        q = CliRunner().invoke(main, ["query", stmt, "--db", str(db), "--format", "json"])
        assert q.exit_code == 0, (stmt, q.output)


def test_changelog_has_unreleased_section_and_current_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert __version__ in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_readme_rules_table_is_generated_from_the_rule_files():
    from tokentrail.rules.model import rules_markdown

    assert rules_markdown() in README


def test_readme_policy_example_is_a_valid_policy():
    from tokentrail.provenance.policy import parse_policy

    block = re.search(r"## Policy.*?```toml\n(.*?)```", README, re.S)
    assert block
    policy = parse_policy(block.group(1), file="README.md")
    assert policy.workload_of("ip:10.42.1.33/python-requests") == "coder"
    assert policy.workload_of("spiffe://acme.example/ns/istio-system/sa/acme-gateway",
                              role="transport") == "gateway"
