"""`tokentrail policy suggest`: a starter policy from a case, every line with its evidence."""

from __future__ import annotations

import click

from tokentrail.case.store import resolve_db_path
from tokentrail.provenance.classify import classify
from tokentrail.provenance.lineage import build_lineage
from tokentrail.provenance.policy_suggest import suggest_policy

from ..analyse import install_policy
from .common import db_option, open_case, open_output


@click.group("policy", epilog="""\b
Examples:
  tokentrail policy suggest --db case.duckdb -o tokentrail.toml
""")
def policy_cmd() -> None:
    """Work with policy files (workloads, aliases, delegations, networks)."""


@policy_cmd.command("suggest", epilog="""\b
Examples:
  tokentrail policy suggest --db case.duckdb -o tokentrail.toml
  tokentrail scan --db case.duckdb --policy tokentrail.toml

\b
Exit codes: 0 written; 2 usage error; 3 input error (no case).
""")
@db_option
@click.option("-o", "--output", "output", default="-", metavar="FILE", show_default=True,
              help="Write to FILE instead of stdout.")
def suggest_cmd(db: str | None, output: str) -> None:
    """Write a starter policy from what the case shows: workloads with the client ids and
    SPIFFE ids that are the same party, the addresses each uses, the delegations observed.
    Every line is commented with its evidence; review it before use. Classified without a
    policy, so the suggestion does not feed on itself."""
    with open_case(resolve_db_path(db)) as case:
        build_lineage(case.con)
        classify(case.con, install_policy(case.con, None))
        text = suggest_policy(case.con)
    with open_output(output) as stream:
        stream.write(text)
