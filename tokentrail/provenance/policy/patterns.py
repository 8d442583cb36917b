"""Identifier patterns of a policy and how one matches a holder id: exact ids, globs, and
`ip:` addresses / CIDR ranges with or without a user-agent suffix. Kept apart from the loader
so the matching rules (most specific wins) can be read and tested on their own."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from dataclasses import dataclass

from tokentrail.provenance.netmatch import ip_key, network_bounds, parse_network

PATTERN_KINDS = ("exact", "glob", "cidr")


# ---------------------------------------------------------------------------------------------
# Identifier patterns


@dataclass(frozen=True)
class Pattern:
    """One compiled identifier pattern.

    `text` is the pattern as matched (an `x5t:` thumbprint in hex is normalised to base64url);
    `like` is the SQL LIKE pattern (with ESCAPE '\\') of a glob; `lo`/`hi` are the
    `tt_ip_key` bounds of a CIDR and `prefix` its length in the 128-bit key space.
    """

    text: str
    kind: str
    like: str | None = None
    lo: str | None = None
    hi: str | None = None
    prefix: int = 0

    @property
    def specificity(self) -> int:
        """Within a kind, higher is more specific."""
        if self.kind == "cidr":
            return self.prefix
        if self.kind == "glob":
            return len(self.text.replace("*", ""))
        return 0

    def matches(self, holder_id: str) -> bool:
        """The Python twin of the SQL match in `holder_workload_sql`."""
        if self.kind == "exact":
            return holder_id == self.text
        if self.kind == "glob":
            regex = ".*".join(re.escape(part) for part in self.text.split("*"))
            return re.fullmatch(regex, holder_id, flags=re.DOTALL) is not None
        key = ip_key(holder_ip(holder_id) or "")
        return key is not None and self.lo is not None and self.hi is not None and self.lo <= key <= self.hi


def holder_ip(holder_id: str) -> str | None:
    """The address of an `ip:<address>[/<ua family>]` holder (SQL: `tt_holder_ip`)."""
    if not holder_id.startswith("ip:"):
        return None
    return holder_id[3:].split("/", 1)[0] or None


def _like_of_glob(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")
_HEX_COLON = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")


def _normalise_x5t(value: str) -> str:
    """A SHA-256 certificate thumbprint in hex, colon hex or base64 -> base64url (as `tt_x5t`)."""
    if _HEX64.fullmatch(value) or _HEX_COLON.fullmatch(value):
        try:
            raw = binascii.unhexlify(value.replace(":", ""))
        except binascii.Error:  # pragma: no cover - the regexes admit only hex
            return value
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return value.replace("+", "-").replace("/", "_").rstrip("=")


@functools.lru_cache(maxsize=4096)
def parse_pattern(text: str) -> Pattern:
    """Compile an identifier pattern. Raises ValueError with a reason fit for a user."""
    if text != text.strip():
        raise ValueError(f"{text!r} has leading or trailing spaces")
    if not text:
        raise ValueError("empty identifier")
    if text.replace("*", "") in ("", ":"):
        raise ValueError(f"{text!r} would match every holder")
    if ":" not in text:
        raise ValueError(f"{text!r} is not a holder id: holder ids start with a kind, such as "
                         "spiffe://, x5t:, jkt:, client:, agent:, k8s:, aws: or ip:")
    if "*" in text:
        return Pattern(text=text, kind="glob", like=_like_of_glob(text))
    if text.startswith("x5t:"):
        return Pattern(text="x5t:" + _normalise_x5t(text[4:]), kind="exact")
    if text.startswith("ip:"):
        return _parse_ip_pattern(text)
    return Pattern(text=text, kind="exact")


def _parse_ip_pattern(text: str) -> Pattern:
    rest = text[3:]
    addr, slash, tail = rest.partition("/")
    if not (re.fullmatch(r"[0-9.]+", addr) or ":" in addr):
        raise ValueError(f"{text!r}: expected ip:<address>, ip:<CIDR> or ip:<address>/<user-agent family>")
    if not slash or re.fullmatch(r"[0-9]{1,3}", tail):
        try:
            net = parse_network(rest)
        except ValueError as exc:
            hint = ""
            if "host bits set" in str(exc):
                try:
                    hint = f" (did you mean ip:{parse_network_loose(rest)}?)"
                except ValueError:  # pragma: no cover - host bits set implies it parses loosely
                    hint = ""
            raise ValueError(f"{text!r} is not a valid address or CIDR{hint or ': ' + str(exc)}") from None
        lo, hi = network_bounds(net)
        prefix = net.prefixlen + (96 if net.version == 4 else 0)
        return Pattern(text=f"ip:{net}", kind="cidr", lo=lo, hi=hi, prefix=prefix)
    if "/" in tail:
        raise ValueError(f"{text!r}: a CIDR with a user-agent family is not supported; use the CIDR alone")
    if ip_key(addr) is None:
        raise ValueError(f"{text!r}: {addr!r} is not a valid IP address")
    return Pattern(text=text, kind="exact")


def parse_network_loose(text: str) -> str:
    """A CIDR with its host bits cleared ("10.42.1.5/24" -> "10.42.1.0/24")."""
    return str(ipaddress.ip_network(text.strip(), strict=False))
