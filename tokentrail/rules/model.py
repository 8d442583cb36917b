"""A rule file: metadata a report needs, SQL that finds hits, and a fixture that proves it.

Rule SQL returns the standard hit columns (token_key, holder_id, first_seen, last_seen,
count, event_ids, reasons) over the case tables (events, tokens, token_holders, links) and
the policy tables. It is plain SQL plus tokentrail's named macros, so the same rule can run on
another engine where those macros are ported.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TokentrailError, UsageError

SEVERITIES = ("critical", "high", "medium", "low", "info")
HIT_COLUMNS = ("token_key", "holder_id", "first_seen", "last_seen", "count", "event_ids", "reasons")
CLASSIFICATIONS = ("owner", "delegate", "transport", "forwarded", "stolen", "suspicious", "unknown")
RULE_KEYS = {"id", "title", "severity", "classification", "attack", "owasp", "description",
             "false_positives", "sql", "fixture"}
FIXTURE_KEYS = {"events", "policy", "expect"}

BUILTIN_DIR = Path(__file__).parent / "builtin"


class RuleError(TokentrailError):
    """A rule file is invalid."""


@dataclass(frozen=True)
class Fixture:
    events: tuple[dict[str, Any], ...]
    expect: tuple[dict[str, Any], ...]  # each: token_key / holder_id (subset match)
    policy: str = ""  # TOML text of a policy file, for rules that need one


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    classification: str
    attack: tuple[str, ...]
    owasp: tuple[str, ...]
    description: str
    false_positives: str
    sql: str
    source: str
    fixture: Fixture | None = None

    @property
    def severity_rank(self) -> int:
        return SEVERITIES.index(self.severity)


def _fail(message: str, source: str, key: str | None = None) -> RuleError:
    return RuleError(message, file=source, key=key)


def rule_from_dict(data: dict[str, Any], source: str) -> Rule:
    unknown = set(data) - RULE_KEYS
    if unknown:
        raise _fail(f"unknown key(s) {sorted(unknown)}", source, ",".join(sorted(unknown)))
    for key in ("id", "title", "severity", "classification", "description", "sql"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail("required, a non-empty string", source, key)
    if data["severity"] not in SEVERITIES:
        raise _fail(f"must be one of {', '.join(SEVERITIES)}", source, "severity")
    if data["classification"] not in CLASSIFICATIONS:
        raise _fail(f"must be one of {', '.join(CLASSIFICATIONS)}", source, "classification")
    for key in ("attack", "owasp"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail("must be a list of strings", source, key)
    fixture = None
    if "fixture" in data:
        fx = data["fixture"]
        if not isinstance(fx, dict) or set(fx) - FIXTURE_KEYS:
            raise _fail(f"[fixture] accepts {sorted(FIXTURE_KEYS)}", source, "fixture")
        events = fx.get("events", [])
        expect = fx.get("expect", [])
        if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
            raise _fail("[[fixture.events]] must list tokentrail-format events", source,
                        "fixture.events")
        if not isinstance(expect, list) or not all(isinstance(e, dict) for e in expect):
            raise _fail("[[fixture.expect]] must list expected hits", source, "fixture.expect")
        policy = fx.get("policy", "")
        if not isinstance(policy, str):
            raise _fail("a policy file's TOML text (a multi-line string)", source, "fixture.policy")
        fixture = Fixture(events=tuple(events), expect=tuple(expect), policy=policy)
    return Rule(
        id=data["id"], title=data["title"].strip(), severity=data["severity"],
        classification=data["classification"], attack=tuple(data.get("attack", [])),
        owasp=tuple(data.get("owasp", [])), description=data["description"].strip(),
        false_positives=str(data.get("false_positives", "")).strip(), sql=data["sql"],
        source=source, fixture=fixture,
    )


def load_rule(path: Path) -> Rule:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read rule: {exc.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"invalid TOML: {exc}", str(path)) from None
    return rule_from_dict(data, str(path))


def load_rules(extra_dirs: tuple[str, ...] = (), *, builtin: bool = True) -> list[Rule]:
    """Built-in rules, then user rules; a user rule with a built-in id replaces it."""
    paths: list[Path] = sorted(BUILTIN_DIR.glob("*.toml")) if builtin else []
    for d in extra_dirs:
        p = Path(d)
        if not p.is_dir():
            raise RuleError("not a directory of rule files", file=d)
        found = sorted(p.glob("*.toml"))
        if not found:
            raise UsageError("no rule file (*.toml) in this folder", file=d)
        paths.extend(found)
    by_id: dict[str, Rule] = {}
    for path in paths:
        rule = load_rule(path)
        by_id[rule.id] = rule
    return sorted(by_id.values(), key=lambda r: r.id)


def rules_markdown() -> str:
    """The README's rules table, generated so it cannot drift from the rule files."""
    lines = ["| id | severity | class | title | ATT&CK |", "|---|---|---|---|---|"]
    for r in load_rules():
        lines.append(f"| {r.id} | {r.severity} | {r.classification} | {r.title} | "
                     f"{', '.join(r.attack)} |")
    return "\n".join(lines)
