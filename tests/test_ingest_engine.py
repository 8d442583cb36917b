"""The ingest engine: containers, rejects with line numbers, idempotency, transactions."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from tokentrail import Case
from tokentrail.case.ingest import Ingestor, ingest
from tokentrail.errors import InputError, UsageError


def envoy(i: int, **more: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "start_time": f"2026-11-02T09:00:{i:02d}Z", "method": "GET", "path": f"/v1/{i}",
        "response_code": 200, "downstream_remote_address": f"10.0.0.{i}:443",
        "jwt_payload": {"jti": f"t-{i}", "azp": "app"},
    }
    rec.update(more)
    return rec


def test_every_nonblank_line_is_one_event_or_one_reject_with_its_line(case, tmp_path):
    good = json.dumps(envoy(1))
    raw = b"\n".join([
        good.encode(),                                   # 1 good
        b"",                                             # 2 blank: not a record
        b'{"start_time": "2026-11-02T09:00:03Z", oops',  # 3 invalid JSON
        b"[1, 2, 3]",                                    # 4 not an object
        json.dumps(envoy(5, start_time="yesterday")).encode(),  # 5 bad timestamp
        b'{"start_time":"2026-11-02T09:00:06Z","response_code":200,"x":"\xff\xfe"}',  # 6 bad UTF-8
        json.dumps(envoy(7)).encode() + b"\r",           # 7 CRLF line: fine
        b'{"start_time":"2026-11-02T09:00:08Z","response_code":200,"x":"a\x00b"}',  # 8 NUL byte
        b'{"start_time":"2026-11-02T09:00:09Z","response_code":200,"x":"tab\there"}',  # 9 raw control
        json.dumps(envoy(10)).encode(),                  # 10 good, after rejects
    ]) + b"\n"
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(raw)
    report = ingest(case, [str(path)], format_name="envoy")
    _, rows = case.query("select line from events order by line")
    assert [r[0] for r in rows] == [1, 7, 10]
    _, rej = case.query("select line, reason from rejects order by line")
    assert rej == [(3, "invalid JSON"), (4, "not a JSON object"), (5, "no usable timestamp"),
                   (6, "invalid UTF-8"), (8, "invalid JSON"), (9, "invalid JSON")]
    assert report.events == 3 and report.rejects == 6
    # the event that followed the rejected lines still carries its own data
    _, tok = case.query("select token_key from events where line = 10")
    assert tok == [("t-10",)]


def test_bom_at_start_of_file_is_ignored(case, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(envoy(1)).encode() + b"\n")
    report = ingest(case, [str(path)])
    assert report.files[0].format == "envoy" and report.events == 1


def test_json_array_wrapper_and_gzip_containers(case, tmp_path):
    recs = [{"ts": "2026-11-02T09:00:00Z", "kind": "use", "token_id": f"k{i}", "src_ip": "10.1.1.1"}
            for i in range(3)]
    (tmp_path / "arr.json").write_text(json.dumps(recs, indent=2))
    (tmp_path / "wrap.json").write_text(json.dumps({"Records": recs}))
    with gzip.open(tmp_path / "lines.jsonl.gz", "wt") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    report = ingest(case, [str(tmp_path)])
    by_name = {Path(f.name).name: f for f in report.files}
    assert by_name["arr.json"].container == "array"
    assert by_name["wrap.json"].container == "wrapper"
    assert by_name["lines.jsonl.gz"].container == "lines"
    assert all(f.events == 3 and f.format == "tokentrail" for f in report.files)


def test_truncated_json_array_keeps_complete_records_and_rejects_the_tail(case, tmp_path):
    recs = [{"ts": "2026-11-02T09:00:00Z", "kind": "use", "token_id": f"k{i}"} for i in range(4)]
    text = json.dumps(recs, indent=1)
    (tmp_path / "cut.json").write_text(text[: text.rindex("k3") + 1])
    report = ingest(case, [str(tmp_path / "cut.json")], format_name="tokentrail")
    assert report.events == 3
    _, rej = case.query("select reason from rejects")
    assert rej and "truncated" in rej[0][0]


def test_reingest_is_noop_and_force_replaces_not_duplicates(tmp_path):
    log = write_jsonl(tmp_path / "g.jsonl", [envoy(1), envoy(2)])
    db = tmp_path / "c.duckdb"
    with Case(db) as case:
        assert ingest(case, [str(log)]).files[0].status == "ingested"
    with Case(db) as case:
        again = ingest(case, [str(log)])
        assert again.files[0].status == "skipped"
        forced = ingest(case, [str(log)], force=True)
        assert forced.files[0].status == "ingested"
        assert case.query("select count(*) from events")[1] == [(2,)]
        assert case.query("select count(*) from sources")[1] == [(1,)]


def test_strict_stops_and_rolls_back_the_file(case, tmp_path):
    log = write_jsonl(tmp_path / "g.jsonl", [envoy(1), "not json", envoy(3)])
    with pytest.raises(InputError) as err:
        ingest(case, [str(log)], strict=True)
    assert err.value.line == 2 and "g.jsonl" in str(err.value)
    assert case.query("select count(*) from events")[1] == [(0,)]


def test_failed_statement_leaves_case_unchanged(case, tmp_path, monkeypatch):
    log = write_jsonl(tmp_path / "g.jsonl", [envoy(1), envoy(2)])
    import tokentrail.case.ingest as mod

    real = mod.insert_rejects_sql
    calls = []

    def boom(*a: object, **k: object) -> str:
        calls.append(a)  # the second file's last statement fails after its events went in
        if len(calls) == 1:
            return real(*a, **k)
        return "INSERT INTO rejects SELECT error('simulated crash')"
    monkeypatch.setattr(mod, "insert_rejects_sql", boom)
    bad = write_jsonl(tmp_path / "h.jsonl", [envoy(1), "garbage"])
    report = ingest(case, [str(log), str(bad)])
    status = {Path(f.name).name: f.status for f in report.files}
    assert status == {"g.jsonl": "ingested", "h.jsonl": "failed"}
    _, rows = case.query("select count(*) from events")
    assert rows == [(2,)]  # h.jsonl's good line was rolled back with its file


def test_empty_unreadable_and_unknown_inputs_are_reported(case, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "odd.jsonl").write_text('{"hello": "world"}\n')
    report = ingest(case, [str(tmp_path / "empty.jsonl"), str(tmp_path / "odd.jsonl"),
                           str(tmp_path / "missing.jsonl")])
    reasons = {Path(f.name).name: (f.status, f.message) for f in report.files}
    assert reasons["empty.jsonl"] == ("empty", "file is empty")
    assert reasons["odd.jsonl"][0] == "failed" and "--format" in reasons["odd.jsonl"][1]
    assert reasons["missing.jsonl"] == ("failed", "no such file or directory")
    assert len(report.problems) == 3


def test_only_rejects_means_no_usable_record(case, tmp_path):
    log = write_jsonl(tmp_path / "g.jsonl", [envoy(1, start_time="never"), "junk"])
    report = ingest(case, [str(log)], format_name="envoy")
    assert report.files[0].status == "empty" and report.rejects == 2


def test_stdin_is_spooled_hashed_and_idempotent(tmp_path):
    data = (json.dumps(envoy(1)) + "\n").encode()
    with Case(tmp_path / "c.duckdb") as case:
        first = Ingestor(case).run(["-"], stdin=io.BytesIO(data))
        second = Ingestor(case).run(["-"], stdin=io.BytesIO(data))
    assert first.files[0].name == "<stdin>" and first.events == 1
    assert second.files[0].status == "skipped"


def test_glob_and_directory_expansion(case, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    write_jsonl(tmp_path / "d" / "a.jsonl", [envoy(1)])
    write_jsonl(tmp_path / "d" / "sub" / "b.jsonl", [envoy(2)])
    (tmp_path / "d" / "notes.md").write_text("# not a log")
    assert ingest(case, [str(tmp_path / "d")]).events == 2
    c2 = Case()
    assert ingest(c2, [str(tmp_path / "d" / "**" / "*.jsonl")]).events == 2


def test_format_and_mapping_together_is_a_usage_error(case):
    with pytest.raises(UsageError):
        Ingestor(case, format_name="envoy", mapping_file="x.toml")
    with pytest.raises(UsageError):
        Ingestor(case, format_name="no-such-format")


def test_case_schema_is_versioned_and_foreign_databases_are_refused(tmp_path):
    import duckdb

    from tokentrail.case.store import SCHEMA_VERSION
    from tokentrail.errors import CaseError

    with Case(tmp_path / "c.duckdb") as case:
        assert case.meta("schema_version") == str(SCHEMA_VERSION)
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("create table t(x int)")
    other.close()
    with pytest.raises(CaseError, match="not a tokentrail case"):
        Case(tmp_path / "other.duckdb")


def test_truncated_gzip_keeps_the_lines_before_the_damage(case, tmp_path):
    body = "".join(json.dumps(envoy(i % 60, request_id=f"r{i}")) + "\n" for i in range(2000))
    blob = gzip.compress(body.encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    report = ingest(case, [str(path)], format_name="envoy")
    f = report.files[0]
    assert f.status == "ingested" and 0 < f.events < 2000
    _, rej = case.query("select reason from rejects")
    assert any("damaged" in r[0] for r in rej)
    # nothing partial: every stored event is a whole record of the original
    _, rows = case.query("select count(*) from events where request_id is null")
    assert rows == [(0,)]


def test_tokentrailignore_skips_listed_files_in_a_directory_walk(case, tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    write_jsonl(d / "gw.jsonl", [envoy(1)])
    (d / "EXPECTED.json").write_text('{"pairs": []}')
    (d / ".tokentrailignore").write_text("# ground truth\nEXPECTED.json\n")
    report = ingest(case, [str(d)])
    assert [Path(f.name).name for f in report.files] == ["gw.jsonl"] and not report.problems


def test_a_fifo_in_a_log_folder_is_skipped_and_a_broken_link_reported(case, tmp_path):
    # Opening a FIFO blocks until something writes to it: a directory walk that opened one
    # hung the ingest (and a scheduled scan) for good.
    import os
    import threading

    d = tmp_path / "logs"
    d.mkdir()
    write_jsonl(d / "gw.jsonl", [envoy(1)])
    os.mkfifo(d / "syslog.pipe")
    (d / "old.jsonl").symlink_to(tmp_path / "rotated-away.jsonl")
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(ingest(case, [str(d)])), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # unblock the reader so the test run can end, then fail
        with open(d / "syslog.pipe", "w"):
            pass
        worker.join(10)
        pytest.fail("ingest blocked on the FIFO")
    report = result[0]
    assert {Path(f.name).name: f.status for f in report.files} == {
        "gw.jsonl": "ingested", "old.jsonl": "failed"}


def test_kill_9_mid_ingest_leaves_a_case_that_opens_and_the_file_ingests_next_time(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "big.jsonl"
    line = json.dumps(envoy(1, path="/v1/" + "x" * 400))
    big.write_text((line + "\n") * 400_000)
    small = write_jsonl(tmp_path / "small.jsonl", [envoy(2)])
    db = tmp_path / "c.duckdb"
    with Case(db) as case:
        ingest(case, [str(small)])
    proc = subprocess.Popen([sys.executable, "-m", "tokentrail", "ingest", str(big), "--db", str(db),
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Case(db) as case:
        rows = case.query("SELECT path, events FROM sources ORDER BY path")[1]
        if killed:  # the interrupted file left nothing behind; the earlier file is intact
            assert [Path(r[0]).name for r in rows] == ["small.jsonl"]
        report = ingest(case, [str(big)])
        assert report.files[0].status in ("ingested", "skipped")
        assert case.query("SELECT count(*) FROM events")[1] == [(400_001,)]


def test_gzip_bomb_is_refused_with_a_clear_message(case, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress(json.dumps(envoy(1)).encode() + b"\n" + b" " * 20_000_000, 9))
    report = ingest(case, [str(bomb)])
    f = report.files[0]
    assert f.status == "failed" and "decompression bomb" in f.message
    assert case.query("SELECT count(*) FROM events")[1] == [(0,)]
    monkeypatch.setenv("TOKENTRAIL_MAX_GZIP_RATIO", "100000")
    assert ingest(case, [str(bomb)]).events == 1  # an explicit opt-in reads it


def test_several_json_arrays_in_one_file_are_all_read(case, tmp_path):
    # HTTP log batches appended to one file, one JSON array per line (Kong http-log,
    # webhook receivers): every element is a record, nothing after the first array is lost.
    path = tmp_path / "batches.json"
    path.write_text(json.dumps([envoy(1), envoy(2)]) + "\n" + json.dumps([envoy(3)]) + "\n"
                    + json.dumps([envoy(4), envoy(5)]) + "\n")
    report = ingest(case, [str(path)], format_name="envoy")
    assert (report.events, report.rejects) == (5, 0)
    bad = tmp_path / "trailing.json"
    bad.write_text(json.dumps([envoy(1), envoy(2)]) + "\nnot json at all\n")
    report = ingest(case, [str(bad)], format_name="envoy")
    assert report.events == 2
    _, rej = case.query("select reason from rejects where source_id = ?",
                        [report.files[0].source_id])
    assert rej == [("unreadable content after record 2; the rest is lost",)]


def test_a_small_file_loads_without_the_cse_optimizer_and_the_session_keeps_its_own(
        tmp_path, monkeypatch):
    # Planning is most of a small file's cost; the optimizer goes off for its load only. A
    # notebook's own optimizer settings, and a scan after the ingest, are left as they were.
    import tokentrail.case.ingest as mod

    seen: list[str] = []
    real = mod.stage_sql
    cases: list[Case] = []

    def spy(pipeline: str) -> str:
        seen.append(cases[0].con.execute("SELECT value FROM duckdb_settings() "
                                         "WHERE name = 'disabled_optimizers'").fetchone()[0])
        return real(pipeline)

    monkeypatch.setattr(mod, "stage_sql", spy)
    log = write_jsonl(tmp_path / "gw.jsonl", [envoy(1), envoy(2)])
    failing = tmp_path / "broken.json"
    failing.write_text('{"Records": [')
    with Case() as case:
        cases.append(case)
        case.con.execute("SET disabled_optimizers = 'join_order'")
        report = ingest(case, [str(log), str(failing)])
        after = case.con.execute("SELECT value FROM duckdb_settings() "
                                 "WHERE name = 'disabled_optimizers'").fetchone()[0]
    assert report.files[0].status == "ingested"
    assert seen and all(v == "join_order,common_subexpressions" for v in seen)
    assert after == "join_order"
