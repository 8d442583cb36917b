"""Recognise a file's container (JSON Lines, array, wrapper, nested) and its format.

Only the first records are looked at (a bounded prefix of the file), so sniffing costs the
same for a 1 KB and a 10 GB log. Parsing those few records in Python is fine: the bulk of the
file is never touched here.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InputError
from .discover import SourceFile
from .mapping import Mapping

PREFIX_BYTES = 512 * 1024
SAMPLE_RECORDS = 50
KNOWN_WRAPPERS = ("Records", "records", "value")
_BOM = b"\xef\xbb\xbf"
# A Microsoft Graph page: {"@odata.context": "...", ["@odata.nextLink": "...",] "value": [...]}
_ODATA_RE = re.compile(
    rb'^\s*\{\s*(?:"@odata\.[A-Za-z]{1,32}"\s*:\s*"(?:[^"\\]|\\.){0,2048}"\s*,\s*){1,4}"(value)"\s*:\s*\[')
_WRAPPER_RE = re.compile(rb'^\s*\{\s*"([^"\\]{1,64})"\s*:\s*\[')


@dataclass(frozen=True)
class Sniffed:
    container: str  # lines | array | wrapper | nested | documents
    wrapper_key: str | None
    records: list[Any]
    nested_mode: str | None = None  # nested: "lines" (a document per line) | "document"


def read_prefix(src: SourceFile, limit: int = PREFIX_BYTES) -> bytes:
    got = b""
    try:
        if src.gzip:
            # chunked, so a damaged gzip still yields its readable start for sniffing
            with gzip.open(src.path, "rb") as gz:
                while len(got) < limit and (chunk := gz.read(min(65536, limit - len(got)))):
                    got += chunk
            return got
        with open(src.path, "rb") as fh:
            return fh.read(limit)
    except (OSError, EOFError, zlib.error) as exc:
        if got:
            return got
        raise InputError(f"cannot read: {exc}", file=src.name) from None


def _elements_after_bracket(text: str, start: int) -> list[Any]:
    """Decode array elements from text[start:] (just after '['), stopping at the prefix end."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = start
    n = len(text)
    while len(out) < SAMPLE_RECORDS:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        out.append(value)
    return out


def nested_records(doc: Any, paths: tuple[tuple[str, ...], ...],
                   limit: int = SAMPLE_RECORDS) -> list[dict[str, Any]]:
    """The records the nested reader makes of one document (for sniffing: a few only)."""
    out: list[dict[str, Any]] = []

    def walk(node: Any, levels: tuple[str, ...], record: dict[str, Any]) -> None:
        items = node.get(levels[0]) if isinstance(node, dict) else None
        if not isinstance(items, list):
            return
        for item in items:
            if len(out) >= limit:
                return
            if len(levels) == 1:
                out.append({**record, levels[0]: item})
            elif isinstance(item, dict):
                outer = {k: v for k, v in item.items() if k != levels[1]}
                walk(item, levels[1:], {**record, levels[0]: outer})

    for path in paths:
        walk(doc, path, {})
    return out


def _sniff_nested(prefix: bytes, text: str,
                  paths: tuple[tuple[str, ...], ...]) -> Sniffed:
    """A document per line (the collector's file exporter) or whole (pretty-printed) ones.

    A document per line when the first line holds more than the opening brace (it names the
    first key); then every line is read on its own and a broken one is one reject. A first
    line longer than the prefix is still a document per line."""
    body = prefix.lstrip()
    first = body.split(b"\n", 1)[0].strip()
    one_per_line = first.startswith(b"{") and len(first) > 1
    records: list[Any] = []
    if one_per_line:
        for line in prefix.split(b"\n"):
            if len(records) >= SAMPLE_RECORDS:
                break
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            records.extend(nested_records(doc, paths, SAMPLE_RECORDS - len(records)))
    else:
        decoder = json.JSONDecoder()
        pos = text.index("{")
        while len(records) < SAMPLE_RECORDS:
            try:
                doc, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break
            records.extend(nested_records(doc, paths, SAMPLE_RECORDS - len(records)))
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                break
    if not records:
        # A document larger than the prefix: the first elements of an innermost array, alone.
        for path in paths:
            m = re.search(r'"' + re.escape(path[-1]) + r'"\s*:\s*\[', text)
            if m:
                records.extend({path[-1]: e} for e in _elements_after_bracket(text, m.end()))
    return Sniffed("nested", None, records[:SAMPLE_RECORDS],
                   "lines" if one_per_line else "document")


