"""Reading a policy file: find it (`--policy`, else ./tokentrail.toml), parse the TOML, and
validate every key with the file, line and key path in the error, so a typo is found before a
scan quietly ignores a section."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tokentrail.errors import TokentrailError
from tokentrail.provenance.netmatch import parse_network

from .model import DEFAULT_CLOCK_SKEW_S, Delegation, Networks, Policy, Transport, Workload
from .patterns import parse_network_loose, parse_pattern

DEFAULT_POLICY_NAME = "tokentrail.toml"


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
