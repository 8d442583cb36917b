"""Turn the paths a user typed into a list of readable files.

Paths may be files, directories (recursive), globs, `.gz` files or `-` for stdin. Stdin is
spooled to a private temporary file so DuckDB can scan it like any other file, and so its
SHA-256 makes re-ingesting the same data a no-op.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}
_SKIP_SUFFIXES = {".md", ".txt", ".toml", ".py", ".duckdb", ".wal", ".sh"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One input file. `path` is what DuckDB reads; `name` is what the user sees."""

    path: str
    name: str
    sha256: str
    size: int
    gzip: bool
    # The fewest lines DuckDB's CSV reader can return for an uncompressed file (see
    # LineCounter); None when unknown (gzip).
    lines: int | None = None
    # Does the file hold a CR byte anywhere? None when unknown (gzip). A file without one is
    # read with LF as the only line end (see readers.Reader.crlf).
    has_cr: bool | None = None

    @property
    def source_id(self) -> str:
        return self.sha256[:16]


@dataclass
class Unreadable:
    name: str
    reason: str


class LineCounter:
    """The fewest lines the CSV reader can return for a file: one per LF, plus an
    unterminated last line. (A bare CR also ends a line for DuckDB, but its handling of CR
    runs is its own, so CRs only ever add rows and are not counted.) Counted chunk by chunk
    while the file is hashed anyway; the ingest compares it with the rows read, because
    DuckDB's parallel CSV reader has been seen to drop lines silently (2 of 10,000,000)."""

    def __init__(self) -> None:
        self.breaks = 0
        self.last = b""
        self.has_cr = False

    def update(self, chunk: bytes) -> None:
        if chunk:
            self.breaks += chunk.count(b"\n")
            self.last = chunk[-1:]
            self.has_cr = self.has_cr or b"\r" in chunk

    @property
    def lines(self) -> int:
        return self.breaks + (1 if self.last not in (b"", b"\n", b"\r") else 0)


def _hash_file(path: str) -> tuple[str, int, bool, LineCounter | None]:
    digest = hashlib.sha256()
    counter = LineCounter()
    size = 0
    with open(path, "rb") as fh:
        head = fh.read(2)
        digest.update(head)
        counter.update(head)
        size += len(head)
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            counter.update(chunk)
            size += len(chunk)
    is_gzip = head == GZIP_MAGIC
    return digest.hexdigest(), size, is_gzip, None if is_gzip else counter


def spool_stdin(stream: BinaryIO, workdir: str) -> SourceFile:
    """Copy stdin to a file while hashing it."""
    digest = hashlib.sha256()
    counter = LineCounter()
    size = 0
    tmp = os.path.join(workdir, "stdin")
    with open(tmp, "wb") as out:
        head = stream.read(2)
        while True:
            chunk = head or stream.read(CHUNK)
            head = b""
            if not chunk:
                break
            digest.update(chunk)
            counter.update(chunk)
            size += len(chunk)
            out.write(chunk)
    with open(tmp, "rb") as fh:
        is_gzip = fh.read(2) == GZIP_MAGIC
    if is_gzip:
        shutil.move(tmp, tmp + ".gz")
        tmp += ".gz"
    return SourceFile(path=tmp, name="<stdin>", sha256=digest.hexdigest(), size=size,
                      gzip=is_gzip, lines=None if is_gzip else counter.lines,
                      has_cr=None if is_gzip else counter.has_cr)


IGNORE_FILE = ".tokentrailignore"


def _ignored_patterns(directory: Path) -> list[str]:
    """Glob patterns (one per line, # comments) of files a directory walk skips there."""
    try:
        text = (directory / IGNORE_FILE).read_text(encoding="utf-8")
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        ignored = _ignored_patterns(Path(root))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() in _SKIP_SUFFIXES:
                continue
            if any(fnmatch.fnmatch(name, pat) for pat in ignored):
                continue
            path = Path(root) / name
            if not _regular_or_unreadable(path):
                continue  # a FIFO, socket or device in a log folder: opening it would block
            yield path


def _regular_or_unreadable(path: Path) -> bool:
    """A regular file (through symlinks), or one whose stat fails (a broken link, no
    permission), which `expand` then reports as unreadable rather than skipping in silence."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def expand(paths: Iterable[str], *, stdin: BinaryIO | None = None,
           workdir: str | None = None) -> tuple[list[SourceFile], list[Unreadable]]:
    """Resolve inputs in the order given; unreadable ones are reported, not raised."""
    found: list[SourceFile] = []
    bad: list[Unreadable] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p.resolve())
        if key in seen:
            return
        seen.add(key)
        try:
            sha, size, is_gzip, counter = _hash_file(str(p))
        except OSError as exc:
            bad.append(Unreadable(str(p), exc.strerror or str(exc)))
            return
        found.append(SourceFile(path=str(p), name=str(p), sha256=sha, size=size, gzip=is_gzip,
                                lines=counter.lines if counter else None,
                                has_cr=counter.has_cr if counter else None))

    for raw in paths:
        if raw == "-":
            if workdir is None:
                workdir = tempfile.mkdtemp(prefix="tokentrail-")
            found.append(spool_stdin(stdin or sys.stdin.buffer, workdir))
            continue
        p = Path(raw)
        if p.is_dir():
            files = list(_walk(p))
            if not files:
                bad.append(Unreadable(raw, "directory holds no log files"))
            for f in files:
                add(f)
        elif p.exists():
            if not p.is_file():
                bad.append(Unreadable(raw, "not a regular file"))
            else:
                add(p)
        elif any(ch in raw for ch in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                bad.append(Unreadable(raw, "no file matches this pattern"))
            for f in files:
                add(f)
        else:
            bad.append(Unreadable(raw, "no such file or directory"))
    return found, bad


def require_inputs(paths: Iterable[str]) -> None:
    if not list(paths):
        raise InputError("no input given: pass files, directories, globs, or - for stdin")
