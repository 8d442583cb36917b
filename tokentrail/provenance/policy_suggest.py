"""A starter policy from a case: what the logs show the workloads, their aliases, networks and
delegations to be, every line commented with its evidence, for a person to review.

Evidence used (all SQL over the analysed case: `tokens`, `token_holders`):
- an alias joins a client id to a SPIFFE id when a token issued to the client (its issuance
  event or its `azp`/`client_id`) is presented by that SPIFFE id as its *owner* (the
  classifier matched them at the strongest shared tier);
- the networks of a workload are the source addresses of its owner and delegate pairs
  (written as comments: an address in a policy makes every holder there that workload);
- a delegation is a token issued to one workload (`azp`) presented as a *delegate* by another
  (RFC 8693 `act`, a logged exchange); written commented out, since declaring one delegation
  makes every undeclared one a TT011 finding.
Stolen, forwarded and suspicious pairs never become policy: the output must not bless what
the findings are about.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import duckdb

_OWNERS_SQL = """
SELECT th.holder_id, t.client_id, th.classification, count(DISTINCT th.token_key) AS tokens,
       min(th.token_key) AS example, flatten(list(th.src_ips)).list_distinct() AS ips,
       sum(th.count) AS events
FROM token_holders th JOIN tokens t USING (token_key)
WHERE th.classification IN ('owner', 'delegate') AND th.holder_tier = 'spiffe'
GROUP BY ALL ORDER BY th.holder_id, t.client_id NULLS FIRST, th.classification
"""


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


def _name_of(spiffe: str) -> str:
    tail = spiffe.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tail) or "workload"


def suggest_policy(con: duckdb.DuckDBPyConnection) -> str:
    """The starter policy as TOML text (loads with tokentrail.provenance.policy.load_policy)."""
    rows = con.execute(_OWNERS_SQL).fetchall()
    workloads: dict[str, dict[str, Any]] = {}
    client_of: dict[str, str] = {}  # client id -> workload name
    delegations: dict[tuple[str, str], list[str]] = defaultdict(list)
    for holder, client, cls, tokens, example, ips, events in rows:
        w = workloads.setdefault(holder, {"name": None, "aliases": {}, "ips": set(), "evidence": []})
        w["ips"].update(ips or [])
        if cls == "owner" and client:
            w["aliases"][client] = (f"{tokens} token(s) issued to client {client} presented by "
                                    f"{holder} as their owner, e.g. {example}")
    used: set[str] = set()
    for holder, w in workloads.items():
        name = next(iter(w["aliases"]), None) or _name_of(holder)
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
        while name in used:
            name += "-2"
        used.add(name)
        w["name"] = name
        for client in w["aliases"]:
            client_of.setdefault(client, name)
    for holder, client, cls, tokens, example, _ips, _events in rows:
        if cls != "delegate" or not client or client not in client_of:
            continue
        src, dst = client_of[client], workloads[holder]["name"]
        if src != dst:
            delegations[(src, dst)].append(f"{tokens} token(s) issued to {client} presented by "
                                           f"{holder} as delegate, e.g. {example}")
    depth_row = con.execute("SELECT max(len(t.act_chain)) FROM token_holders th JOIN tokens t "
                            "USING (token_key) WHERE th.classification = 'delegate'").fetchone()
    depth = int(depth_row[0]) if depth_row and depth_row[0] else 1
    out = ["# Starter policy suggested by `tokentrail policy suggest` from the case's evidence.",
           "# Review every line before use: it describes what the logs show, not what should be.",
           "# Stolen, forwarded and suspicious pairs were left out on purpose.", ""]
    for holder, w in workloads.items():
        out.append("[[workloads]]")
        out.append(f"name = {_toml_str(w['name'])}")
        out.append("identifiers = [")
        out.append(f"  {_toml_str(holder)},  # the verified mTLS peer (SPIFFE ID)")
        for client, why in w["aliases"].items():
            out.append(f"  {_toml_str('client:' + client)},  # alias: {_comment(why)}")
        out.append("]")
        for ip in sorted(w["ips"]):
            out.append(f"# seen from {_comment(ip)}; add \"ip:{_comment(ip)}\" (or its range) above "
                       "only if nothing else shares it")
        out.append("")
    if delegations:
        out += ["# Delegations seen (RFC 8693 act / logged exchanges). Commented out: once a policy",
                "# declares one delegation, every delegation it does not declare is a TT011 finding,",
                "# so uncomment them together, after checking each, and add any others you allow.",
                f"# max_depth: the longest act chain seen is {depth}.", ""]
    for (src, dst), why in sorted(delegations.items()):
        out.append(f"# {_comment(why[0])}")
        out.append("# [[delegations]]")
        out.append(f"# from = {_toml_str(src)}")
        out.append(f"# to = [{_toml_str(dst)}]")
        out.append(f"# max_depth = {depth}")
        out.append("")
    if not workloads:
        out.append("# no owner or delegate pair with a SPIFFE ID in this case: nothing to suggest")
    return "\n".join(out).rstrip() + "\n"
