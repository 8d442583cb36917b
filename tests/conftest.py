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


def write_jsonl(path: Path, records: list[object]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path
