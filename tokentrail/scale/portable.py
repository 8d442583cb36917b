"""tokentrail's SQL on other engines: DuckDB SQL transpiled to Spark, Trino, BigQuery, Snowflake.

The lineage, classification and rule SQL is written in DuckDB's dialect, with the
DuckDB-only parts behind named macros (`tt_*`, sqlmacros.py and netmatch.py). To run it
elsewhere, each statement is:

1. **recorded** exactly as the DuckDB engine runs it: `build_lineage` and `classify` are called
   on an empty in-memory case through a connection that records every statement (so a step
   added to lineage.py is picked up without a change here), and each rule's SQL is taken as is;
   `SELECT * EXCLUDE (...)` is expanded to explicit columns there, with DuckDB naming them;
2. **parsed** with sqlglot (DuckDB dialect);
3. **inlined**: every call of a `tt_*` macro is replaced by the macro's body with its arguments
   substituted, repeatedly, so nothing DuckDB-only is left behind; the macro definitions are
   read at run time from sqlmacros.MACROS, netmatch.ALL_NET_MACROS and analyse.SETTING_MACRO;
4. **rewritten** where a DuckDB construct has no sqlglot translation (a small table of
   hand-written transforms below: list comprehensions, ordered list aggregates on Spark,
   `to_seconds`, `regexp_full_match`, `list_bool_and`, `UPDATE ... FROM`);
5. **transpiled** with sqlglot and parsed back in the target dialect. A statement that cannot be
   translated raises `Untranslatable` with the reason; `export` names it instead of printing it.

Nothing here imports click or rich; the Spark engine (scale/spark.py) runs what this produces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError

from tokentrail.rules.model import HIT_COLUMNS, Rule

DIALECTS = ("spark", "trino", "bigquery", "snowflake")
MACRO_PREFIX = "tt_"


class Untranslatable(Exception):
    """A statement has no translation to a dialect; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# The pipeline, as DuckDB runs it


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


# ---------------------------------------------------------------------------------------------
# Parsing and macro inlining


def _rename_len(sql: str) -> str:
    """DuckDB's len() is list length in every tokentrail statement; sqlglot reads it as string
    length. Rename the calls (tokens, so never inside a string or a comment) to array_length,
    which sqlglot maps per engine."""
    try:
        tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(sql)
    except SqlglotError:
        return sql
    out, at = [], 0
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token.text.lower() == "len" and following.token_type == sqlglot.TokenType.L_PAREN:
            out.append(sql[at:token.start])
            out.append("array_length")
            at = token.end + 1
    out.append(sql[at:])
    return "".join(out)


def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(_rename_len(sql), read="duckdb")
    except ParseError as exc:
        raise Untranslatable(f"sqlglot cannot parse the DuckDB SQL: {_first_line(exc)}") from None
    if tree is None:
        raise Untranslatable("empty statement")
    return cast(exp.Expression, tree)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Hand-written replacements for macros whose DuckDB body uses something sqlglot cannot carry
# to other engines. Same semantics, DuckDB SQL. (None so far: list comprehensions are
# rewritten generally below.)
MACRO_OVERRIDES: dict[str, tuple[str, str]] = {}


@functools.lru_cache(maxsize=1)
def _macro_sources() -> dict[str, tuple[tuple[str, ...], str]]:
    from tokentrail.analyse import SETTING_MACRO
    from tokentrail.case import sqlmacros
    from tokentrail.provenance.netmatch import ALL_NET_MACROS

    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for name, params, body in (*sqlmacros.MACROS, *ALL_NET_MACROS):
        out[name.lower()] = (tuple(p.strip() for p in params.split(",") if p.strip()), body)
    m = re.match(r"\s*CREATE\s+OR\s+REPLACE\s+TEMP\s+MACRO\s+(\w+)\s*\(([^)]*)\)\s+AS\s+(.*)$",
                 SETTING_MACRO, re.S | re.I)
    if m:
        out[m.group(1).lower()] = (tuple(p.strip() for p in m.group(2).split(",")), m.group(3))
    for name, (params, body) in MACRO_OVERRIDES.items():
        out[name.lower()] = (tuple(p.strip() for p in params.split(",")), body)
    return out


