"""From events to findings: lineage, classification, rules. One call for the CLI and notebooks."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from tokentrail.case.views import refresh_derived_views
from tokentrail.provenance.classify import PolicySQL, classify
from tokentrail.provenance.lineage import build_lineage
from tokentrail.provenance.policy import Policy, holder_workload_sql, ip_in_network_sql
from tokentrail.rules.findings import Finding
from tokentrail.rules.incidents import Incident, build_incidents

from .rules import Rule, load_rules, run_rules
from .rules.runner import RuleFailure

SETTING_MACRO = (
    "CREATE OR REPLACE TEMP MACRO tt_setting(k, dflt) AS "
    "coalesce((SELECT TRY_CAST(value AS DOUBLE) FROM policy_settings WHERE key = k), dflt)"
)


@dataclass
class Analysis:
    findings: list[Finding]
    rules: list[Rule]
    failed: list[RuleFailure] = field(default_factory=list)  # with keep_going only
    incidents: list[Incident] = field(default_factory=list)


def install_policy(con: duckdb.DuckDBPyConnection, policy: Policy | None) -> PolicySQL:
    """Install the policy's tables (empty ones without a policy, so every rule binds) and say
    how the classifier asks it about a holder."""
    policy = policy or Policy()
    policy.install(con)
    con.execute(SETTING_MACRO)
    has_trusted = bool(policy.networks.trusted)
    return PolicySQL(
        workload_of=holder_workload_sql("{h}", role="workload"),
        is_transport=f"{holder_workload_sql('{h}', role='transport')} IS NOT NULL",
        in_nat=ip_in_network_sql("tt_holder_ip({h})", "nat"),
        is_trusted_net=(ip_in_network_sql("tt_holder_ip({h})", "trusted") if has_trusted
                        else "NULL"),
        skew_seconds=policy.clock_skew_s,
    )


def analyse(con: duckdb.DuckDBPyConnection, *, policy: Policy | None = None,
            rules: list[Rule] | None = None, keep_going: bool = False) -> Analysis:
    """Rebuild lineage, classify every (token, holder) pair, run the rules, group the
    findings into incidents.

    A rule that fails raises RuleError (after the others ran); with keep_going the failed
    rules are listed in `Analysis.failed` and the other rules' findings returned."""
    policy_sql = install_policy(con, policy)
    build_lineage(con)
    classify(con, policy_sql)
    refresh_derived_views(con)
    rules = load_rules() if rules is None else rules
    failed: list[RuleFailure] | None = [] if keep_going else None
    findings = run_rules(con, rules, failed)
    return Analysis(findings=findings, rules=rules, failed=failed or [],
                    incidents=build_incidents(con, findings))
