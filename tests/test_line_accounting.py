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