@functools.cache
def _macro_tree(name: str) -> tuple[tuple[str, ...], exp.Expression]:
    params, body = _macro_sources()[name]
    return params, _parse(f"SELECT ({body})").expressions[0]


def macro_names() -> list[str]:
    return sorted(_macro_sources())


_BINDING_PARENTS = (exp.Column, exp.Table, exp.TableAlias, exp.Alias, exp.Dot)


def _substitute(body: exp.Expression, params: tuple[str, ...], args: list[exp.Expression]) -> exp.Expression:
    binding = {p.lower(): a for p, a in zip(params, args, strict=True)}

    def sub(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in binding:
            return exp.paren(binding[node.name.lower()].copy(), copy=False)
        if (isinstance(node, exp.Identifier) and node.name.lower() in binding
                and not isinstance(node.parent, _BINDING_PARENTS)
                and not (isinstance(node.parent, exp.Lambda) and node.arg_key == "expressions")
                and not (isinstance(node.parent, exp.Comprehension) and node.arg_key == "expression")):
            return exp.paren(binding[node.name.lower()].copy(), copy=False)
        return node

    return body.copy().transform(sub, copy=False)


def inline_macros(tree: exp.Expression, *, max_rounds: int = 64) -> exp.Expression:
    """Replace every tt_* macro call by its body (arguments substituted), until none is left."""
    macros = _macro_sources()
    for _ in range(max_rounds):
        calls = [n for n in tree.find_all(exp.Anonymous) if str(n.this).lower() in macros]
        if not calls:
            return tree
        for call in calls:
            name = str(call.this).lower()
            params, body = _macro_tree(name)
            if len(call.expressions) != len(params):
                raise Untranslatable(f"{name}() called with {len(call.expressions)} argument(s), "
                                     f"the macro takes {len(params)}")
            call.replace(exp.paren(_substitute(body, params, list(call.expressions)), copy=False))
    raise Untranslatable("macros nest too deeply to inline")


def _leftover_macros(tree: exp.Expression) -> list[str]:
    return sorted({str(n.this).lower() for n in tree.find_all(exp.Anonymous)
                   if str(n.this).lower().startswith(MACRO_PREFIX)})


# ---------------------------------------------------------------------------------------------
# Rewrites (same meaning in DuckDB; each makes one construct translatable)


def _comprehensions(node: exp.Expression) -> exp.Expression:
    """`[f(x) FOR x IN l IF c]` -> `list_transform(list_filter(l, x -> c), x -> f(x))`.

    (sqlglot binds the comprehension to the last operand of a binary body, `[a OR b FOR x IN
    l]` parses as `a OR (b FOR x IN l)`: the whole element expression is the body.)"""
    if not (isinstance(node, exp.Array) and len(node.expressions) == 1):
        return node
    element = node.expressions[0]
    comps = [c for c in element.find_all(exp.Comprehension)
             if c.find_ancestor(exp.Array) is node]
    if len(comps) != 1:
        return node
    comp = comps[0]
    var_name = comp.args["expression"].name
    if comp is element:
        body = comp.this.copy()
    else:
        body = element.copy()
        inner = next(c for c in body.find_all(exp.Comprehension) if c.find_ancestor(exp.Array) is None)
        inner.replace(inner.this.copy())

    def as_lambda(expr: exp.Expression) -> exp.Lambda:
        expr = expr.copy().transform(
            lambda n: exp.to_identifier(var_name) if isinstance(n, exp.Column) and not n.table
            and n.name == var_name else n, copy=False)
        return exp.Lambda(this=expr, expressions=[exp.to_identifier(var_name)])

    source: exp.Expression = comp.args["iterator"].copy()
    if comp.args.get("condition") is not None:
        source = exp.ArrayFilter(this=source, expression=as_lambda(comp.args["condition"]))
    return exp.Transform(this=source, expression=as_lambda(body))


def _post_order(tree: exp.Expression, fn: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """Apply `fn` to every node, children before their parents (so a rewrite sees rewritten
    arguments, and nested constructs are all reached)."""
    root = tree
    for node in reversed(list(tree.dfs())):
        new = fn(cast(exp.Expression, node))
        if new is not node:
            if node is root:
                root = new
            else:
                node.replace(new)
    return root


def _inline_windows(node: exp.Expression) -> exp.Expression:
    """`OVER w ... WINDOW w AS (spec)` -> `OVER (spec)` (not every dialect or generator keeps
    named windows)."""
    if isinstance(node, exp.Select) and node.args.get("windows"):
        named = {w.name.lower(): w for w in node.args["windows"]}
        for window in node.find_all(exp.Window):
            alias = window.args.get("alias")
            spec_name = alias.name.lower() if isinstance(alias, exp.Identifier) else None
            if spec_name in named and window.args.get("partition_by") is None \
                    and window.args.get("order") is None:
                spec = named[spec_name]
                for key in ("partition_by", "order", "spec"):
                    if spec.args.get(key) is not None:
                        window.set(key, spec.args[key].copy())
                window.set("alias", None)
        node.set("windows", None)
    return node


def _anon(node: exp.Expression, name: str) -> bool:
    return isinstance(node, exp.Anonymous) and str(node.this).lower() == name


def _fn(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _lambda(var: str, body: exp.Expression) -> exp.Lambda:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(var)])


def _generic(dialect: str) -> Callable[[exp.Expression], exp.Expression]:
    def rewrite(node: exp.Expression) -> exp.Expression:
        node = _comprehensions(node)
        node = _inline_windows(node)
        if isinstance(node, exp.Filter):
            # any_value(x) FILTER (WHERE c) -> any_value(CASE WHEN c THEN x END): DuckDB's
            # any_value skips NULLs, and generators order FILTER / IGNORE NULLS differently
            agg = node.this.this if isinstance(node.this, exp.IgnoreNulls) else node.this
            if isinstance(agg, exp.AnyValue) and isinstance(node.expression, exp.Where):
                case = exp.Case(ifs=[exp.If(this=node.expression.this.copy(), true=agg.this.copy())])
                return exp.IgnoreNulls(this=exp.AnyValue(this=case))
        if isinstance(node, exp.Mode) and isinstance(node.this, exp.Order):
            # mode(x ORDER BY x): DuckDB's deterministic "most frequent, lowest on a tie".
            # Spark says it as mode(x, true); elsewhere the tie-break is the engine's own
            value = node.this.this.copy()
            if dialect == "spark":
                return _fn("mode", value, exp.true())
            return exp.Mode(this=value)
        if _anon(node, "list_bool_and") or _anon(node, "list_bool_or"):
            # NULL elements are ignored, as DuckDB's list aggregates do
            arr = node.expressions[0]
            var = exp.to_identifier("_tt_b")
            kept = exp.ArrayFilter(this=arr, expression=_lambda("_tt_b", exp.Not(this=exp.Is(
                this=var.copy(), expression=exp.Null()))))
            if _anon(node, "list_bool_and"):
                pred = _lambda("_tt_b", exp.Not(this=exp.Paren(this=var.copy())))
            else:
                pred = _lambda("_tt_b", var.copy())
            hits = exp.ArraySize(this=exp.ArrayFilter(this=kept, expression=pred))
            if _anon(node, "list_bool_and"):
                return exp.paren(exp.EQ(this=hits, expression=exp.Literal.number(0)), copy=False)
            return exp.paren(exp.GT(this=hits, expression=exp.Literal.number(0)), copy=False)
        for unit, per_second in (("to_seconds", 1), ("to_milliseconds", 1000), ("to_microseconds", 1000000)):
            if _anon(node, unit):
                value = node.expressions[0]
                if per_second != 1:
                    value = exp.Div(this=exp.paren(value.copy(), copy=False),
                                    expression=exp.Literal.number(f"{per_second}.0"))
                return _to_seconds(value, dialect)
        if isinstance(node, exp.RegexpFullMatch):
            return _full_match(node, dialect)
        return node

    return rewrite


def _anchored(pattern: exp.Expression) -> exp.Expression:
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        return exp.Literal.string(f"^(?:{pattern.this})$")
    return exp.DPipe(this=exp.DPipe(this=exp.Literal.string("^(?:"), expression=pattern),
                     expression=exp.Literal.string(")$"))


def _full_match(node: exp.RegexpFullMatch, dialect: str) -> exp.Expression:
    if dialect == "snowflake":  # REGEXP_LIKE matches the whole string there
        return exp.RegexpLike(this=node.this, expression=node.expression)
    return exp.RegexpLike(this=node.this, expression=_anchored(node.expression))


def _to_seconds(value: exp.Expression, dialect: str) -> exp.Expression:
    if dialect == "spark":
        return _fn("make_dt_interval", exp.Literal.number(0), exp.Literal.number(0),
                   exp.Literal.number(0), value)
    if dialect == "trino":
        return exp.Mul(this=exp.paren(value, copy=False),
                       expression=exp.Interval(this=exp.Literal.string("1"), unit=exp.var("SECOND")))
    if dialect == "bigquery":
        return _fn("MAKE_INTERVAL", *(exp.Literal.number(0) for _ in range(5)),
                   exp.Cast(this=value, to=exp.DataType.build("BIGINT")))
    raise Untranslatable("uses interval arithmetic (a timestamp difference compared with a "
                         "duration); Snowflake has no interval values (it would need DATEDIFF)")


def _lookup_subquery(sub: exp.Subquery, select: exp.Select) -> tuple[exp.Table, str, exp.Expression, str] | None:
    """(table, key column, outer expression, value column) when `sub` is a correlated scalar
    lookup `(SELECT v FROM t WHERE k = <outer expression>)`, else None."""
    inner = sub.this
    if not isinstance(inner, exp.Select) or len(inner.expressions) != 1:
        return None
    if any(inner.args.get(k) for k in ("joins", "group", "order", "limit", "having", "with_", "distinct")):
        return None
    frm = inner.args.get("from_")
    where = inner.args.get("where")
    if frm is None or not isinstance(frm.this, exp.Table) or where is None or not isinstance(where.this, exp.EQ):
        return None
    table = frm.this
    talias = table.alias_or_name
    value = inner.expressions[0].unalias() if isinstance(inner.expressions[0], exp.Alias) else inner.expressions[0]
    if not isinstance(value, exp.Column) or value.table not in ("", talias):
        return None

    def inner_key(e: exp.Expression) -> bool:
        return isinstance(e, exp.Column) and e.table in ("", talias)

    def outer_only(e: exp.Expression) -> bool:
        cols = list(e.find_all(exp.Column))
        return bool(cols) and all(c.table and c.table != talias for c in cols) \
            and not any(isinstance(n, exp.Subquery) for n in e.find_all(exp.Subquery))

    a, b = where.this.this, where.this.expression
    if inner_key(a) and outer_only(b):
        return table, a.name, b, value.name
    if inner_key(b) and outer_only(a):
        return table, b.name, a, value.name
    return None


def _lookups_as_joins(node: exp.Expression) -> exp.Expression:
    """Correlated scalar lookups `(SELECT v FROM t WHERE k = <outer>)` -> one LEFT JOIN of t
    per distinct (t, k, outer) and a column reference. Spark plans each scalar subquery as a
    join of its own; the classifier asks the same lookup a dozen times per row, which sends
    Spark's optimizer into a very long search. Same result where k is unique in t (DuckDB
    refuses a scalar subquery that returns two rows)."""
    if not isinstance(node, exp.Select) or node.args.get("from_") is None:
        return node
    joins: dict[tuple[str, str, str], str] = {}
    for sub in list(node.find_all(exp.Subquery)):
        if sub.find_ancestor(exp.Select) is not node or sub.arg_key in ("this",) and isinstance(
                sub.parent, (exp.From, exp.Join)) or isinstance(sub.parent, (exp.In, exp.Exists)):
            continue
        found = _lookup_subquery(sub, node)
        if found is None:
            continue
        table, key, outer, value = found
        ident = (table.name, key, outer.sql("duckdb"))
        if ident not in joins:
            alias = f"_tt_lk{len(joins)}"
            joins[ident] = alias
            node.join(exp.Table(this=exp.to_identifier(table.name), alias=exp.TableAlias(this=exp.to_identifier(alias))),
                      on=exp.EQ(this=exp.column(key, table=alias), expression=outer.copy()),
                      join_type="left", copy=False)
        sub.replace(exp.column(value, table=joins[ident]))
    return node


def _grouped_subqueries(node: exp.Expression) -> exp.Expression:
    """In a grouped SELECT, a correlated scalar subquery outside any aggregate (DuckDB allows
    one that depends on group keys only, so it is one value per group) -> first(subquery),
    which is how Spark accepts it."""
    if not isinstance(node, exp.Select) or node.args.get("group") is None:
        return node
    for projection in node.expressions:
        for sub in list(projection.find_all(exp.Subquery)):
            if sub.find_ancestor(exp.Select) is not node or sub.find_ancestor(exp.AggFunc) is not None:
                continue
            if isinstance(sub.parent, (exp.In, exp.Exists)):
                continue
            sub.replace(_fn("first", sub.copy()))
    return node


def _spark(node: exp.Expression) -> exp.Expression:
    """Spark has no ordered or DISTINCT-ordered list aggregate: sort a list of structs."""
    node = _lookups_as_joins(node)
    node = _grouped_subqueries(node)
    if isinstance(node, exp.GroupConcat):
        # string_agg: the list built as below, joined (Spark's listagg fails next to another
        # DISTINCT aggregate, and older Sparks have none)
        separator = node.args.get("separator") or exp.Literal.string(",")
        return exp.ArrayToString(this=_spark(exp.ArrayAgg(this=node.this.copy())),
                                 expression=separator.copy())
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
        order = node.this
        inner = order.this
        keys = list(order.expressions)
        if any(k.args.get("desc") for k in keys):
            raise Untranslatable("a list aggregate ordered DESC has no Spark translation here")
        if isinstance(inner, exp.Distinct):
            value = inner.expressions[0]
            if len(keys) == 1 and keys[0].this == value:
                return exp.ArraySort(this=_fn("collect_set", value.copy()))
            raise Untranslatable("a DISTINCT list aggregate ordered by another expression")
        fields: list[exp.Expression] = []
        for i, k in enumerate(keys):
            fields += [exp.Literal.string(f"k{i}"), k.this.copy()]
        fields += [exp.Literal.string("v"), inner.copy()]
        collected = _fn("collect_list", _fn("named_struct", *fields))
        return exp.Transform(this=exp.ArraySort(this=collected),
                             expression=_lambda("_tt_s", exp.Dot(this=exp.to_identifier("_tt_s"),
                                                                 expression=exp.to_identifier("v"))))
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Distinct):
        return _fn("collect_set", node.this.expressions[0].copy())
    if _anon(node, "range") and len(node.expressions) == 1:
        n = node.expressions[0]
        return _fn("slice", _fn("sequence", exp.Literal.number(0), n.copy()), exp.Literal.number(1), n.copy())
    return node


