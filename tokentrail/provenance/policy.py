"""The policy file: what the environment says is legitimate.

A policy is a TOML file (`--policy`, default `./tokentrail.toml` when present) naming the
workloads and every identifier that is them, the delegations allowed between them, the
transports (gateways, sidecars) that re-present tokens, the trusted and NAT networks and the
token lifetime and clock skew to allow. Every section is optional; a missing file is the empty
`Policy()`.

`Policy.install(con)` writes the policy into TEMP tables so classification and rule SQL can
join it, and `holder_workload_sql` names the workload of a holder id inside any query:

    policy_workloads(name, role, internal, description)
    policy_identifiers(workload, role, internal, pattern, kind, like_pattern,
                       cidr_lo, cidr_hi, precedence)
    policy_delegations(from_workload, to_workload, audience, max_depth)
    policy_networks(kind, cidr, cidr_lo, cidr_hi)
    policy_settings(key, value)

Identifier patterns: an exact holder id; a glob where `*` matches any run of characters
(including `/`); or `ip:<address>` / `ip:<CIDR>`, which matches every `ip:` holder whose
address is in the range, with or without its `/<user-agent family>` suffix. When a holder
matches several patterns the most specific wins: exact, then the longest CIDR prefix, then the
glob with the most literal characters, then the first declared.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import duckdb

from tokentrail.errors import TokentrailError
from tokentrail.provenance.netmatch import install_net_macros, ip_key, network_bounds, parse_network

DEFAULT_POLICY_NAME = "tokentrail.toml"
DEFAULT_CLOCK_SKEW_S = 120

ROLES = ("workload", "transport")
PATTERN_KINDS = ("exact", "glob", "cidr")
NETWORK_KINDS = ("trusted", "nat")


class PolicyError(TokentrailError):
    """A policy file is missing, unreadable or invalid (exit code 3, like InputError)."""


# ---------------------------------------------------------------------------------------------
# Durations


_DURATION_RE = re.compile(r"(?:\d+[smhd])+")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds in "90s", "15m", "1h", "1d", "1h30m", "3600" or an integer. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"15m\", got boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as \"15m\", got {_toml_type(value)}")
    text = value.strip().lower().replace(" ", "")
    if text.isascii() and text.isdigit():
        return int(text)
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration "
                         "(use e.g. \"90s\", \"15m\", \"1h\", \"1d\" or integer seconds)")
    return sum(int(n) * _UNIT_S[u] for n, u in re.findall(r"(\d+)([smhd])", text))


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


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Workload:
    """A named workload and every identifier that is it (replicas, NAT egress, aliases)."""

    name: str
    identifiers: tuple[str, ...]
    internal: bool = True
    description: str | None = None


@dataclass(frozen=True)
class Transport:
    """A gateway or sidecar that legitimately re-presents tokens it did not receive."""

    name: str
    identifiers: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True)
class Delegation:
    """`from_workload` may hand authority to each of `to` (for `audiences`, or any when empty),
    with act chains up to `max_depth` long."""

    from_workload: str
    to: tuple[str, ...]
    audiences: tuple[str, ...] = ()
    max_depth: int = 1
    description: str | None = None


@dataclass(frozen=True)
class Networks:
    """Normalised CIDRs ("10.0.0.0/8"; a bare address becomes a /32 or /128)."""

    trusted: tuple[str, ...] = ()
    nat: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A validated policy. `Policy()` is the empty policy used when there is no file."""

    path: Path | None = None
    max_token_lifetime_s: int | None = None
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S
    workloads: tuple[Workload, ...] = ()
    delegations: tuple[Delegation, ...] = ()
    transports: tuple[Transport, ...] = ()
    networks: Networks = field(default_factory=Networks)

    @property
    def is_empty(self) -> bool:
        return not (self.workloads or self.delegations or self.transports
                    or self.networks.trusted or self.networks.nat
                    or self.max_token_lifetime_s is not None
                    or self.clock_skew_s != DEFAULT_CLOCK_SKEW_S)

    def workload(self, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.name == name), None)

    def identifier_rows(self) -> list[tuple[str, str, bool, Pattern, int]]:
        """(name, role, internal, pattern, precedence) for every identifier, best match first."""
        entries: list[tuple[str, str, bool, Pattern]] = []
        for w in self.workloads:
            entries += [(w.name, "workload", w.internal, parse_pattern(i)) for i in w.identifiers]
        for t in self.transports:
            entries += [(t.name, "transport", True, parse_pattern(i)) for i in t.identifiers]
        order = sorted(range(len(entries)), key=lambda n: (PATTERN_KINDS.index(entries[n][3].kind),
                                                             -entries[n][3].specificity, n))
        return [(*entries[n], rank) for rank, n in enumerate(order)]

    def workload_of(self, holder_id: str, role: str | None = "workload") -> str | None:
        """The workload (or transport) name of a holder id, as `holder_workload_sql` finds it."""
        _check_role(role)
        for name, r, _internal, pattern, _rank in self.identifier_rows():
            if (role is None or r == role) and pattern.matches(holder_id):
                return name
        return None

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)create the policy_* TEMP tables on `con` (and the netmatch macros they need).

        The empty policy creates the same tables, empty, with default settings, so SQL written
        against them always binds.
        """
        install_net_macros(con)
        con.execute("CREATE OR REPLACE TEMP TABLE policy_workloads (name VARCHAR NOT NULL, "
                    "role VARCHAR NOT NULL, internal BOOLEAN NOT NULL, description VARCHAR)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_identifiers (workload VARCHAR NOT NULL, "
                    "role VARCHAR NOT NULL, internal BOOLEAN NOT NULL, pattern VARCHAR NOT NULL, "
                    "kind VARCHAR NOT NULL, like_pattern VARCHAR, cidr_lo VARCHAR, cidr_hi VARCHAR, "
                    "precedence INTEGER NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_delegations (from_workload VARCHAR NOT NULL, "
                    "to_workload VARCHAR NOT NULL, audience VARCHAR, max_depth INTEGER NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_networks (kind VARCHAR NOT NULL, "
                    "cidr VARCHAR NOT NULL, cidr_lo VARCHAR NOT NULL, cidr_hi VARCHAR NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_settings (key VARCHAR NOT NULL, value BIGINT)")

        workloads = [(w.name, "workload", w.internal, w.description) for w in self.workloads]
        workloads += [(t.name, "transport", True, t.description) for t in self.transports]
        identifiers = [(name, role, internal, p.text, p.kind, p.like, p.lo, p.hi, rank)
                       for name, role, internal, p, rank in self.identifier_rows()]
        delegations = [(d.from_workload, to, aud, d.max_depth)
                       for d in self.delegations for to in d.to for aud in (d.audiences or (None,))]
        networks = [(kind, cidr, *network_bounds(parse_network(cidr)))
                    for kind, cidrs in (("trusted", self.networks.trusted), ("nat", self.networks.nat))
                    for cidr in cidrs]
        settings = [("max_token_lifetime_s", self.max_token_lifetime_s), ("clock_skew_s", self.clock_skew_s)]
        for table, rows in (("policy_workloads", workloads), ("policy_identifiers", identifiers),
                            ("policy_delegations", delegations), ("policy_networks", networks),
                            ("policy_settings", settings)):
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _check_role(role: str | None) -> None:
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES} or None, not {role!r}")


def holder_workload_sql(holder_expr: str, role: str | None = "workload") -> str:
    """A scalar-subquery SQL expression: the workload name of the holder id `holder_expr`, or
    NULL. `role="transport"` names transports instead, `role=None` either.

    Needs `Policy.install(con)` first. `holder_expr` is evaluated in the enclosing query;
    qualify its columns (`e.holder_id`). Cost is a join of each distinct holder with the
    policy's identifiers: apply it to holders, not to raw events, on large cases.
    """
    _check_role(role)
    role_cond = "" if role is None else f"_tt_pi.role = '{role}' AND "
    return (
        "(SELECT _tt_pi.workload FROM "
        "(SELECT _tt_h0._tt_holder, tt_ip_key(tt_holder_ip(_tt_h0._tt_holder)) AS _tt_key "
        f"FROM (SELECT CAST(({holder_expr}) AS VARCHAR) AS _tt_holder) AS _tt_h0) AS _tt_h "
        f"JOIN policy_identifiers AS _tt_pi ON {role_cond}("
        "(_tt_pi.kind = 'exact' AND _tt_pi.pattern = _tt_h._tt_holder) "
        "OR (_tt_pi.kind = 'glob' AND _tt_h._tt_holder LIKE _tt_pi.like_pattern ESCAPE '\\') "
        "OR (_tt_pi.kind = 'cidr' AND _tt_h._tt_key BETWEEN _tt_pi.cidr_lo AND _tt_pi.cidr_hi)) "
        "ORDER BY _tt_pi.precedence LIMIT 1)"
    )


def ip_in_network_sql(ip_expr: str, kind: str | None = None) -> str:
    """A boolean SQL expression: is the address `ip_expr` inside a declared network of `kind`
    ('trusted' or 'nat'; None = either)? False for junk or NULL addresses. For a holder id, pass
    `tt_holder_ip(<holder expr>)`."""
    if kind is not None and kind not in NETWORK_KINDS:
        raise ValueError(f"kind must be one of {NETWORK_KINDS} or None, not {kind!r}")
    kind_cond = "" if kind is None else f"_tt_pn.kind = '{kind}' AND "
    return (f"EXISTS (SELECT 1 FROM policy_networks AS _tt_pn WHERE {kind_cond}"
            f"tt_ip_key({ip_expr}) BETWEEN _tt_pn.cidr_lo AND _tt_pn.cidr_hi)")


# ---------------------------------------------------------------------------------------------
# Loading


def find_default_policy(cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """`<cwd>/tokentrail.toml` when it exists, else None."""
    candidate = Path(cwd if cwd is not None else Path.cwd()) / DEFAULT_POLICY_NAME
    return candidate if candidate.is_file() else None


def resolve_policy(path: str | os.PathLike[str] | None = None,
                   cwd: str | os.PathLike[str] | None = None) -> Policy:
    """The policy at `path`, else the default file in `cwd` when present, else `Policy()`."""
    if path is not None:
        return load_policy(path)
    default = find_default_policy(cwd)
    return load_policy(default) if default is not None else Policy()


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file. Raises PolicyError naming the file, line and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("policy file not found", file=str(path)) from None
    except UnicodeDecodeError:
        raise PolicyError("policy file is not UTF-8 text", file=str(path)) from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror or exc}", file=str(path)) from None
    return parse_policy(text, file=str(path), path=p)


def parse_policy(text: str, *, file: str = "<policy>", path: Path | None = None) -> Policy:
    """Validate policy TOML text. `file` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at (?:line (\d+), column \d+|end of document)\)$", msg)
        line = None
        if m:
            line = int(m.group(1)) if m.group(1) else max(1, len(text.splitlines()))
            msg = msg[: m.start()]
        raise PolicyError(f"invalid TOML: {msg}", file=file, line=line) from None
    return _Loader(text, file, path).load(doc)


