"""From events to findings: lineage, classification, rules. One call for the CLI and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from .classify import DEFAULT_SKEW_SECONDS, PolicySQL, classify
from .findings import Finding
from .lineage import build_lineage
from .rules import Rule, load_rules, run_rules

SETTING_MACRO = (
    "CREATE OR REPLACE TEMP MACRO tt_setting(k, dflt) AS "
    "coalesce((SELECT TRY_CAST(value AS DOUBLE) FROM policy_settings WHERE key = k), dflt)"
)


@dataclass
class Analysis:
    findings: list[Finding]
    rules: list[Rule]


def install_policy(con: duckdb.DuckDBPyConnection, policy: Any | None) -> PolicySQL:
    """Install the policy's tables (empty ones without a policy) and say how SQL asks it."""
    if policy is not None:
        policy.install(con)
        sql: PolicySQL = policy.classifier_sql()
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE policy_settings (key VARCHAR, value VARCHAR)")
        con.execute("INSERT INTO policy_settings VALUES ('clock_skew_s', ?)",
                    [str(DEFAULT_SKEW_SECONDS)])
        sql = PolicySQL()
    con.execute(SETTING_MACRO)
    return sql


def analyse(con: duckdb.DuckDBPyConnection, *, policy: Any | None = None,
            rules: list[Rule] | None = None) -> Analysis:
    """Rebuild lineage, classify every (token, holder) pair, run the rules."""
    policy_sql = install_policy(con, policy)
    build_lineage(con)
    classify(con, policy_sql)
    rules = load_rules() if rules is None else rules
    return Analysis(findings=run_rules(con, rules), rules=rules)
