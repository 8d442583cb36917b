"""Recognise a file's container (JSON Lines, array, wrapper) and its format.

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
_WRAPPER_RE = re.compile(rb'^\s*\{\s*"([^"\\]{1,64})"\s*:\s*\[')


@dataclass(frozen=True)
class Sniffed:
    container: str  # lines | array | wrapper
    wrapper_key: str | None
    records: list[Any]


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


def sniff_container(prefix: bytes, wrappers: tuple[str, ...] = KNOWN_WRAPPERS) -> Sniffed:
    if prefix.startswith(_BOM):
        prefix = prefix[len(_BOM):]
    stripped = prefix.lstrip()
    if not stripped:
        return Sniffed("lines", None, [])
    text = prefix.decode("utf-8", errors="replace")
    if stripped[:1] == b"[":
        return Sniffed("array", None, _elements_after_bracket(text, text.index("[") + 1))
    m = _WRAPPER_RE.match(prefix)
    if m:
        key = m.group(1).decode("utf-8", errors="replace")
        if key in wrappers:
            return Sniffed("wrapper", key, _elements_after_bracket(text, len(
                prefix[: m.end()].decode("utf-8", errors="replace"))))
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


def choose_format(records: list[Any], mappings: list[Mapping]) -> Mapping | None:
    """The mapping whose sniff predicate the sample records match best."""
    best: tuple[int, int, Mapping] | None = None
    for mapping in mappings:
        scores = [mapping.sniff.score(r) for r in records]
        matched = sum(1 for s in scores if s > 0)
        if matched == 0:
            continue
        key = (matched, max(scores))
        if best is None or key > best[:2]:
            best = (key[0], key[1], mapping)
    return None if best is None else best[2]


def all_wrapper_keys(mappings: list[Mapping]) -> tuple[str, ...]:
    keys = list(KNOWN_WRAPPERS)
    for m in mappings:
        keys.extend(k for k in m.wrappers if k not in keys)
    return tuple(keys)