def _printf_as_format(node: exp.Expression) -> exp.Expression:
    """DuckDB printf -> format (Java-style in Trino, printf-style in BigQuery; both take %x)."""
    if _anon(node, "printf"):
        return _fn("format", *(e.copy() for e in node.expressions))
    return node


def _snowflake(node: exp.Expression) -> exp.Expression:
    if _anon(node, "printf"):
        raise Untranslatable("printf('%x', ...) (hex formatting, in the IP-address macros that "
                             "match policy CIDRs) has no Snowflake translation")
    if isinstance(node, exp.Interval):
        raise Untranslatable("uses interval arithmetic (a timestamp difference compared with a "
                             "duration); Snowflake has no interval values (it would need DATEDIFF)")
    return node


def _trino(node: exp.Expression) -> exp.Expression:
    node = _printf_as_format(node)
    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
        return node.this  # Trino's arbitrary() skips NULLs and takes no IGNORE NULLS
    if isinstance(node, exp.DPipe) and (isinstance(node.this, exp.Array)
                                        or isinstance(node.expression, exp.Array)):
        return exp.ArrayConcat(this=node.this, expressions=[node.expression])
    return node


def _bigquery(node: exp.Expression) -> exp.Expression:
    """BigQuery sorts NULLs first and takes no NULLS LAST in an aggregate's ORDER BY: sort by
    `k IS NULL` first (false before true), as DuckDB's NULLS LAST does."""
    node = _printf_as_format(node)
    if isinstance(node, exp.Order) and isinstance(node.parent, (exp.ArrayAgg, exp.GroupConcat)):
        keys: list[exp.Expression] = []
        for k in node.expressions:
            if isinstance(k, exp.Ordered) and not k.args.get("nulls_first") and not k.args.get("desc"):
                keys.append(exp.Ordered(this=exp.Is(this=k.this.copy(), expression=exp.Null()),
                                        nulls_first=True))
                keys.append(exp.Ordered(this=k.this.copy(), nulls_first=True))
            else:
                keys.append(k)
        node.set("expressions", keys)
    return node


