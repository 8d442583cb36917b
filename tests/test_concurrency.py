"""Two tokentrail processes on one case: the second waits for the first, nothing is lost.

DuckDB lets one process write a database file at a time. A responder who starts a second
ingest (or a scan) while one is running must get either a wait or a clear refusal, never a
traceback or a half-written case. Both are exercised with real subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl
from test_ingest_engine import envoy

from tokentrail import Case
from tokentrail.errors import CaseError


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tokentrail", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_two_ingests_at_once_both_land_completely(tmp_path: Path) -> None:
    db = tmp_path / "case.duckdb"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, [envoy(i % 60, path=f"/a/{i}") for i in range(3000)])
    write_jsonl(b, [envoy(i % 60, path=f"/b/{i}") for i in range(2000)])
    env = _env(TOKENTRAIL_LOCK_WAIT="120")
    first = _cli("ingest", str(a), "--db", str(db), "-q", env=env)
    second = _cli("ingest", str(b), "--db", str(db), "-q", env=env)
    outs = [first.communicate(timeout=180), second.communicate(timeout=180)]
    assert (first.returncode, second.returncode) == (0, 0), outs
    assert "Traceback" not in "".join(o[1] for o in outs)
    with Case(db, read_only=True) as case:
        _, rows = case.query("SELECT count(*), count(DISTINCT source_id) FROM events")
    assert rows == [(5000, 2)]


def test_a_held_case_is_waited_for_then_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    log = tmp_path / "gw.jsonl"
    write_jsonl(log, [envoy(1)])
    Case(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(CaseError, match="open in another process"):
            Case(db)  # the library does not wait unless asked to
        refused = _cli("ingest", str(log), "--db", str(db), "-q",
                       env=_env(TOKENTRAIL_LOCK_WAIT="1"))
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 3
        assert "waiting up to 1 s" in err
        assert "open in another process for 1 s" in err and "Traceback" not in err
        # a longer wait outlasts the holder and then ingests
        waiting = _cli("ingest", str(log), "--db", str(db), "-q",
                       env=_env(TOKENTRAIL_LOCK_WAIT="60"))
        holder.communicate("", timeout=30)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
    finally:
        if holder.poll() is None:
            holder.communicate("")
    with Case(db, read_only=True) as case:
        assert case.query("SELECT count(*) FROM events")[1] == [(1,)]
