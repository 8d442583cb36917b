"""One statement to one dialect: `UPDATE`/`DELETE` as the rows they leave, DuckDB's implicit
text casts made explicit, sqlglot's translation parsed back to prove it is valid there."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError

from .macros import DIALECTS, Untranslatable, _first_line, _leftover_macros, _parse, inline_macros
from .pipeline import Step, table_name
from .rewrites import _DIALECT_REWRITES, _DUCKDB_ONLY, _generic, _post_order


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
