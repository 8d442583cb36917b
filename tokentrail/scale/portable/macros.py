"""Parsing DuckDB SQL and inlining the `tt_*` macros, so nothing DuckDB-only is left behind
for another engine. The macro bodies are read at run time from the modules that define them."""

from __future__ import annotations

import functools
import re
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

DIALECTS = ("spark", "trino", "bigquery", "snowflake")
MACRO_PREFIX = "tt_"


class Untranslatable(Exception):
    """A statement has no translation to a dialect; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason




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
