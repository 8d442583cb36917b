"""A JSON Lines file too large for the order-keeping stage is loaded straight into `events`
(issue 12); what it stores must be exactly what the staged load stores: every event with its
line, every reject with its line and reason, blank lines counted but not stored, no raw token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from tokentrail import Case
from tokentrail.case.ingest import ingest

SAMPLE = REPO / "sample-logs" / "envoy-acme-gateway-access.jsonl"
RAW = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkaXJlY3QtbG9hZCJ9.c2lnbmF0dXJl"


def _messy_file(tmp_path: Path) -> Path:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    good = json.loads(lines[0])
    leaked = dict(good, authorization=f"Bearer {RAW}", request_id="leak-1")
    out = lines[:10] + ["", "not json", "[1, 2]", json.dumps({**good, "start_time": "soon"}),
                        "   ", json.dumps(leaked)] + lines[10:] + [""]
    path = tmp_path / "gateway.jsonl"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _load(path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool) -> tuple[list, list, list]:
    if direct:
        monkeypatch.setenv("TOKENTRAIL_DIRECT_LOAD_BYTES", "0")
    else:
        monkeypatch.setenv("TOKENTRAIL_DIRECT_LOAD_BYTES", str(1 << 40))
    with Case() as case:
        report = ingest(case, [str(path)])
        events = case.con.execute(
            "SELECT * EXCLUDE (source_id, event_id) FROM events ORDER BY line").fetchall()
        rejects = case.con.execute(
            "SELECT line, reason, excerpt FROM rejects ORDER BY line").fetchall()
        sources = case.con.execute("SELECT events, rejects, format FROM sources").fetchall()
    assert report.events == len(events)
    return events, rejects, sources


def test_direct_load_stores_what_the_staged_load_stores(tmp_path, monkeypatch):
    path = _messy_file(tmp_path)
    staged = _load(path, monkeypatch, direct=False)
    direct = _load(path, monkeypatch, direct=True)
    assert direct == staged
    events, rejects, _ = direct
    assert [r[0] for r in rejects] == [12, 13, 14]  # file lines; the blank ones are not rejects
    assert {r[1] for r in rejects} >= {"invalid JSON", "not a JSON object", "no usable timestamp"}
    assert len(events) == len(SAMPLE.read_text().splitlines()) + 1
    assert not any(RAW in str(v) for row in events + rejects for v in row)


def test_a_line_the_csv_reader_refuses_falls_back_to_the_stage(tmp_path, monkeypatch):
    path = _messy_file(tmp_path)
    data = path.read_bytes().replace(b'"not json"', b'"not json"').replace(b"not json", b"not \xff json")
    path.write_bytes(data)
    staged = _load(path, monkeypatch, direct=False)
    direct = _load(path, monkeypatch, direct=True)
    assert direct == staged
    assert any(r[1] == "invalid UTF-8" for r in direct[1])


def test_a_failure_after_the_direct_insert_rolls_the_file_back(tmp_path, monkeypatch):
    import tokentrail.case.direct_load as mod

    monkeypatch.setenv("TOKENTRAIL_DIRECT_LOAD_BYTES", "0")
    good = tmp_path / "a.jsonl"
    good.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    bad = _messy_file(tmp_path)
    real, calls = mod.move_rejects_sql, []

    def boom(source_id: str) -> str:
        calls.append(source_id)  # the second file fails after its events went in
        return real(source_id) if len(calls) == 1 else "INSERT INTO rejects SELECT error('simulated crash')"

    monkeypatch.setattr(mod, "move_rejects_sql", boom)
    with Case() as case:
        report = ingest(case, [str(good), str(bad)])
        status = {Path(f.name).name: f.status for f in report.files}
        count = case.con.execute("SELECT count(*) FROM events").fetchone()[0]
        marked = case.con.execute("SELECT count(*) FROM events WHERE format = ?",
                                  [mod.REJECT_MARK]).fetchone()[0]
    assert status == {"a.jsonl": "ingested", "gateway.jsonl": "failed"}
    assert count == len(SAMPLE.read_text().splitlines()) and marked == 0


def _memory_limit(case: Case) -> str:
    return case.con.execute("SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'"
                            ).fetchone()[0]


def test_a_direct_load_runs_under_its_own_memory_cap_and_gives_the_case_its_limit_back(
        tmp_path, monkeypatch):
    # Peak memory must not follow the file's size (issue 12): the direct insert runs under
    # DIRECT_LOAD_MEMORY, and the case's limit is back for the next file, and for a scan.
    import tokentrail.case.direct_load as mod

    monkeypatch.setenv("TOKENTRAIL_DIRECT_LOAD_BYTES", "0")
    monkeypatch.setattr(mod, "DIRECT_LOAD_MEMORY", 300 << 20)
    real, seen = mod.direct_insert_sql, []
    cases: list[Case] = []

    def spy(pipeline: str) -> str:
        seen.append(_memory_limit(cases[0]))
        return real(pipeline)

    monkeypatch.setattr(mod, "direct_insert_sql", spy)
    good = tmp_path / "a.jsonl"
    good.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    other = tmp_path / "b.jsonl"
    other.write_text(SAMPLE.read_text(encoding="utf-8").replace("acme", "acne"), encoding="utf-8")
    with Case(memory_limit="2GB") as case:
        cases.append(case)
        before = _memory_limit(case)
        report = ingest(case, [str(good), str(other)])
        after = _memory_limit(case)
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    assert seen == ["300.0 MiB", "300.0 MiB"]
    assert before == after == "1.8 GiB"


def test_a_failed_direct_load_gives_the_case_its_memory_limit_back(tmp_path, monkeypatch):
    import tokentrail.case.direct_load as mod

    monkeypatch.setenv("TOKENTRAIL_DIRECT_LOAD_BYTES", "0")
    monkeypatch.setattr(mod, "DIRECT_LOAD_MEMORY", 300 << 20)
    monkeypatch.setattr(mod, "move_rejects_sql",
                        lambda sid: "INSERT INTO rejects SELECT error('simulated crash')")
    with Case(memory_limit="2GB") as case:
        report = ingest(case, [str(_messy_file(tmp_path))])
        after = _memory_limit(case)
    assert report.files[0].status == "failed"
    assert after == "1.8 GiB"
