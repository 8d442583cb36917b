"""`tokentrail report --csv DIR`: four RFC 4180 files, formulas neutralised, written atomically.

Golden files live in tests/fixtures/export/csv/; regenerate them with TOKENTRAIL_REGEN_GOLDEN=1
(then read the diff).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES

from tokentrail.case.schema import EVENT_COLUMN_NAMES
from tokentrail.cli import main
from tokentrail.export import CSV_FILES, csvdir
from tokentrail.results import FINDING_CSV_COLUMNS

EXPORT = FIXTURES / "export"
AWKWARD = EXPORT / "awkward.jsonl"
LOG = "logs/awk ward é.jsonl"
GOLDEN_DIR = EXPORT / "csv"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def case_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The awkward fixture ingested once (as `logs/...`, so paths in the output are stable)."""
    workdir = tmp_path_factory.mktemp("csvcase")
    (workdir / "logs").mkdir()
    shutil.copy(AWKWARD, workdir / LOG)
    db = workdir / "case.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        r = run("ingest", LOG, "--db", str(db), "-q")
    assert r.exit_code == 0, r.output
    return db


@pytest.fixture(scope="module")
def report(case_db: Path) -> Path:
    out = case_db.parent / "report"
    r = run("report", "--db", str(case_db), "--csv", str(out))
    assert r.exit_code == 0, r.output
    assert "findings.csv (4 rows)" in r.stderr and "events.csv (8 rows)" in r.stderr
    return out


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, strict=True))


@pytest.mark.parametrize("name", CSV_FILES)
def test_csv_files_match_the_golden_files(report, name):
    data = (report / name).read_bytes()
    golden = GOLDEN_DIR / name
    if os.environ.get("TOKENTRAIL_REGEN_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden.write_bytes(data)
    assert data == golden.read_bytes(), f"differs from csv/{name} (TOKENTRAIL_REGEN_GOLDEN=1)"


def test_report_writes_exactly_the_four_files_and_no_temporary_ones(report):
    assert sorted(p.name for p in report.iterdir()) == sorted(CSV_FILES)


def test_csv_is_rfc_4180_and_round_trips_awkward_values(report):
    for name in CSV_FILES:
        raw = (report / name).read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
        assert raw.endswith(b"\r\n")
        rows = read_csv(report / name)
        assert len({len(r) for r in rows}) == 1, f"{name}: ragged rows"
        for row in rows:
            for cell in row:
                assert not cell.startswith(FORMULA_START), f"{name}: formula cell {cell!r}"
    findings = read_csv(report / "findings.csv")
    assert tuple(findings[0]) == FINDING_CSV_COLUMNS and len(findings) == 5
    events = read_csv(report / "events.csv")
    header = events[0]
    assert [c for c in header if c != "file"] == list(EVENT_COLUMN_NAMES)
    by_line = {int(r[header.index("line")]): dict(zip(header, r, strict=True)) for r in events[1:]}
    assert sorted(by_line) == list(range(1, 9))
    first = by_line[1]
    assert first["file"] == LOG
    assert first["token_id"] == 'tok-"q",1-🔑-\u202eevil'  # quotes, comma, emoji, RTL override kept
    assert first["client_id"] == '\'=HYPERLINK("http://evil.example","x")'  # neutralised
    assert first["subject"] == "'+SUM(1,2)"
    assert first["audience"] == '["files-api","-api,\\"b\\""]'  # lists as JSON text
    assert first["scopes"] == '["read","@admin"]'
    assert first["user_agent"] == "" and first["error"] == ""  # nulls are empty cells
    assert by_line[2]["ts"] == "2026-11-02T09:00:05.500000Z" and by_line[2]["status"] == "200"
    assert by_line[2]["path"] == "/v1/files/\u05e9\u05dc\u05d5\u05dd"  # Hebrew, right to left
    third = by_line[3]
    assert third["request_id"] == "req,1\n2"  # a newline inside a quoted field
    assert '"note":"multi\\nline, \\"quoted\\"\\r\\nvalue"' in third["extra"]
    assert '"long":"' + "x" * 3000 + '"' in third["extra"] and "مرحبا بالعالم" in third["extra"]
    fourth = by_line[4]
    assert fourth["error"] == "'=1+2\tcell"
    assert fourth["user_agent"] == 'العربية,"x"\nline2/1.0'
    assert len(fourth["path"]) == 1 + 13 * 200
    assert by_line[6]["agent"] == "'-agent;rm -rf /" and by_line[6]["resource"] == "'@files"
    assert by_line[6]["raw_token_logged"] == "true"
    assert "awkward-fixture-token-not-a-secret" not in (report / "events.csv").read_text("utf-8")
    holders = read_csv(report / "holders.csv")
    assert ['ip:203.0.113.99/العربية,"x"\nline2', "network"] == holders[3][:2]
    tokens = read_csv(report / "tokens.csv")
    assert {r[0] for r in tokens[1:]} == {'tok-"q",1-🔑-\u202eevil', "t2 😀 ,'b'",
                                          "fp:lTbfOORedmis5GzRpxAAhjhQnYNVWv-hiJm6SoQfnnA"}


def test_report_replaces_existing_files_and_streams_events_in_batches(case_db, tmp_path, monkeypatch):
    out = tmp_path / "new" / "dir"  # created, parents too
    monkeypatch.setattr(csvdir, "EVENT_BATCH", 3)
    r = run("report", "--db", str(case_db), "--csv", str(out), "-q")
    assert r.exit_code == 0 and r.stderr == ""
    assert len(read_csv(out / "events.csv")) == 9
    (out / "findings.csv").write_text("stale\r\n", encoding="utf-8")
    assert run("report", "--db", str(case_db), "--csv", str(out), "-q").exit_code == 0
    assert read_csv(out / "findings.csv")[0][0] == "id"
    assert sorted(p.name for p in out.iterdir()) == sorted(CSV_FILES)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "findings.csv"
    target.write_text("old\r\n", encoding="utf-8")

    def rows():
        yield ("a",)
        raise OSError(28, "No space left on device")

    with pytest.raises(csvdir.InputError, match="No space left"):
        csvdir.write_atomic(target, ("x",), rows())
    assert target.read_bytes() == b"old\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["findings.csv"]


def test_write_csv_quotes_per_rfc_4180():
    buf = io.StringIO(newline="")
    n = csvdir.write_csv(buf, ("a", "b"), [("x,y", 'say "hi"'), ("line1\r\nline2", None), ("=1", 2)])
    assert n == 3
    assert buf.getvalue() == ('a,b\r\n"x,y","say ""hi"""\r\n"line1\r\nline2",\r\n\'=1,2\r\n')


def test_report_needs_an_output_a_case_and_a_directory(case_db, tmp_path):
    r = run("report", "--db", str(case_db))
    assert r.exit_code == 2 and "--csv DIR" in r.stderr
    r = run("report", "--db", str(tmp_path / "missing.duckdb"), "--csv", str(tmp_path / "o"))
    assert r.exit_code == 3 and "no such case" in r.stderr
    assert not (tmp_path / "missing.duckdb").exists() and not (tmp_path / "o").exists()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = run("report", "--db", str(case_db), "--csv", str(blocker))
    assert r.exit_code == 3 and "not a directory" in r.stderr
