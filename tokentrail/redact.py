"""Token redaction shared by Python (error messages) and SQL (extras, reject excerpts).

The same regular expressions run in both places so that a raw token cannot leak through
one path that the other would have caught. They are written in the subset of syntax that
Python's `re` and DuckDB's RE2 both accept.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# (pattern, replacement) pairs; replacement uses \1-style groups understood by both engines.
# 1. JWS/JWE compact serialisations, and a JWT cut short (a header prefix alone).
_JWT = (r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,4}", REDACTED)
# 2. An Authorization-style scheme followed by its credential.
_SCHEME = (r"(?i)\b(bearer|dpop|basic|negotiate|sswS)(\s+)[A-Za-z0-9._~+/=-]{6,}", r"\1\2" + REDACTED)
# 3. Secret-bearing keys, as JSON members or query/form parameters.
_KEYS = (
    r"authorization|proxy-authorization|access_token|refresh_token|id_token|token|sessiontoken"
    r"|session_token|client_secret|secret|password|passwd|api_key|apikey|x-api-key"
    r"|subject_token|actor_token|assertion|client_assertion|dpop|cookie|set-cookie|code"
    r"|statetoken|state_token|id_token_hint|logout_hint|code_verifier|sessiontoken"
    r"|session_id|sessionid"
)
_JSON_KV = (r'(?i)("(?:' + _KEYS + r')"\s*:\s*")((?:[^"\\]|\\.)*)(")', r"\1" + REDACTED + r"\3")
_QUERY_KV = (r"(?i)([?&;\s](?:" + _KEYS + r")=)([^&\s\"']+)", r"\1" + REDACTED)
# 4. Only for excerpts of unparseable lines: any long opaque run could be a token.
_OPAQUE = (r"[A-Za-z0-9+/_=.~-]{40,}", REDACTED)

STANDARD_RULES: tuple[tuple[str, str], ...] = (_JWT, _SCHEME, _JSON_KV, _QUERY_KV)
STRICT_RULES: tuple[tuple[str, str], ...] = STANDARD_RULES + (_OPAQUE,)

EXCERPT_CHARS = 240

# A cheap single-pass test: text matching none of these cannot match a standard rule, so the
# four replacements are skipped for it (most stored strings).
REDACT_TRIGGER = r"(?i)eyJ|bearer|dpop|basic|negotiate|ssws|" + _KEYS
REDACT_TRIGGER_SQL = "'" + REDACT_TRIGGER.replace("'", "''") + "'"


def _python_pattern(pattern: str) -> re.Pattern[str]:
    flags = 0
    if pattern.startswith("(?i)"):
        pattern, flags = pattern[4:], re.IGNORECASE
    return re.compile(pattern, flags)


def _python_repl(repl: str) -> str:
    return repl  # \1 syntax is shared


_COMPILED = [(_python_pattern(p), _python_repl(r)) for p, r in STRICT_RULES]


def redact_text(text: str, *, strict: bool = True) -> str:
    """Remove anything that looks like a credential from free text (messages, excerpts)."""
    rules = _COMPILED if strict else _COMPILED[: len(STANDARD_RULES)]
    for pattern, repl in rules:
        text = pattern.sub(repl, text)
    return text


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Redact first, then truncate: truncating first could cut a token past its pattern."""
    clean = redact_text(text, strict=True)
    return clean if len(clean) <= limit else clean[:limit] + "…"


def sql_redact_expr(arg: str, *, strict: bool = False) -> str:
    """A DuckDB expression applying the redaction rules to the VARCHAR expression `arg`."""
    rules = STRICT_RULES if strict else STANDARD_RULES
    expr = arg
    for pattern, repl in rules:
        flags = "'g'"
        if pattern.startswith("(?i)"):
            pattern, flags = pattern[4:], "'gi'"
        expr = f"regexp_replace({expr}, {_sql_str(pattern)}, {_sql_str(repl)}, {flags})"
    return expr


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
