"""Hand-written rewrites, each with the same meaning in DuckDB, for constructs sqlglot cannot
carry to another dialect (list comprehensions, ordered list aggregates, `to_seconds`,
`regexp_full_match`, lookups as joins), one function per construct and dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlglot import exp

from .macros import Untranslatable


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
