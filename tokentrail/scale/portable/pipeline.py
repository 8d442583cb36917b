"""The pipeline as DuckDB runs it: every lineage, classification and rule statement recorded
from the real code on an empty case (so a new step is exported without a change here), with
`SELECT * EXCLUDE` expanded by DuckDB itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from tokentrail.rules.model import Rule

from .macros import Untranslatable, _first_line, _parse, _rename_len


@dataclass(frozen=True)
class Step:
    """One statement of the pipeline, in DuckDB SQL.

    kind: "table" (`CREATE OR REPLACE [TEMP] TABLE target AS sql`), "update" (`sql` is an
    `UPDATE target ... FROM ...`; `columns` are the target's columns), "rule" (`sql` is a
    rule's query returning the hit columns), "policy" (`sql` is a query producing a policy
    table's rows; `columns` are name/type pairs).
    """

    stage: str  # lineage | classify | rules | policy
    name: str
    kind: str
    sql: str
    target: str | None = None
    temp: bool = False
    columns: tuple[tuple[str, str], ...] = ()
    rule: Rule | None = None


@dataclass
class Translation:
    step: Step
    dialect: str
    sql: str | None = None  # the full statement in the dialect
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Recorder:
    """A DuckDB connection that records the statements that change tables (and still executes
    everything, so the Python code around them sees real answers)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, stage: str) -> None:
        self._con = con
        self.stage = stage
        self.steps: list[Step] = []

    def execute(self, sql: str, parameters: Any = None) -> Any:
        for tree in statements(sql):
            kind = statement_kind(tree)
            if kind == "read":
                continue
            if parameters:
                raise Untranslatable(f"{self.stage} runs a statement with parameters, which cannot "
                                     "be transpiled: " + sql.strip().splitlines()[0][:80])
            self.steps.append(_record(self._con, tree, kind, self.stage, len(self.steps) + 1))
        return self._con.execute(sql, parameters) if parameters else self._con.execute(sql)

    sql = execute

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def statements(sql: str) -> list[exp.Expression]:
    """The statements of a (possibly multi-statement) DuckDB SQL string, parsed."""
    try:
        trees = sqlglot.parse(_rename_len(sql), read="duckdb")
    except ParseError as exc:
        raise Untranslatable(f"sqlglot cannot parse the DuckDB SQL: {_first_line(exc)}") from None
    return [cast(exp.Expression, t) for t in trees if t is not None]


def statement_kind(tree: exp.Expression) -> str:
    """read | table (CREATE ... AS query) | create (CREATE TABLE with columns) | update |
    delete | drop | other."""
    if isinstance(tree, exp.Query):
        return "read"
    if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "TABLE":
        return "table" if tree.expression is not None else "create"
    if isinstance(tree, exp.Update):
        return "update"
    if isinstance(tree, exp.Delete):
        return "delete"
    if isinstance(tree, exp.Drop) and str(tree.args.get("kind") or "").upper() in ("TABLE", "VIEW"):
        return "drop"
    return "other"


def table_name(tree: exp.Expression) -> str:
    node = tree.this
    if isinstance(node, exp.Schema):
        node = node.this
    return node.name if isinstance(node, exp.Table) else str(node)


def is_temp(tree: exp.Expression) -> bool:
    props = tree.args.get("properties")
    return props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(r[0]), str(r[1])) for r in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall())


def _column_names(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    cur = con.execute(f"SELECT * FROM ({query}) AS _tt_probe LIMIT 0")
    return [d[0] for d in cur.description]


def _star_except(star: exp.Star) -> list[exp.Expression]:
    return list(star.args.get("except_") or star.args.get("except") or [])


def _expand_excluding_stars(tree: exp.Expression, con: duckdb.DuckDBPyConnection) -> exp.Expression:
    """`SELECT * EXCLUDE (a, b), ...` -> explicit columns, named by DuckDB (not every engine
    has EXCLUDE / EXCEPT on a star)."""
    for select in list(tree.find_all(exp.Select)):
        stars = [e for e in select.expressions if isinstance(e, exp.Star) and _star_except(e)]
        if not stars:
            continue
        probe = select.copy()
        probe.set("expressions", [exp.Star()])
        for key in ("order", "limit", "offset"):
            probe.set(key, None)
        root = select.root()
        if root is not select and root.args.get("with_") is not None and probe.args.get("with_") is None:
            probe.set("with_", root.args["with_"].copy())
        names = _column_names(con, probe.sql("duckdb"))
        new: list[exp.Expression] = []
        for e in select.expressions:
            if isinstance(e, exp.Star) and _star_except(e):
                dropped = {c.name.lower() for c in _star_except(e)}
                new.extend(exp.column(n, quoted=True) for n in names if n.lower() not in dropped)
            else:
                new.append(e)
        select.set("expressions", new)
    return tree


def _record(con: duckdb.DuckDBPyConnection, tree: exp.Expression, kind: str, stage: str, n: int) -> Step:
    if kind == "table":
        target = table_name(tree)
        query = _expand_excluding_stars(tree.expression.copy(), con)
        return Step(stage, f"{stage} {n}: {target}", "table", query.sql("duckdb"), target, is_temp(tree))
    if kind == "update":
        target = table_name(tree)
        return Step(stage, f"{stage} {n}: {target} (update)", "update", tree.sql("duckdb"), target,
                    columns=_table_columns(con, target))
    if kind in ("create", "delete", "drop"):
        target = table_name(tree)
        return Step(stage, f"{stage} {n}: {target} ({kind})", kind, tree.sql("duckdb"), target,
                    is_temp(tree))
    raise Untranslatable(f"{stage} runs a statement tokentrail cannot carry to another engine: "
                         f"{tree.sql('duckdb')[:80]}")


def policy_steps(con: duckdb.DuckDBPyConnection) -> list[Step]:
    """The policy tables as installed on `con` (Policy.install): one step each."""
    steps = []
    for (table,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'policy\\_%' "
            "ESCAPE '\\' ORDER BY table_name").fetchall():
        cols = tuple((str(r[0]), str(r[1])) for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position", [table]).fetchall())
        steps.append(Step("policy", f"policy: {table}", "policy", f"SELECT * FROM {table}", table,
                          temp=True, columns=cols))
    return steps


def pipeline(policy: Any = None, rules: list[Rule] | None = None) -> list[Step]:
    """Every statement of a scan, in order: policy tables, lineage, classification, rules.

    Recorded by running the DuckDB engine's own functions on an empty case, so the SQL is the
    one `tokentrail scan` runs (with this policy's settings)."""
    from tokentrail.analyse import install_policy
    from tokentrail.case.store import Case
    from tokentrail.provenance.classify import classify
    from tokentrail.provenance.lineage import build_lineage
    from tokentrail.rules import load_rules

    rules = load_rules() if rules is None else rules
    with Case() as case:
        con = case.con
        policy_sql = install_policy(con, policy)
        steps = policy_steps(con)
        lineage = _Recorder(con, "lineage")
        build_lineage(lineage)  # type: ignore[arg-type]
        classification = _Recorder(con, "classify")
        classify(classification, policy_sql)  # type: ignore[arg-type]
        steps += lineage.steps + classification.steps
        for rule in rules:
            tree = _expand_excluding_stars(_parse(rule.sql), con)
            steps.append(Step("rules", rule.id, "rule", tree.sql("duckdb"), rule=rule))
    return steps
