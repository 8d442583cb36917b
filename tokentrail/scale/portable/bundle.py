"""Whole exports for a lakehouse team to schedule: every step translated, the policy as
statements, untranslatable steps named rather than printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot

from tokentrail.rules.model import HIT_COLUMNS, Rule

from .macros import DIALECTS, Untranslatable, _parse, inline_macros, macro_names
from .pipeline import Step, Translation, pipeline, statement_kind, statements
from .transpile import _transpile_tree, _update_as_merge, delete_as_select, transpile, update_as_select


def _policy_statements(step: Step, dialect: str, con: duckdb.DuckDBPyConnection | None) -> str:
    cols = ", ".join(f'"{n}" {t}' for n, t in step.columns)
    create = sqlglot.transpile(f'CREATE TABLE {step.target} ({cols})', read="duckdb", write=dialect)[0]
    create = create.replace("CREATE TABLE", "CREATE OR REPLACE TABLE", 1)
    out = [create]
    if con is not None:
        rows = con.execute(step.sql).fetchall()
        if rows:
            values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
            out.append(sqlglot.transpile(f"INSERT INTO {step.target} VALUES {values}", read="duckdb",
                                         write=dialect)[0])
    return ";\n".join(out)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def translate(step: Step, dialect: str, *, policy_con: duckdb.DuckDBPyConnection | None = None) -> Translation:
    """`step` as one complete statement in `dialect`, or the reason it cannot be."""
    t = Translation(step=step, dialect=dialect)
    try:
        if step.kind == "policy":
            t.sql = _policy_statements(step, dialect, policy_con)
        elif step.kind == "update":
            t.sql = _transpile_tree(_update_as_merge(step), dialect, step.name)
        elif step.kind in ("create", "delete", "drop"):
            t.sql = _transpile_tree(_parse(step.sql), dialect, step.name)
        elif step.kind == "table":
            query = _transpile_tree(_parse(step.sql), dialect, step.name)
            if dialect == "spark" and step.temp:
                t.sql = f"CREATE OR REPLACE TEMPORARY VIEW {step.target} AS\n{query}"
            else:
                temp = "TEMPORARY " if step.temp and dialect in ("bigquery", "snowflake") else ""
                t.sql = f"CREATE OR REPLACE {temp}TABLE {step.target} AS\n{query}"
        else:
            t.sql = _transpile_tree(_parse(step.sql), dialect, step.name)
    except Untranslatable as exc:
        t.error = exc.reason
    return t


@dataclass
class Export:
    dialect: str
    translations: list[Translation] = field(default_factory=list)

    @property
    def failed(self) -> list[Translation]:
        return [t for t in self.translations if not t.ok]

    def text(self) -> str:
        from tokentrail import __version__

        lines = [f"-- tokentrail {__version__}: lineage, classification and rules as {self.dialect} SQL",
                 "-- transpiled from DuckDB SQL by sqlglot; tokentrail macros inlined.",
                 "-- Input: an `events`, `sources` table with the case schema (e.g. a lake written",
                 "-- by `tokentrail export --parquet`). Run the statements in order; each rule's",
                 f"-- query returns the hit columns ({', '.join(HIT_COLUMNS)}).",
                 "-- Recorded from the DuckDB engine on an empty case: a step it runs only when the",
                 "-- events call for it (agent attribution from OpenTelemetry spans) is not included;",
                 "-- `tokentrail scan --engine spark` runs those too.", ""]
        for t in self.translations:
            header = f"-- {t.step.name}"
            if t.step.rule is not None:
                r = t.step.rule
                header = f"-- rule {r.id} ({r.severity}, {r.classification}): {r.title}"
            lines.append(header)
            if t.ok:
                lines.append((t.sql or "").rstrip().rstrip(";") + ";")
            else:
                lines.append(f"-- NOT TRANSLATED: {t.error}")
            lines.append("")
        return "\n".join(lines)

    def as_json(self) -> list[dict[str, Any]]:
        return [{"stage": t.step.stage, "name": t.step.name,
                 "rule": t.step.rule.id if t.step.rule else None, "target": t.step.target,
                 "sql": t.sql, "error": t.error} for t in self.translations]


def export(dialect: str, *, policy: Any = None, rules: list[Rule] | None = None) -> Export:
    """Every statement of a scan in `dialect` (untranslatable ones carry their reason)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, not {dialect!r}")
    from tokentrail.analyse import install_policy
    from tokentrail.case.store import Case

    steps = pipeline(policy, rules)
    out = Export(dialect)
    with Case() as case:
        install_policy(case.con, policy)
        for step in steps:
            out.translations.append(translate(step, dialect, policy_con=case.con))
    return out


__all__ = ["DIALECTS", "Export", "Step", "Translation", "Untranslatable", "delete_as_select", "export",
           "inline_macros", "macro_names", "pipeline", "statement_kind", "statements",
           "translate", "transpile", "update_as_select"]