# ---------------------------------------------------------------------------------------------
# Validation


KeyPath = Sequence[str | int]


def format_key(parts: KeyPath) -> str:
    """["workloads", 1, "identifiers", 2] -> "workloads[1].identifiers[2]" (indices from 0)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


_KEY_TOKEN = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_HEADER_RE = re.compile(rf"\s*(\[\[?)\s*({_KEY_TOKEN}(?:\s*\.\s*{_KEY_TOKEN})*)\s*\]\]?")
_KEYLINE_RE = re.compile(rf"\s*({_KEY_TOKEN}(?:\s*\.\s*{_KEY_TOKEN})*)\s*=")


def _dotted(raw: str) -> str:
    parts = re.findall(_KEY_TOKEN, raw)
    return ".".join(p[1:-1] if p[:1] in "\"'" else p for p in parts)


class _LineIndex:
    """Best-effort line numbers for key paths: tomllib gives none, so scan the text for table
    headers and `key =` lines. Inline tables and odd layouts fall back to an enclosing key."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.where: dict[str, int] = {}  # "workloads[1].identifiers" -> line (1-based)
        counts: dict[str, int] = {}
        section = ""
        in_multiline: str | None = None
        for n, line in enumerate(self.lines, start=1):
            if in_multiline:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER_RE.match(line)
            if header:
                name = _dotted(header.group(2))
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, 0) + 1
                    section = f"{name}[{counts[name] - 1}]"
                else:
                    section = name
                self.where.setdefault(section, n)
                continue
            keyline = _KEYLINE_RE.match(line)
            if keyline:
                key = _dotted(keyline.group(1))
                self.where.setdefault(f"{section}.{key}" if section else key, n)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote

    def line_of(self, parts: KeyPath, value: object = None) -> int | None:
        parts = list(parts)
        while parts:
            key = format_key(parts)
            if key in self.where:
                return self.where[key]
            if isinstance(parts[-1], int) and len(parts) > 1:
                parent = format_key(parts[:-1])
                if parent in self.where and isinstance(value, str):
                    return self._find_value(self.where[parent], value)
            parts.pop()
            value = None
        return None

    def _find_value(self, from_line: int, value: str) -> int:
        """The first line at or after `from_line` (before the next header) quoting `value`."""
        needles = (f'"{value}"', f"'{value}'")
        for n in range(from_line, len(self.lines) + 1):
            line = self.lines[n - 1]
            if n > from_line and _HEADER_RE.match(line):
                break
            if any(needle in line for needle in needles):
                return n
        return from_line