_DIALECT_REWRITES: dict[str, Callable[[exp.Expression], exp.Expression]] = {
    "spark": _spark,
    "trino": _trino,
    "bigquery": _bigquery,
    "snowflake": _snowflake,
}

# DuckDB functions that, left in a translated statement, mean it will not run there.
_DUCKDB_ONLY = ("list_bool_and", "list_bool_or", "to_seconds", "regexp_full_match", "list_filter",
                "list_transform", "list_distinct", "list_sort", "list_contains", "json_transform",
                "string_split", "printf")


def update_as_select(sql: str | exp.Expression, columns: Iterable[str]) -> exp.Select:
    """`UPDATE t SET c = e [FROM src AS a] [WHERE cond]` as the rows of the updated table:
    `SELECT ..., CASE WHEN <row matched> THEN e ELSE t.c END AS c, ... FROM t LEFT JOIN src AS a
    ON cond`, for engines whose tables cannot be updated in place. (DuckDB's UPDATE ... FROM
    takes one matching row; tokentrail's statements match at most one.)"""
    tree = _parse(sql) if isinstance(sql, str) else sql
    assert isinstance(tree, exp.Update)
    target = table_name(tree)
    condition = tree.args["where"].this.copy() if tree.args.get("where") else exp.true()
    sets = {a.this.name.lower(): a.expression for a in tree.expressions}
    from_ = tree.args.get("from_")
    if from_ is not None:
        source = from_.this.copy()
        alias = source.alias_or_name
        inner = source.this.copy() if isinstance(source, exp.Subquery) else \
            exp.select("*").from_(exp.Table(this=source.this.copy()))
        marked = exp.select(exp.Star(), exp.alias_(exp.true(), "_tt_matched")).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("_tt_src"))))
        matched: exp.Expression = exp.column("_tt_matched", table=alias)
    else:
        matched = exp.paren(condition.copy(), copy=False)
    cols: list[exp.Expression] = []
    for name in columns:
        col = exp.column(name, table=target, quoted=True)
        if name.lower() in sets:
            value: exp.Expression = exp.Case(ifs=[exp.If(this=matched.copy(), true=sets[name.lower()].copy())],
                                             default=col)
        else:
            value = col
        cols.append(cast(exp.Expression, exp.alias_(value, name, quoted=True)))
    select = exp.select(*cols).from_(exp.to_table(target))
    if from_ is not None:
        select = select.join(exp.Subquery(this=marked, alias=exp.TableAlias(this=exp.to_identifier(alias))),
                             on=condition, join_type="left")
    return select


