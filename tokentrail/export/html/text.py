"""How a log value becomes page text, and the fixed vocabulary the page may show.

Only values from these tuples become CSS classes or colours (`one_of`); everything else is
text, with invisible and bidi characters made visible, so a hostile log line cannot restyle or
reorder the page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from ...output import iso

SEVERITIES = ("critical", "high", "medium", "low", "info")
CLASSES = ("owner", "delegate", "transport", "forwarded", "stolen", "suspicious", "unknown")
KINDS = ("issue", "exchange", "refresh", "revoke", "use", "deny", "introspect", "login", "other")
TIERS = ("spiffe", "mtls", "dpop", "workload", "network")
ISSUANCE = ("issue", "exchange", "refresh")

CLASS_COLOURS = {
    "owner": "#2f7d32", "delegate": "#1f6fb2", "transport": "#6b7280", "forwarded": "#c26a00",
    "stolen": "#c62828", "suspicious": "#a05a9c", "unknown": "#8d8d8d",
}
LIFECYCLE_COLOURS = {"issue": "#2f7d32", "exchange": "#6a3fb5", "refresh": "#00838f",
                     "revoke": "#c62828", "expiry": "#c26a00", "child": "#6a3fb5"}

# C0/C1 controls (tab and newline kept), zero-width and bidi formatting characters, line and
# paragraph separators, BOM: shown as visible markers instead of acting on the page.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def finalize(value: Any) -> Any:
    """Applied by jinja to every `{{ … }}` before escaping."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return visible(value)
    return value


def ts_text(value: Any) -> str:
    """A timestamp for people: `2026-11-02 09:38:05.117Z`."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        s = iso(value)
        return s.replace("T", " ").replace(".000000Z", "Z").replace("000Z", "Z")
    return str(value)


def ts_sort(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else ("" if value is None else str(value))


def text(value: Any) -> str:
    """Any column value as display text (lists joined, times formatted)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return ts_text(value)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return str(value)


def shorten(value: str, limit: int = 40) -> str:
    """Middle ellipsis: both the scheme and the last path segment of an id stay readable."""
    if len(value) <= limit:
        return value
    head = (limit - 1) * 3 // 5
    return value[:head] + "…" + value[-(limit - 1 - head):]


def anchor(prefix: str, key: str | None) -> str:
    """An element id for a log value: a hash, so the value itself never becomes an id."""
    return prefix + hashlib.sha256((key or "").encode()).hexdigest()[:12]


def one_of(value: Any, allowed: Sequence[str], default: str = "unknown") -> str:
    return value if isinstance(value, str) and value in allowed else default
