"""`tokentrail rules test`: each rule's fixture through the whole engine, in memory."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from tokentrail.case.store import Case

from .model import Rule


@dataclass
class FixtureResult:
    rule: str
    ok: bool
    message: str


def _matches(expect: dict[str, object], hit: dict[str, object]) -> bool:
    return all(hit.get(k) == v for k, v in expect.items())


def test_rule(rule: Rule) -> FixtureResult:
    from tokentrail.case.ingest import ingest

    from ..analyse import analyse

    if rule.fixture is None:
        return FixtureResult(rule.id, False, "no fixture")
    policy = None
    with tempfile.TemporaryDirectory(prefix="tokentrail-fixture-") as tmp:
        path = os.path.join(tmp, f"{rule.id}.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            for event in rule.fixture.events:
                fh.write(json.dumps(event) + "\n")
        if rule.fixture.policy:
            from tokentrail.provenance.policy import parse_policy

            policy = parse_policy(rule.fixture.policy, file=f"{rule.source} [fixture.policy]")
        with Case() as case:
            report = ingest(case, [path], format_name="tokentrail")
            if report.rejects:
                return FixtureResult(rule.id, False, f"fixture has {report.rejects} rejected event(s)")
            found = analyse(case.con, policy=policy, rules=[rule]).findings
    hits = [{"token_key": f.token.get("key"), "holder_id": f.holder.get("id"),
             "classification": f.classification} for f in found]
    missing = [e for e in rule.fixture.expect if not any(_matches(e, h) for h in hits)]
    extra = [h for h in hits if not any(_matches(e, h) for e in rule.fixture.expect)]
    if missing or extra:
        return FixtureResult(rule.id, False, f"expected {list(rule.fixture.expect)}, got {hits}")
    return FixtureResult(rule.id, True, f"{len(hits)} expected hit(s)")
