"""`tokentrail trace`: one token's lineage and every holder of it."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.tree import Tree

from tokentrail.case.store import resolve_db_path
from tokentrail.provenance.trace import resolve, trace

from ..analyse import analyse
from ..errors import InputError, UsageError
from ..output import cell_text
from .common import console_for, db_option, load_policy_option, open_case, open_output, policy_option


@click.command("trace", epilog="""\b
Examples:
  tokentrail trace 8e1d5c0a-31f4-4c52-9d0e-5b5f7c6e2a11     # a jti / uti / key id
  tokentrail trace ASIALN5YQ6SWF73864KW --format json
  pbpaste | tokentrail trace -                              # a raw token, fingerprinted in memory
  tokentrail trace --token-file leaked.txt
""")
@click.argument("token", required=False, metavar="[ID|FINGERPRINT|-]")
@click.option("--token-file", metavar="FILE",
              help="Read a raw token from FILE (it is fingerprinted, never stored or printed).")
@db_option
@policy_option
@click.option("--format", "fmt", type=click.Choice(("tree", "json")), default="tree",
              show_default=True, help="Output format.")
@click.option("-o", "--output", default="-", metavar="FILE", help="Write to FILE instead of stdout.")
def trace_cmd(token: str | None, token_file: str | None, db: str | None, policy_file: str | None,
              fmt: str, output: str) -> None:
    """Show a token's lineage (issuance, exchanges, refreshes, role chains) and every holder.

    Give a token id (jti, uti, AWS access key id, credential id), a token_key or fingerprint,
    or a raw token on stdin (-) or in --token-file: a raw token is fingerprinted in memory and
    only its fingerprint is used.
    """
    raw = None
    if token_file:
        try:
            with open(token_file, encoding="utf-8", errors="replace") as fh:
                raw = fh.read().strip()
        except OSError as exc:
            raise InputError(f"cannot read --token-file: {exc.strerror or exc}",
                             file=token_file) from None
    elif token == "-":
        raw = sys.stdin.read().strip()
    elif not token:
        raise UsageError("give a token id or fingerprint, - for a raw token on stdin, or --token-file")
    if raw is not None and not raw:
        raise UsageError("no token read")
    with open_case(resolve_db_path(db)) as case:
        analyse(case.con, policy=load_policy_option(policy_file), rules=[])
        key = resolve(case.con, raw, raw=True) if raw is not None else resolve(case.con, str(token))
        result = trace(case.con, key)
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        console_for(stream, width=160).print(_tree(result["tree"]))


def _label(node: dict[str, Any]) -> str:
    link = node.get("link")
    via = f"{link['kind']} " if link else ("" if not node.get("issue_kind") else f"{node['issue_kind']} ")
    if link and link.get("basis") == "inferred":
        via += "(inferred) "
    bits = [f"{'▶ ' if node.get('focus') else ''}{via}token {node.get('key')}"]
    if node.get("client_id"):
        bits.append(f"issued to {node['client_id']}")
    if node.get("act_chain"):
        bits.append("act " + " ← ".join(node["act_chain"]))
    if node.get("issued_at"):
        bits.append(f"at {node['issued_at']}")
    if node.get("exp"):
        bits.append(f"exp {node['exp']}")
    if node.get("revoked_at"):
        bits.append(f"REVOKED {node['revoked_at']}")
    return cell_text(", ".join(bits))


def _tree(node: dict[str, Any]) -> Tree:
    t = Tree(_label(node), highlight=False)
    link = node.get("link") or {}
    if link.get("evidence"):
        t.add(cell_text(("parent " if link.get("basis") == "inferred" else "parent via ")
                        + str(link["evidence"])), highlight=False)
    for h in node.get("holders", []):
        conf = "" if h.get("confidence") is None else f" {h['confidence']:.2f}"
        ips = ", ".join(h.get("src_ips") or [])
        res = ", ".join(h.get("resources") or [])
        line = (f"{h['classification']}{conf}  {h['id']} ({h['tier']})  {h['count']}× "
                f"{h['first_seen']} .. {h['last_seen']}"
                + (f"  from {ips}" if ips else "") + (f"  at {res}" if res else ""))
        sub = t.add(cell_text(line), highlight=False)
        for reason in (h.get("reasons") or [])[:3]:
            sub.add(cell_text(reason), highlight=False)
    for child in node.get("children", []):
        t.add(_tree(child))
    return t
