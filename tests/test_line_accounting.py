"""Every line of a JSON Lines file is accounted for, even when DuckDB's reader is not.

DuckDB 2.0.1's parallel CSV reader dropped 2 of 10,000,000 lines of a benchmark log without
an error (bench/README.md). Ingest therefore counts the lines it expects while hashing the
file and compares: on a difference it re-reads the file on one thread, and if lines are still
missing the file gets a reject saying so, so the run never looks clean.
"""

from __future__ import annotations

import json

import duckdb
from conftest import write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ingest_engine import envoy

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.sources import discover
from tokentrail.sources.readers import Reader

line_text = st.text(alphabet=st.sampled_from('ab{}":, '), max_size=12)
ending = st.sampled_from(["\n", "\r\n", "\r", ""])


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.tuples(line_text, ending), min_size=1, max_size=20),
       chunk=st.integers(1, 7))
def test_line_counter_agrees_with_the_csv_reader(tmp_path_factory, parts, chunk):
    data = "".join(text + end for text, end in parts).encode()
    path = tmp_path_factory.mktemp("lines") / "x.jsonl"
    path.write_bytes(data)
    counter = discover.LineCounter()
    for i in range(0, len(data), chunk):  # chunk edges between a CR and its LF
        counter.update(data[i:i + chunk])
    reader = Reader(str(path), "lines", parallel=False)
    con = duckdb.connect()
    (rows,) = con.execute(f"SELECT count(*) FROM ({reader.sql()})").fetchone()
    assert rows >= counter.lines  # never more lines expected than a faithful read returns
    if b"\r" not in data.replace(b"\r\n", b""):
        assert rows == counter.lines  # and exact for LF / CRLF files


def test_lines_the_reader_never_returned_are_reported_not_hidden(tmp_path, monkeypatch):
    log = write_jsonl(tmp_path / "gw.jsonl", [envoy(i) for i in range(1, 40)])
    # Pretend the file holds one line more than any reader returns, as when DuckDB drops one.
    real = discover.LineCounter.lines
    monkeypatch.setattr(discover.LineCounter, "lines", property(lambda self: real.fget(self) + 1))
    with Case() as case:
        report = ingest(case, [str(log)])
        assert report.events == 39  # every record still loaded (after the one-thread re-read)
        _, rej = case.query("SELECT line, reason FROM rejects")
    assert len(rej) == 1 and rej[0][0] is None
    assert "1 line(s) of the file were not returned" in rej[0][1]
    assert report.rejects == 1  # the summary does not look clean


def test_a_clean_file_has_no_accounting_reject(tmp_path):
    log = tmp_path / "gw.jsonl"
    log.write_bytes(b"\r\n".join(json.dumps(envoy(i)).encode() for i in range(1, 30)))
    with Case() as case:
        report = ingest(case, [str(log)])
    assert (report.events, report.rejects) == (29, 0)


def _record(i: int) -> dict[str, object]:
    return envoy(i, start_time=f"2026-11-02T09:{i // 60 % 60:02d}:{i % 60:02d}Z",
                 request_id=f"req-{i}", downstream_remote_address=f"10.0.{i // 200}.{i % 200}:443")


def _lines_with_line_ends_on(boundary: int, count: int) -> list[str]:
    """Envoy records, padded so that some LFs fall exactly on a multiple of `boundary`: the
    next buffer of the reader then begins with the previous line's end."""
    out: list[str] = []
    offset, target = 0, boundary
    for i in range(1, count + 1):
        text = json.dumps({**_record(i), "pad": ""})
        base = len(text)
        if target - offset - base < base + 1:  # the line after this one would cross
            if target - offset >= base:
                text = text[:-3] + '"' + "x" * (target - offset - base) + '"}'
                assert offset + len(text) == target  # this line's LF sits on the boundary
            target += boundary
        out.append(text)
        offset += len(text) + 1
    return out


def test_a_buffer_that_begins_with_a_line_end_loses_no_line(tmp_path, monkeypatch):
    """DuckDB 2.0.1's parallel reader in CRLF mode drops the line after a buffer that begins
    with the previous line's LF (2 of the 10 M benchmark lines; here 128 KiB buffers). A file
    without CR is read with LF as the line end, so every line arrives in the first, parallel
    pass: no single-threaded second read, line numbers exact."""
    from tokentrail.sources import readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1 << 16)  # buffers of 128 KiB
    texts = _lines_with_line_ends_on(1 << 17, 2500)
    log = tmp_path / "gw.jsonl"
    log.write_text("".join(t + "\n" for t in texts))
    assert log.stat().st_size > 4 * (1 << 17)
    passes: list[bool] = []
    real = Reader.lines_sql

    def spy(self: Reader) -> str:
        passes.append(self.parallel)
        return real(self)

    monkeypatch.setattr(Reader, "lines_sql", spy)
    with Case() as case:
        report = ingest(case, [str(log)])
        _, rows = case.query("SELECT line, request_id FROM events ORDER BY line")
    assert (report.events, report.rejects) == (2500, 0)
    assert [r[0] for r in rows] == list(range(1, 2501))
    assert [r[1] for r in rows] == [f"req-{i}" for i in range(1, 2501)]
    assert passes and all(passes)  # never re-read on one thread