def delete_as_select(sql: str | exp.Expression) -> exp.Select:
    """`DELETE FROM t [WHERE cond]` as the rows that remain."""
    tree = _parse(sql) if isinstance(sql, str) else sql
    assert isinstance(tree, exp.Delete)
    target = table_name(tree)
    select = exp.select(exp.Star()).from_(exp.to_table(target))
    if tree.args.get("where") is not None:
        select = select.where(exp.Not(this=exp.func("coalesce", exp.paren(tree.args["where"].this.copy()),
                                                      exp.false())))
    else:
        select = select.where(exp.false())
    return select


def _update_as_merge(step: Step) -> exp.Expression:
    tree = _parse(step.sql)
    assert isinstance(tree, exp.Update)
    if tree.args.get("from_") is None:
        return tree
    source = tree.args["from_"].this.copy()
    condition = tree.args["where"].this.copy() if tree.args.get("where") else exp.true()
    sets = [exp.EQ(this=exp.column(a.this.name), expression=a.expression.copy()) for a in tree.expressions]
    return exp.Merge(
        this=tree.this.copy(), using=source, on=condition,
        whens=exp.Whens(expressions=[exp.When(matched=True, then=exp.Update(expressions=sets))]))


def transpile(sql: str | exp.Expression, dialect: str,
              schema: dict[str, dict[str, str]] | None = None) -> str:
    """One DuckDB statement (or parsed tree) in `dialect`, tokentrail macros inlined.
    `schema` (table -> column -> DuckDB type), when given for Spark, lets durations and
    timestamps cast to text read as DuckDB writes them. Raises Untranslatable."""
    tree = _parse(sql) if isinstance(sql, str) else sql.copy()
    if schema and dialect == "spark":
        tree = _duckdb_text_casts(inline_macros(tree), schema)
    return _transpile_tree(tree, dialect, "")