_TOP_KEYS = ("max_token_lifetime", "clock_skew", "workloads", "delegations", "transports", "networks")
_WORKLOAD_KEYS = ("name", "identifiers", "internal", "description")
_TRANSPORT_KEYS = ("name", "identifiers", "description")
_DELEGATION_KEYS = ("from", "to", "audiences", "max_depth", "description")
_NETWORK_KEYS = ("trusted", "nat")


class _Loader:
    def __init__(self, text: str, file: str, path: Path | None) -> None:
        self.index = _LineIndex(text)
        self.file = file
        self.path = path

    def fail(self, parts: KeyPath, message: str, value: object = None) -> NoReturn:
        raise PolicyError(message, file=self.file, line=self.index.line_of(parts, value),
                          key=format_key(parts) or None)

    # -- typed accessors ---------------------------------------------------------------------

    def table(self, value: object, parts: KeyPath, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(parts, f"expected a table, got {_toml_type(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail([*parts, key], f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}")
        return value

    def tables(self, value: object, parts: KeyPath,
               allowed: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        name = format_key(parts)
        if not isinstance(value, list):
            self.fail(parts, f"expected an array of tables ([[{name}]]), got {_toml_type(value)}")
        for n, item in enumerate(value):
            yield n, self.table(item, [*parts, n], allowed)

    def string(self, value: object, parts: KeyPath, *, nonempty: bool = True) -> str:
        if not isinstance(value, str):
            self.fail(parts, f"expected a string, got {_toml_type(value)}")
        if nonempty and not value.strip():
            self.fail(parts, "must not be empty")
        return value

    def strings(self, value: object, parts: KeyPath, *, nonempty: bool = False) -> list[str]:
        if not isinstance(value, list):
            self.fail(parts, f"expected an array of strings, got {_toml_type(value)}")
        if nonempty and not value:
            self.fail(parts, "must not be empty")
        return [self.string(v, [*parts, n]) for n, v in enumerate(value)]

    def boolean(self, value: object, parts: KeyPath) -> bool:
        if not isinstance(value, bool):
            self.fail(parts, f"expected true or false, got {_toml_type(value)}")
        return value

    def integer(self, value: object, parts: KeyPath, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(parts, f"expected an integer, got {_toml_type(value)}")
        if value < minimum:
            self.fail(parts, f"must be at least {minimum}, got {value}")
        return value

    def duration(self, value: object, parts: KeyPath, minimum: int) -> int:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(parts, str(exc))
        if seconds < minimum:
            self.fail(parts, f"must be at least {minimum}s, got {value!r}")
        return seconds

    def optional(self, table: dict[str, Any], key: str, parts: KeyPath,
                 convert: Callable[[object, KeyPath], Any], default: Any) -> Any:
        return convert(table[key], [*parts, key]) if key in table else default

    def required(self, table: dict[str, Any], key: str, parts: KeyPath) -> object:
        if key not in table:
            self.fail(parts, f"missing required key {key!r}")
        return table[key]

    # -- sections -----------------------------------------------------------------------------

    def load(self, doc: dict[str, Any]) -> Policy:
        self.table(doc, [], _TOP_KEYS)
        lifetime = self.optional(doc, "max_token_lifetime", [], lambda v, p: self.duration(v, p, 1), None)
        skew = self.optional(doc, "clock_skew", [], lambda v, p: self.duration(v, p, 0), DEFAULT_CLOCK_SKEW_S)
        seen_names: dict[str, str] = {}
        seen_patterns: dict[str, str] = {}
        workloads = [self.workload(item, ["workloads", n], seen_names, seen_patterns)
                     for n, item in self.tables(doc.get("workloads", []), ["workloads"], _WORKLOAD_KEYS)]
        transports = [self.transport(item, ["transports", n], seen_names, seen_patterns)
                      for n, item in self.tables(doc.get("transports", []), ["transports"], _TRANSPORT_KEYS)]
        names = {w.name for w in workloads}
        transport_names = {t.name for t in transports}
        delegations = [
            self.delegation(item, ["delegations", n], names, transport_names)
            for n, item in self.tables(doc.get("delegations", []), ["delegations"], _DELEGATION_KEYS)]
        networks = Networks()
        if "networks" in doc:
            table = self.table(doc["networks"], ["networks"], _NETWORK_KEYS)
            networks = Networks(trusted=self.networks(table, "trusted"), nat=self.networks(table, "nat"))
        return Policy(path=self.path, max_token_lifetime_s=lifetime, clock_skew_s=skew,
                      workloads=tuple(workloads), delegations=tuple(delegations),
                      transports=tuple(transports), networks=networks)

    def name(self, table: dict[str, Any], parts: KeyPath, seen: dict[str, str]) -> str:
        name = self.string(self.required(table, "name", parts), [*parts, "name"])
        if name != name.strip():
            self.fail([*parts, "name"], f"{name!r} has leading or trailing spaces")
        if name in seen:
            self.fail([*parts, "name"], f"duplicate name {name!r} (already defined at {seen[name]})", name)
        seen[name] = format_key(parts)
        return name

    def identifiers(self, table: dict[str, Any], parts: KeyPath, owner: str,
                    seen: dict[str, str]) -> tuple[str, ...]:
        where = [*parts, "identifiers"]
        values = self.strings(self.required(table, "identifiers", parts), where, nonempty=True)
        out: list[str] = []
        for n, value in enumerate(values):
            try:
                pattern = parse_pattern(value)
            except ValueError as exc:
                self.fail([*where, n], str(exc), value)
            if pattern.text in out:
                continue
            if pattern.text in seen:
                self.fail([*where, n], f"{value!r} is already an identifier of {seen[pattern.text]}", value)
            seen[pattern.text] = repr(owner)
            out.append(pattern.text)
        return tuple(out)

    def workload(self, table: dict[str, Any], parts: KeyPath, names: dict[str, str],
                 patterns: dict[str, str]) -> Workload:
        name = self.name(table, parts, names)
        return Workload(
            name=name,
            identifiers=self.identifiers(table, parts, name, patterns),
            internal=self.optional(table, "internal", parts, self.boolean, True),
            description=self.optional(table, "description", parts, self._text, None),
        )

    def transport(self, table: dict[str, Any], parts: KeyPath, names: dict[str, str],
                  patterns: dict[str, str]) -> Transport:
        name = self.name(table, parts, names)
        return Transport(
            name=name,
            identifiers=self.identifiers(table, parts, name, patterns),
            description=self.optional(table, "description", parts, self._text, None),
        )

    def _text(self, value: object, parts: KeyPath) -> str:
        return self.string(value, parts, nonempty=False)

    def _workload_ref(self, value: str, parts: KeyPath, names: set[str], transports: set[str]) -> str:
        if value in names:
            return value
        if value in transports:
            self.fail(parts, f"{value!r} is a transport; delegations are between workloads", value)
        close = difflib.get_close_matches(value, sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.fail(parts, f"undefined workload {value!r}{hint}; define it under [[workloads]]", value)

    def delegation(self, table: dict[str, Any], parts: KeyPath, names: set[str],
                   transports: set[str]) -> Delegation:
        source = self.string(self.required(table, "from", parts), [*parts, "from"])
        source = self._workload_ref(source, [*parts, "from"], names, transports)
        targets = self.strings(self.required(table, "to", parts), [*parts, "to"], nonempty=True)
        targets = [self._workload_ref(t, [*parts, "to", n], names, transports) for n, t in enumerate(targets)]
        audiences = self.optional(table, "audiences", parts, self.strings, [])
        return Delegation(
            from_workload=source,
            to=tuple(dict.fromkeys(targets)),
            audiences=tuple(dict.fromkeys(audiences)),
            max_depth=self.optional(table, "max_depth", parts, lambda v, p: self.integer(v, p, 1), 1),
            description=self.optional(table, "description", parts, self._text, None),
        )

    def networks(self, table: dict[str, Any], key: str) -> tuple[str, ...]:
        where: list[str | int] = ["networks", key]
        out: list[str] = []
        for n, value in enumerate(self.optional(table, key, ["networks"], self.strings, [])):
            try:
                net = parse_network(value)
            except ValueError as exc:
                hint = ""
                if "host bits set" in str(exc):
                    hint = f" (did you mean {parse_network_loose(value)!r}?)"
                self.fail([*where, n], f"{value!r} is not a valid CIDR{hint or ': ' + str(exc)}", value)
            if str(net) not in out:
                out.append(str(net))
        return tuple(out)
