"""The declarative format mapping: how to recognise a log, read it, and map it to events.

A mapping is a TOML file. Built-in formats are written exactly the way a user writes their
own for `--mapping`, so every format goes through one engine and one set of checks.

`[read]` says which containers besides JSON Lines and JSON arrays the format comes in:

- `wrappers = ["Records"]`: a document `{"Records": [...]}`; each element is a record.
- `nested = ["resourceSpans.scopeSpans.spans", ...]`: envelopes nested two or more levels
  deep (OTLP/JSON). Every innermost element is one record, and the element of each outer level
  it sits in travels with it, without its child array, under the level's name:
  `{"resourceSpans": {"resource": ...}, "scopeSpans": {"scope": ...}, "spans": {...},
  "_document": 1}`. `_document` is the document's number: its line for JSON Lines of
  documents (the OpenTelemetry collector's file exporter), its position for a file of whole
  (pretty-printed, possibly concatenated) documents. Plain or gzip. For these records an
  event's `line` is not a line of the file but the record's ordinal (1-based, innermost
  elements in file order, counting a document rejected whole as one unless its line was not
  even text); a rejected record's `line` likewise. A document that cannot be used at all
  (invalid JSON, not an object, none of the paths, invalid UTF-8) is one reject whose `line`
  is its line in the file (its position for whole documents). An empty envelope
  (`"spans": []`) is no record and no reject.

- `payload = ["properties.log"]`: forwarded envelopes that carry the record as a JSON string
  (Azure diagnostic settings put an AKS API server audit event, a line of the API server's
  log, in `properties.log`). A record with a JSON object in that string is read as that
  object (sniffing too); any other record is read as it is. Line accounting is unchanged: one
  envelope, one event or one reject, at the envelope's line.

`[[reject]]` checks run after the engine's own (invalid JSON, no usable timestamp); one with
`first = true` runs before them, for a record recognisably of another form whose missing
timestamp is only a symptom (e.g. a Cloud Logging wrapper inside a Kubernetes audit file).
Checks see the event columns and `raw`, the record's text.

`[let]` names SQL expressions over the record `r` (and `raw`, its text) that are computed once
per record and used in `[columns]`, `[extra]` and `[[reject]]` as `l.<name>`; a value may use
the values listed before it: for a value many columns need
(e.g. an OTLP attribute list turned into a map once, instead of searched once per column).

`dedupe = ["r.auditID", "r.stage"]` (top level) names the SQL expressions that together
identify one record where the vendor documents them as a unique event id (CloudTrail eventID,
Auth0 log_id, ...). Records of one file with the same non-NULL key are one event: the first
(by line) is kept, the others are counted as duplicates (not rejects). Delivery pipelines
repeat records (CloudTrail documents at-least-once delivery; overlapping exports), and a
repeated record counted twice would look like a second use of its token.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tokentrail.case.schema import EVENT_COLUMN_NAMES, PSEUDO_COLUMNS

from ..errors import MappingError

TOP_KEYS = {"name", "title", "description", "provides", "read", "record", "sniff", "columns",
            "extra", "reject", "let", "dedupe"}
READ_KEYS = {"wrappers", "nested", "payload"}
NESTED_DOCUMENT_KEY = "_document"  # added to every nested record: its document's number
SNIFF_KEYS = {"required", "any", "equals", "prefix", "or"}
PROVIDES_KEYS = {"token_id", "holder", "issuance", "limits"}


@dataclass(frozen=True)
class RejectCheck:
    when: str
    reason: str
    first: bool = False  # checked before the engine's timestamp check


@dataclass(frozen=True)
class Sniff:
    required: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    equals: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    prefix: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # [[sniff.or]]: other shapes of the same format (e.g. its events as log lines); a record
    # matches when it matches this predicate or one of these.
    alternatives: tuple[Sniff, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.required or self.any or self.equals or self.prefix
                    or self.alternatives)

    def score(self, record: Any) -> int:
        """0 when the record is not of this format; else how much of the predicate it met."""
        if not isinstance(record, dict) or not self.enabled:
            return 0
        own = self._score(record) if (self.required or self.any or self.equals
                                      or self.prefix) else 0
        return max([own] + [alt.score(record) for alt in self.alternatives])

    def _score(self, record: dict[str, Any]) -> int:
        score = 0
        for path in self.required:
            if _lookup(record, path) is _MISSING:
                return 0
            score += 2
        if self.any:
            hits = sum(1 for p in self.any if _lookup(record, p) is not _MISSING)
            if hits == 0:
                return 0
            score += hits
        for path, values in self.equals.items():
            if _lookup(record, path) not in values:
                return 0
            score += 3
        for path, prefixes in self.prefix.items():
            value = _lookup(record, path)
            if not isinstance(value, str) or not value.startswith(prefixes):
                return 0
            score += 3
        return score


_MISSING = object()


def _lookup(record: Any, path: str) -> Any:
    """Dotted path lookup; a segment may be quoted to contain dots: a."b.c".d"""
    node = record
    for part in _split_path(path):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _split_path(path: str) -> list[str]:
    parts: list[str] = []
    buf = ""
    quoted = False
    for ch in path:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts


@dataclass(frozen=True)
class Mapping:
    name: str
    title: str
    description: str
    source: str  # file the mapping came from (for error messages)
    record: dict[str, Any]  # json_transform structure
    columns: dict[str, str]
    extra: dict[str, str]
    sniff: Sniff
    wrappers: tuple[str, ...]
    rejects: tuple[RejectCheck, ...]
    provides: dict[str, str]
    builtin: bool = False
    nested: tuple[tuple[str, ...], ...] = ()  # [read] nested: paths split into their levels
    let: dict[str, str] = field(default_factory=dict)  # [let] name -> SQL over r, as l.<name>
    dedupe: tuple[str, ...] = ()  # SQL over r: a record's unique id (duplicates kept once)
    payload: tuple[str, ...] = ()  # [read] payload: dotted paths of a JSON-string record

    def unwrap(self, record: Any) -> Any:
        """The record the pipeline reads: the JSON object in the first `payload` string that
        holds one, else the record itself (the SQL reader does the same, see compiler)."""
        for path in self.payload:
            value = _lookup(record, path)
            if isinstance(value, str) and value.lstrip().startswith("{"):
                try:
                    inner = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(inner, dict):
                    return inner
        return record

    @property
    def structure_json(self) -> str:
        return orjson.dumps(self.record).decode()


def load_mapping(path: str | Path, *, builtin: bool = False) -> Mapping:
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError("mapping file not found", file=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read mapping: {exc}", file=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"invalid TOML: {exc}", file=where) from None
    return mapping_from_dict(data, source=where, builtin=builtin)


def _expect(cond: bool, message: str, source: str, key: str) -> None:
    if not cond:
        raise MappingError(message, file=source, key=key)


def _str_list(value: Any, source: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value),
            "must be a string or a list of strings", source, key)
    return tuple(value)


def _check_structure(value: Any, source: str, key: str) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_structure(v, source, f"{key}.{k}")
        return
    if isinstance(value, list) and len(value) == 1:
        _check_structure(value[0], source, f"{key}[0]")
        return
    raise MappingError("must be a DuckDB type name, a table, or a one-element list",
                       file=source, key=key)


def mapping_from_dict(data: dict[str, Any], *, source: str, builtin: bool = False) -> Mapping:
    unknown = set(data) - TOP_KEYS
    _expect(not unknown, f"unknown key(s) {sorted(unknown)}; expected {sorted(TOP_KEYS)}",
            source, ",".join(sorted(unknown)))
    name = data.get("name")
    _expect(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum(),
            "name must be a word (letters, digits, - and _)", source, "name")
    assert isinstance(name, str)
    record = data.get("record", {})
    _expect(isinstance(record, dict) and bool(record),
            "[record] must list the fields to read and their DuckDB types", source, "record")
    _check_structure(record, source, "record")

    columns = data.get("columns", {})
    _expect(isinstance(columns, dict), "[columns] must be a table", source, "columns")
    allowed = set(EVENT_COLUMN_NAMES) | set(PSEUDO_COLUMNS)
    for col, expr in columns.items():
        _expect(col in allowed, f"unknown column {col!r}; see `tokentrail formats --columns`",
                source, f"columns.{col}")
        _expect(isinstance(expr, str) and expr.strip() != "", "must be a SQL expression string",
                source, f"columns.{col}")
    _expect("ts" in columns, "a mapping must say where the timestamp is", source, "columns.ts")

    extra = data.get("extra", {})
    _expect(isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values()),
            "[extra] must map names to SQL expressions", source, "extra")

    let = data.get("let", {})
    _expect(isinstance(let, dict), "[let] must map names to SQL expressions", source, "let")
    for k, v in let.items():
        _expect(k.isidentifier() and k.isascii(),
                "a [let] name must be an identifier (letters, digits, _), used as l.<name>",
                source, f"let.{k}")
        _expect(isinstance(v, str) and v.strip() != "", "must be a SQL expression string",
                source, f"let.{k}")

    dedupe = _str_list(data.get("dedupe", []), source, "dedupe")
    _expect(all(e.strip() for e in dedupe), "each dedupe entry must be a SQL expression",
            source, "dedupe")

    read = data.get("read", {})
    _expect(isinstance(read, dict) and not (set(read) - READ_KEYS),
            f"[read] accepts {sorted(READ_KEYS)}", source, "read")
    wrappers = _str_list(read.get("wrappers", []), source, "read.wrappers")
    nested = _nested_paths(read.get("nested", []), wrappers, source)
    payload = _str_list(read.get("payload", []), source, "read.payload")
    for i, path in enumerate(payload):
        _expect(bool(path) and all(p and all(ch.isalnum() or ch in "_-$@" for ch in p)
                                   for p in path.split(".")),
                f"{path!r} must be a dotted path of JSON keys (letters, digits, _ - $ @)",
                source, f"read.payload[{i}]")

    sniff = _sniff(data.get("sniff", {}), source, "sniff")

    rejects_raw = data.get("reject", [])
    _expect(isinstance(rejects_raw, list), "[[reject]] must be an array of tables", source,
            "reject")
    rejects = []
    for i, item in enumerate(rejects_raw):
        _expect(isinstance(item, dict) and {"when", "reason"} <= set(item)
                and set(item) <= {"when", "reason", "first"}
                and isinstance(item.get("first", False), bool),
                "each [[reject]] needs `when` (SQL) and `reason`, and may set `first` "
                "(true/false)", source, f"reject[{i}]")
        rejects.append(RejectCheck(when=item["when"], reason=item["reason"],
                                   first=bool(item.get("first", False))))

    provides = data.get("provides", {})
    _expect(isinstance(provides, dict) and not (set(provides) - PROVIDES_KEYS),
            f"[provides] accepts {sorted(PROVIDES_KEYS)}", source, "provides")

    return Mapping(
        name=name, title=str(data.get("title", name)),
        description=str(data.get("description", "")).strip(), source=source,
        record=record, columns=dict(columns), extra=dict(extra), sniff=sniff,
        wrappers=wrappers, rejects=tuple(rejects),
        provides={k: str(v) for k, v in provides.items()}, builtin=builtin, nested=nested,
        let=dict(let), dedupe=dedupe, payload=payload,
    )


def _sniff(raw: Any, source: str, key: str) -> Sniff:
    """[sniff] and each of its [[sniff.or]] alternatives (which cannot nest further)."""
    keys = SNIFF_KEYS if key == "sniff" else SNIFF_KEYS - {"or"}
    _expect(isinstance(raw, dict) and not (set(raw) - keys),
            f"[{key}] accepts {sorted(keys)}", source, key)
    equals: dict[str, tuple[Any, ...]] = {}
    for k, v in raw.get("equals", {}).items():
        equals[k] = tuple(v) if isinstance(v, list) else (v,)
    prefix: dict[str, tuple[str, ...]] = {}
    for k, v in raw.get("prefix", {}).items():
        prefix[k] = _str_list(v, source, f"{key}.prefix.{k}")
    alts = raw.get("or", [])
    _expect(isinstance(alts, list), "[[sniff.or]] must be an array of tables", source,
            f"{key}.or")
    return Sniff(
        required=_str_list(raw.get("required", []), source, f"{key}.required"),
        any=_str_list(raw.get("any", []), source, f"{key}.any"),
        equals=equals, prefix=prefix,
        alternatives=tuple(_sniff(a, source, f"sniff.or[{i}]") for i, a in enumerate(alts)),
    )


def _nested_paths(value: Any, wrappers: tuple[str, ...],
                  source: str) -> tuple[tuple[str, ...], ...]:
    """`[read] nested`: dotted paths of at least two levels, each level a JSON key."""
    key = "read.nested"
    paths = _str_list(value, source, key)
    out: list[tuple[str, ...]] = []
    for i, path in enumerate(paths):
        where = f"{key}[{i}]"
        levels = tuple(path.split("."))
        _expect(len(levels) >= 2,
                f"{path!r} has one level; a nested path names the outer array and the "
                "array inside its elements, e.g. \"resourceSpans.scopeSpans.spans\" "
                "(a single top-level array is `wrappers`)", source, where)
        for level in levels:
            _expect(bool(level) and all(ch.isalnum() or ch in "_-$@" for ch in level),
                    f"{path!r}: level {level!r} must be a non-empty JSON key of letters, "
                    "digits, _ - $ @ (levels are separated by dots)", source, where)
        _expect(len(set(levels)) == len(levels),
                f"{path!r} repeats a level; each level's element is stored under its name",
                source, where)
        _expect(NESTED_DOCUMENT_KEY not in levels,
                f"{path!r}: {NESTED_DOCUMENT_KEY!r} is reserved for the document number",
                source, where)
        _expect(levels[0] not in wrappers,
                f"{path!r} starts at {levels[0]!r}, which is also a wrapper key; a file "
                "could be read either way", source, where)
        _expect(levels not in out, f"{path!r} is listed twice", source, where)
        out.append(levels)
    return tuple(out)