def _is_text_cast(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.TEXT_TYPES)


def _interval_text(value: exp.Expression) -> exp.Expression:
    """Spark's `INTERVAL '0 00:04:52.595' DAY TO SECOND` as DuckDB writes a duration
    (`00:04:52.595`, `1 day 02:00:00`)."""
    text = exp.Cast(this=value, to=exp.DataType.build("VARCHAR"))

    def part(group: int) -> exp.Expression:
        return exp.RegexpExtract(this=text.copy(), expression=exp.Literal.string("'(-?)([0-9]+) ([0-9:.]+)'"),
                                 group=exp.Literal.number(group))

    sign, days, clock = part(1), part(2), part(3)
    return exp.Case(ifs=[
        exp.If(this=exp.EQ(this=days.copy(), expression=exp.Literal.string("0")),
               true=exp.DPipe(this=sign.copy(), expression=clock.copy())),
        exp.If(this=exp.EQ(this=days.copy(), expression=exp.Literal.string("1")),
               true=exp.DPipe(this=exp.DPipe(this=sign.copy(), expression=exp.Literal.string("1 day ")),
                              expression=clock.copy()))],
        default=exp.DPipe(this=exp.DPipe(this=exp.DPipe(this=sign, expression=days),
                                         expression=exp.Literal.string(" days ")), expression=clock))


