"""Follow one token: its ancestors and descendants (exchange, refresh, role chain) and every
holder of each, with classification and reasons.

A raw token given to `trace` is fingerprinted in memory and only the fingerprint is used:
it never reaches the case, the output or an error message.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import duckdb

from tokentrail.errors import InputError
from tokentrail.output import jsonable

MAX_DEPTH = 32


def fingerprint(raw: str) -> str:
    """base64url(SHA-256(token)) without padding: the DPoP `ath` value."""
    token = raw.strip()
    for scheme in ("Bearer ", "bearer ", "DPoP ", "dpop "):
        if token.startswith(scheme):
            token = token[len(scheme):].strip()
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def resolve(con: duckdb.DuckDBPyConnection, needle: str, *, raw: bool = False) -> str:
    """The token_key for an id, a key, a fingerprint, or (raw=True) a raw token."""
    candidates = [fingerprint(needle)] if raw else [needle, needle.removeprefix("fp:")]
    for value in candidates:
        row = con.execute(
            "SELECT token_key FROM tokens WHERE token_key = ? OR token_id = ? OR token_fp = ? "
            "OR token_key = 'fp:' || ? LIMIT 1", [value, value, value, value]).fetchone()
        if row:
            return str(row[0])
    what = "the given raw token (by its fingerprint)" if raw else repr(needle)
    raise InputError(f"no token matches {what} in this case: try a jti, uti, AWS key id, "
                     "credential id, token_key or fingerprint")


def _node(con: duckdb.DuckDBPyConnection, key: str) -> dict[str, Any]:
    cur = con.execute(
        "SELECT token_key AS key, token_id AS id, token_fp AS fp, issuer, subject, client_id, "
        "audience, scopes, act_chain, cnf_jkt, cnf_x5t, issue_kind, issued_at, issued_to_holder, "
        "exp, revoked_at, first_seen, last_seen, uses FROM tokens WHERE token_key = ?", [key])
    cols = [d[0] for d in cur.description]
    row = cur.fetchone()
    node: dict[str, Any] = dict(zip(cols, row, strict=True)) if row else {"key": key}
    hcur = con.execute(
        "SELECT holder_id AS id, holder_tier AS tier, classification, confidence, reasons, "
        "first_seen, last_seen, count, src_ips, resources FROM token_holders "
        "WHERE token_key = ? ORDER BY first_seen, holder_id", [key])
    hcols = [d[0] for d in hcur.description]
    node["holders"] = [dict(zip(hcols, r, strict=True)) for r in hcur.fetchall()]
    return node


def trace(con: duckdb.DuckDBPyConnection, key: str) -> dict[str, Any]:
    """The lineage tree that contains `key`, from its oldest known ancestor down."""
    root, seen = key, {key}
    ancestors: list[str] = []
    for _ in range(MAX_DEPTH):
        row = con.execute("SELECT parent_key FROM links WHERE child_key = ? LIMIT 1", [root]).fetchone()
        if not row or row[0] in seen:
            break
        root = str(row[0])
        seen.add(root)
        ancestors.append(root)

    def build(k: str, depth: int, visited: set[str]) -> dict[str, Any]:
        node = _node(con, k)
        node["focus"] = k == key
        # basis: logged (the log names the parent), alias (through the refresh token minted
        # with it) or inferred (lineage.PARENTS_SQL), with the evidence a responder can check
        children = con.execute(
            "SELECT child_key, kind, ts, requested_by, basis, evidence FROM links "
            "WHERE parent_key = ? ORDER BY ts, child_key", [k]).fetchall()
        node["children"] = []
        for child, kind, ts, by, basis, evidence in children:
            if child in visited or depth >= MAX_DEPTH:
                continue
            sub = build(child, depth + 1, visited | {child})
            sub["link"] = {"kind": kind, "ts": ts, "requested_by": by, "basis": basis,
                           "evidence": evidence}
            node["children"].append(sub)
        return node

    tree = build(root, 0, {root})
    result: dict[str, Any] = jsonable({"token": key, "ancestors": ancestors, "tree": tree})
    return result
