"""Salvage a file of concatenated (pretty-printed) JSON documents that DuckDB refused.

`jq .` prints each object over many lines, the opening and closing braces at column 0. When
one document is broken, DuckDB's reader refuses the whole file; here every complete document
is kept (one line each, in file order) and a broken one becomes one line of its own text, so
the pipeline rejects it once ("invalid JSON") instead of losing the rest of the file. Reading
resumes at the next line that opens a document at column 0. Only for broken files: a Python
pass over their documents is acceptable here (the good path is DuckDB's read_json).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

_NEXT_DOC = re.compile(r"\n(?=[{\[])")


def iter_documents(text: str, *, resync: bool = True) -> Iterator[tuple[bool, Any]]:
    """(True, value) for each complete document of concatenated JSON text, in order; a broken
    one gives (False, its text up to the next document that opens at column 0) and the walk
    resumes there, or, without `resync`, (False, None) and the walk ends."""
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            if not resync:
                yield False, None
                return
            m = _NEXT_DOC.search(text, pos + 1)
            end = m.start() if m else n
            yield False, text[pos:end]
            pos = end
            continue
        yield True, value


def salvage_documents(data: bytes, workdir: str) -> tuple[str, int, int]:
    """Write the documents of `data` as JSON Lines; return (path, good, broken)."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    path = os.path.join(workdir, "salvage-documents.jsonl")
    good = broken = 0
    with open(path, "w", encoding="utf-8") as out:
        for ok, value in iter_documents(text):
            if ok:
                out.write(json.dumps(value, ensure_ascii=False) + "\n")
                good += 1
            else:
                # one line: the pipeline rejects it as invalid JSON, with a redacted excerpt
                out.write(" ".join(value.split()) + "\n")
                broken += 1
    return path, good, broken