def _temporal_kind(node: exp.Expression) -> str | None:
    """'interval' or 'timestamp' for an annotated expression, else None."""
    inner = node
    while isinstance(inner, (exp.Paren, exp.Max, exp.Min, exp.AnyValue)):
        inner = inner.this
    if isinstance(inner, exp.Sub) and all(
            side.type is not None and side.type.is_type(*exp.DataType.TEMPORAL_TYPES)
            for side in (inner.this, inner.expression)):
        return "interval"
    if isinstance(inner, exp.Anonymous) and str(inner.this).lower() in ("to_seconds", "to_milliseconds",
                                                                          "to_microseconds"):
        return "interval"
    if node.type is None:
        return None
    if node.type.is_type(exp.DataType.Type.INTERVAL):
        return "interval"
    if node.type.is_type(exp.DataType.Type.TIMESTAMPTZ):
        return "timestamp"
    return None


def _duckdb_text_casts(tree: exp.Expression, schema: dict[str, dict[str, str]]) -> exp.Expression:
    """Rewrites that need types: CAST(duration / timestamp AS VARCHAR) written so that
    Spark's text is DuckDB's, and length() of a list as its size. The statement is qualified
    and annotated with sqlglot (on failure: unchanged)."""
    if not any(_is_text_cast(n) if isinstance(n, (exp.Cast, exp.TryCast)) else True
               for n in tree.find_all(exp.Cast, exp.TryCast, exp.Length)):
        return tree
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    tables: dict[str, object] = dict(schema)
    try:
        typed = annotate_types(qualify(tree.copy(), schema=tables, dialect="duckdb",
                                       validate_qualify_columns=False, identify=False),
                               schema=tables, dialect="duckdb")
    except (SqlglotError, KeyError, ValueError, TypeError, AttributeError):
        return tree
    changed = False
    for length in list(typed.find_all(exp.Length)):
        # DuckDB's length() of a list is its size
        if length.this.type is not None and length.this.type.is_type(exp.DataType.Type.ARRAY):
            length.replace(exp.ArraySize(this=length.this.copy()))
            changed = True
    for cast_node in list(typed.find_all(exp.Cast, exp.TryCast)):
        if not _is_text_cast(cast_node):
            continue
        kind = _temporal_kind(cast_node.this)
        if kind == "interval":
            cast_node.replace(_interval_text(cast_node.this.copy()))
            changed = True
        elif kind == "timestamp":
            cast_node.replace(exp.DPipe(this=cast_node.copy(), expression=exp.Literal.string("+00")))
            changed = True
    return typed if changed else tree


