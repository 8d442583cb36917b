"""A token's claims in `tokens` do not depend on the order its events were read.

The shipped Keycloak log names the issuer by realm (`acme`) and the Envoy log's JWT says
`https://sso.acme.example/realms/acme`; a token seen once in each is a tie. Plain `mode()`
broke the tie by its hash table and thread layout, so the same case scanned on its lake named
the other issuer (CI caught it as `tokens` on the lake disagreeing with the case). On a tie the
lowest value now wins, on every run and engine.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

TOKENS = 300


def _write(path: Path, order: str) -> None:
    """Each token used twice, once under each of two issuer spellings, in `order`."""
    lines = []
    for i in range(TOKENS):
        spellings = [f"a-realm-{i:03d}", f"https://b.example/realms/{i:03d}"]
        if order == "desc" or (order == "mixed" and i % 2):
            spellings.reverse()
        for n, issuer in enumerate(spellings):
            lines.append(orjson.dumps({
                "ts": f"2026-11-02T09:{n:02d}:{i % 60:02d}Z", "kind": "use",
                "token_id": f"tok-{i:03d}", "issuer": issuer, "subject": f"user-{i}",
                "src_ip": "10.0.0.5", "resource": "api"}))
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_tied_issuers_resolve_to_the_lowest_in_any_row_order(tmp_path: Path) -> None:
    seen = {}
    for order in ("asc", "desc", "mixed"):
        log = tmp_path / f"{order}.jsonl"
        _write(log, order)
        case = Case()
        ingest(case, [str(log)])
        analyse(case.con)
        seen[order] = case.query("SELECT token_key, issuer FROM tokens ORDER BY token_key")[1]
    assert len(seen["asc"]) == TOKENS
    assert all(issuer.startswith("a-realm-") for _, issuer in seen["asc"]), seen["asc"][:5]
    assert seen["asc"] == seen["desc"] == seen["mixed"]
