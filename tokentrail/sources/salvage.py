"""Files DuckDB cannot read as they are, made readable without losing what can be kept.

A JSON array or wrapper DuckDB refuses is re-read document by document, a gzip member that is
cut short is read up to the damage, a file that only starts like gzip is read as text, and a
gzip that expands beyond a plausible ratio is refused as a likely decompression bomb. Each
returns a readable copy (or a reason to refuse) and says what was lost, so ingest can record
it as a reject instead of failing the file. Python reads bytes here only because the file is
damaged; well-formed files never come through this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

from tokentrail.sources.discover import LineCounter, SourceFile
from tokentrail.sources.documents import iter_documents
from tokentrail.sources.readers import Reader


def salvage_array_file(src: SourceFile, workdir: str) -> tuple[str, int, str | None]:
    """Re-read a JSON array / wrapper DuckDB refused; write its elements as JSON Lines.

    Returns (path of the JSON Lines file, elements recovered, reason the rest was lost).
    Only for broken files, so a Python pass over their records is acceptable here.
    """
    data, damage = read_damaged(src)
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    decoder = json.JSONDecoder()
    start = text.find("[")
    out_path = os.path.join(workdir, "salvage.jsonl")
    count = 0
    reason: str | None = damage
    with open(out_path, "w", encoding="utf-8") as out:
        if start < 0:
            return out_path, 0, damage or "not a JSON array"
        pos = start + 1
        n = len(text)
        while True:
            while pos < n and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= n:
                reason = f"JSON array truncated after record {count}"
                break
            if text[pos] == "]":
                # More after the array? Another array (batches appended to one file, one per
                # line) or another wrapper document: read on, never drop it silently.
                pos += 1
                while pos < n and text[pos] in " \t\r\n,}":
                    pos += 1
                if pos >= n:
                    break
                nxt = text.find("[", pos) if text[pos] == "{" else (pos if text[pos] == "[" else -1)
                if nxt < 0:
                    reason = (damage + "; " if damage else "") + (
                        f"unreadable content after record {count}; the rest is lost")
                    break
                pos = nxt + 1
                continue
            try:
                value, pos = decoder.raw_decode(text, pos)
            except ValueError:
                how = "malformed" if text.rstrip().endswith(("]", "}")) else "truncated"
                reason = (damage + "; " if damage else "") + (
                    f"JSON document {how} after record {count}; the rest is lost")
                break
            out.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    return out_path, count, reason


def salvage_documents_file(src: SourceFile, workdir: str) -> tuple[str, int, str | None]:
    """Re-read a file of JSON documents (nested envelopes) DuckDB refused; write each complete
    document as one line. Returns (path, documents recovered, reason the rest was lost).
    Only for broken files: a Python pass over their documents is acceptable here."""
    data, damage = read_damaged(src)
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    out_path = os.path.join(workdir, "salvage-docs.jsonl")
    count = 0
    reason: str | None = damage
    with open(out_path, "w", encoding="utf-8") as out:
        for ok, value in iter_documents(text, resync=False):
            if not ok:
                reason = (damage + "; " if damage else "") + (
                    f"JSON document {count + 1} is truncated or malformed; it and the rest of "
                    "the file are lost")
                break
            out.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    return out_path, count, reason


MAX_GZIP_RATIO_DEFAULT = 500  # real JSON logs compress 5-100:1; gzip itself tops out near 1032:1


def gzip_bomb(src: SourceFile) -> str | None:
    """Refuse a gzip that expands absurdly: decompressing it would fill the disk (the stage
    spills) long before anything useful is read. Measured on the first MiB of compressed input
    with a bounded inflater, so a bomb costs milliseconds and a damaged file is not misjudged."""
    import zlib

    if not src.gzip:
        return None
    limit = float(os.environ.get("TOKENTRAIL_MAX_GZIP_RATIO", MAX_GZIP_RATIO_DEFAULT))
    with open(src.path, "rb") as fh:
        data = fh.read(1 << 20)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    produced, pending = 0, data
    try:
        while pending:
            out = inflater.decompress(pending, 1 << 24)
            produced += len(out)
            pending = inflater.unconsumed_tail
            consumed = len(data) - len(pending) - len(inflater.unused_data)
            if consumed > 0 and produced / consumed > limit:
                return (f"refused: gzip expands more than {produced / consumed:,.0f}:1 (a "
                        f"decompression bomb?); set TOKENTRAIL_MAX_GZIP_RATIO higher to read it")
            if not out or inflater.eof:
                break
    except zlib.error:
        return None  # damaged: the salvage path reports it
    return None


def plain_despite_magic(src: SourceFile) -> SourceFile:
    """A file that starts with the two gzip magic bytes but from which nothing decompresses
    (a stub of those bytes alone, a text line that happens to begin with them) is read as the
    plain text it is: each of its lines is a record or a reject, instead of the whole file
    failing. A gzip that yields any data keeps the gzip path (and its salvage)."""
    import zlib

    if not src.gzip:
        return src
    with open(src.path, "rb") as fh:
        data = fh.read(1 << 16)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        if inflater.decompress(data, 1) or inflater.eof or len(data) == 1 << 16:
            return src
    except zlib.error:
        pass
    counter = LineCounter()
    with open(src.path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            counter.update(chunk)
    return replace(src, gzip=False, lines=counter.lines, has_cr=counter.has_cr)


def read_damaged(src: SourceFile) -> tuple[bytes, str | None]:
    """All bytes that can be read; for a damaged gzip, everything that decompressed before
    the damage (a streaming inflater keeps output a whole-chunk reader would drop)."""
    import zlib

    if not src.gzip:
        with open(src.path, "rb") as fh:
            return fh.read(), None
    out: list[bytes] = []
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(src.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                while chunk:
                    out.append(inflater.decompress(chunk))
                    chunk = b""
                    if inflater.eof and inflater.unused_data:  # next gzip member
                        chunk = inflater.unused_data
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if not inflater.eof:
            return b"".join(out), "file damaged (gzip stream ends early)"
    except zlib.error as exc:
        return b"".join(out), f"file damaged ({exc})"
    return b"".join(out), None


def salvage_gzip_lines(src: SourceFile, workdir: str,
                        like: Reader | None = None) -> tuple[Reader, str | None]:
    data, damage = read_damaged(src)
    path = os.path.join(workdir, "salvage-lines.jsonl")
    if damage and not data.endswith(b"\n"):
        # the last line was cut by the damage: keep it out, it would be a partial record
        data = data[: data.rfind(b"\n") + 1]
        damage += "; the line cut by the damage is lost"
    with open(path, "wb") as out:
        out.write(data)
    if like is not None and like.container == "nested":  # a document per line, as before
        return replace(like, path=path, compression="none"), damage
    return Reader(path, "lines", "none"), damage