def _transpile_tree(tree: exp.Expression, dialect: str, label: str = "") -> str:
    """`tree` (DuckDB) in `dialect`; `label` names the statement in nothing but debugging."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, not {dialect!r}")
    tree = inline_macros(tree)
    left = _leftover_macros(tree)
    if left:
        raise Untranslatable(f"calls {', '.join(left)}, which is not a tokentrail macro "
                             "(only sqlmacros.py / netmatch.py macros can be inlined)")
    tree = _post_order(tree, _generic(dialect))
    extra = _DIALECT_REWRITES.get(dialect)
    if extra is not None:
        tree = _post_order(tree, extra)
    try:
        sql = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, comments=False)
    except UnsupportedError as exc:
        raise Untranslatable(f"{dialect}: {_first_line(exc)}") from None
    except (SqlglotError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise Untranslatable(f"{dialect}: sqlglot failed to generate it ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from None
    leftovers = sorted({n for n in _DUCKDB_ONLY if re.search(rf"\b{n}\s*\(", sql, re.I)})
    if dialect == "spark":
        leftovers = [n for n in leftovers if n not in ("printf",)]
    if leftovers:
        raise Untranslatable(f"{', '.join(leftovers)}() has no {dialect} translation in sqlglot")
    try:
        sqlglot.parse_one(sql, read=dialect)
    except ParseError as exc:
        raise Untranslatable(f"the {dialect} SQL does not parse back: {_first_line(exc)}") from None
    return sql


# ---------------------------------------------------------------------------------------------
# Export: whole statements for a lakehouse team to schedule


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
