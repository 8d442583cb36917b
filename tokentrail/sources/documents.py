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

_NEXT_DOC = re.compile(r"\n(?=[{\[])")


def salvage_documents(data: bytes, workdir: str) -> tuple[str, int, int]:
    """Write the documents of `data` as JSON Lines; return (path, good, broken)."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    decoder = json.JSONDecoder()
    path = os.path.join(workdir, "salvage-documents.jsonl")
    good = broken = 0
    pos, n = 0, len(text)
    with open(path, "w", encoding="utf-8") as out:
        while True:
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                value, pos = decoder.raw_decode(text, pos)
                out.write(json.dumps(value, ensure_ascii=False) + "\n")
                good += 1
            except ValueError:
                m = _NEXT_DOC.search(text, pos + 1)
                end = m.start() if m else n
                # one line: the pipeline rejects it as invalid JSON, with a redacted excerpt
                out.write(" ".join(text[pos:end].split()) + "\n")
                broken += 1
                pos = end
    return path, good, broken
