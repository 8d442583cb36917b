"""Shared fixtures. Every test runs in its own temporary working directory, with
$TOKENTRAIL_DB pointing there, so no test can touch a real case or the repository."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tokentrail import Case

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKENTRAIL_DB", str(tmp_path / "case.duckdb"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def case() -> Iterator[Case]:
    c = Case()
    yield c
    c.close()


def fingerprint(raw: str) -> str:
    """The DPoP `ath` computation, written independently of the engine's SQL."""
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


def make_jwt(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "test-key-" + "x" * 32, algorithm="HS256")


def cli_ingest(db: str, *inputs: tuple[Path, str]) -> None:
    """`tokentrail ingest FILE --format FMT --db DB -q` for each (file, format), each succeeding."""
    from click.testing import CliRunner

    from tokentrail.cli import main

    runner = CliRunner()
    for path, fmt in inputs:
        r = runner.invoke(main, ["ingest", str(path), "--format", fmt, "--db", db, "-q"])
        assert r.exit_code == 0, r.output


def write_jsonl(path: Path, records: list[object]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def events_by_line(case: Case, path: object) -> dict[int, dict[str, object]]:
    """The events of one ingested file keyed by line, with `extra` decoded."""
    cols, rows = case.query(
        "select e.* from events e join sources s using (source_id) where s.path = ? "
        "order by e.line", [str(path)])
    out = {}
    for r in rows:
        e = dict(zip(cols, r, strict=True))
        e["extra"] = json.loads(e["extra"]) if e["extra"] else {}
        out[e["line"]] = e
    return out


def case_text(case: Case) -> str:
    """Everything stored from the logs, as text, for secret searches."""
    return "\n".join(str(case.con.execute(f"select * from {t}").fetchall())
                     for t in ("events", "rejects", "sources"))


def sniffed_format(path: Path) -> str | None:
    """The built-in format ingest would pick for a file, from its first bytes."""
    import gzip

    from tokentrail.sources import sniff as sniffing
    from tokentrail.sources.registry import builtin_mappings

    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    mappings = list(builtin_mappings())
    sniffed = sniffing.sniff_container(data[:sniffing.PREFIX_BYTES],
                                       sniffing.all_wrapper_keys(mappings),
                                       sniffing.all_nested_paths(mappings))
    chosen = sniffing.choose_format(sniffed.records, mappings)
    return chosen.name if chosen else None