def sniff_container(prefix: bytes, wrappers: tuple[str, ...] = KNOWN_WRAPPERS,
                    nested: tuple[tuple[str, ...], ...] = ()) -> Sniffed:
    if prefix.startswith(_BOM):
        prefix = prefix[len(_BOM):]
    stripped = prefix.lstrip()
    if not stripped:
        return Sniffed("lines", None, [])
    text = prefix.decode("utf-8", errors="replace")
    if stripped[:1] == b"[":
        return Sniffed("array", None, _elements_after_bracket(text, text.index("[") + 1))
    m = _WRAPPER_RE.match(prefix) or _ODATA_RE.match(prefix)
    if m:
        key = m.group(1).decode("utf-8", errors="replace")
        # nested envelopes first: their outer key must not be taken for a wrapper
        if any(p[0] == key for p in nested):
            return _sniff_nested(prefix, text, nested)
        if key in wrappers:
            return Sniffed("wrapper", key, _elements_after_bracket(text, len(
                prefix[: m.end()].decode("utf-8", errors="replace"))))
    if stripped[:1] == b"{" and _first_line_incomplete(stripped):
        # only when the first object parses: a JSON Lines file whose first line is broken
        # stays JSON Lines (each line one record or one reject)
        docs = _documents(text)
        if docs:
            return Sniffed("documents", None, docs)
    records: list[Any] = []
    for line in prefix.split(b"\n")[:SAMPLE_RECORDS]:
        line = line.strip()
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return Sniffed("lines", None, records)


def _first_line_incomplete(stripped: bytes) -> bool:
    """Pretty-printed JSON (one indented object, or objects concatenated as `jq` prints them):
    the first line opens an object that it does not close."""
    first = stripped.split(b"\n", 1)[0].strip()
    if first.endswith(b"}"):
        # a whole record on the first line (perhaps with invalid bytes or a bad key): JSON
        # Lines, where each line is one record or one reject
        return False
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return True
    return False


def _documents(text: str) -> list[Any]:
    """The first complete JSON documents of a prefix of concatenated (pretty) documents."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos, n = text.index("{"), len(text)
    while len(out) < SAMPLE_RECORDS and pos < n:
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        out.append(value)
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
    return out


def choose_format(records: list[Any], mappings: list[Mapping]) -> Mapping | None:
    """The mapping whose sniff predicate the sample records match best."""
    best: tuple[int, int, Mapping] | None = None
    for mapping in mappings:
        scores = [mapping.sniff.score(mapping.unwrap(r)) for r in records]
        matched = sum(1 for s in scores if s > 0)
        if matched == 0:
            continue
        key = (matched, max(scores))
        if best is None or key > best[:2]:
            best = (key[0], key[1], mapping)
    return None if best is None else best[2]


def all_nested_paths(mappings: list[Mapping]) -> tuple[tuple[str, ...], ...]:
    paths: list[tuple[str, ...]] = []
    for m in mappings:
        paths.extend(p for p in m.nested if p not in paths)
    return tuple(paths)


def all_wrapper_keys(mappings: list[Mapping]) -> tuple[str, ...]:
    keys = list(KNOWN_WRAPPERS)
    for m in mappings:
        keys.extend(k for k in m.wrappers if k not in keys)
    return tuple(keys)
