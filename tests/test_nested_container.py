"""The nested container ([read] nested): envelopes like OTLP/JSON, read as one record per
innermost element, with every outer element alongside; documents one per line or whole."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import FIXTURES

from tokentrail import Case
from tokentrail.case.ingest import ingest, validate_mapping
from tokentrail.errors import MappingError
from tokentrail.sources.mapping import load_mapping
from tokentrail.sources.registry import builtin_mappings
from tokentrail.sources.sniff import (
    KNOWN_WRAPPERS,
    all_nested_paths,
    choose_format,
    read_prefix,
    sniff_container,
)

# A user mapping for an invented envelope, three levels deep: regions[].hosts[].calls[].
MAPPING = """
name = "acme-calls"
[read]
nested = ["regions.hosts.calls"]
[sniff]
required = ["calls.at"]
[record]
_document = "BIGINT"
regions = { name = "VARCHAR", hosts = "JSON" }
hosts = { name = "VARCHAR", calls = "JSON" }
calls = { at = "VARCHAR", token = "VARCHAR", who = "VARCHAR" }
[columns]
ts = "tt_ts(r.calls.at)"
kind = "'use'"
token_id = "r.calls.token"
src_ip = "r.calls.who"
host = "r.hosts.name"
resource = "r.regions.name"
[extra]
document = "r._document"
region_has_hosts = "r.regions.hosts IS NOT NULL"
host_has_calls = "r.hosts.calls IS NOT NULL"
"""


def call(i: int) -> dict[str, object]:
    return {"at": f"2026-11-02T09:00:{i:02d}Z", "token": f"t{i}", "who": f"10.0.0.{i}"}


def doc(*hosts: tuple[str, list[int]], region: str = "eu") -> dict[str, object]:
    return {"regions": [{"name": region, "hosts": [{"name": h, "calls": [call(i) for i in calls]}
                                                  for h, calls in hosts]}]}


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "calls.toml"
    path.write_text(MAPPING)
    return path


def rows(case: Case, path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    _, events = case.query(
        "select e.line, e.token_id, e.host, e.resource, e.extra->>'document', "
        "e.extra->>'region_has_hosts', e.extra->>'host_has_calls' "
        "from events e join sources s using (source_id) where s.path = ? order by e.line",
        [str(path)])
    _, rejects = case.query(
        "select r.line, r.reason from rejects r join sources s using (source_id) "
        "where s.path = ? order by r.line", [str(path)])
    return events, rejects


LINES = [
    json.dumps(doc(("a", [1, 2]), ("b", [3]))),    # 1: three records
    "",                                             # 2: blank, not a record
    '{"regions": [{"name": "eu", "hosts": [ oops',  # 3: broken document: one reject
    "[1, 2]",                                       # 4: not an object
    '{"hello": "world"}',                           # 5: an object without regions
    json.dumps(doc(("c", []))),                     # 6: an empty envelope: nothing
    json.dumps(doc(("d", [4, 5]), region="us")),    # 7: two records
]


def test_json_lines_of_documents_one_record_per_innermost_element(case, tmp_path, mapping_file):
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    report = ingest(case, [str(path)], mapping_file=str(mapping_file))
    assert report.files[0].container == "nested"
    events, rejects = rows(case, path)
    # line = the record's ordinal; a document rejected whole takes one number
    assert [(e[0], e[1], e[2], e[3], e[4]) for e in events] == [
        (1, "t1", "a", "eu", "1"), (2, "t2", "a", "eu", "1"), (3, "t3", "b", "eu", "1"),
        (7, "t4", "d", "us", "7"), (8, "t5", "d", "us", "7")]
    # each outer element travels without its child array
    assert {(e[5], e[6]) for e in events} == {("false", "false")}
    # a document that cannot be read is one reject with its line in the file
    assert rejects == [(3, "invalid JSON"), (4, "not a JSON object"),
                       (5, "JSON object without regions (not a regions document)")]
    assert report.events == 5 and report.rejects == 3


def test_gzip_and_whole_pretty_printed_documents(case, tmp_path, mapping_file):
    gz = tmp_path / "calls.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(LINES) + "\n")
    pretty = tmp_path / "calls.json"
    pretty.write_text(json.dumps(doc(("a", [1, 2])), indent=2) + "\n"
                      + json.dumps(doc(("b", [3]), region="us"), indent=2) + "\n")
    pretty_gz = tmp_path / "pretty.json.gz"
    with gzip.open(pretty_gz, "wt") as fh:
        fh.write(json.dumps(doc(("a", [1, 2])), indent=2))
    ingest(case, [str(gz), str(pretty), str(pretty_gz)], mapping_file=str(mapping_file))
    events, rejects = rows(case, gz)
    assert [e[1] for e in events] == ["t1", "t2", "t3", "t4", "t5"] and len(rejects) == 3
    events, rejects = rows(case, pretty)
    # documents of a file are numbered in order
    assert [(e[0], e[1], e[4]) for e in events] == [(1, "t1", "1"), (2, "t2", "1"), (3, "t3", "2")]
    assert rejects == []
    events, _ = rows(case, pretty_gz)
    assert [e[1] for e in events] == ["t1", "t2"]


def test_truncated_document_keeps_the_complete_ones(case, tmp_path, mapping_file):
    text = json.dumps(doc(("a", [1])), indent=2) + "\n" + json.dumps(doc(("b", [2, 3])), indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.rindex("t3")])
    report = ingest(case, [str(path)], mapping_file=str(mapping_file))
    events, rejects = rows(case, path)
    assert [e[1] for e in events] == ["t1"]
    assert len(rejects) == 1 and "document 2 is truncated or malformed" in str(rejects[0][1])
    assert report.files[0].status == "ingested"


def test_unreadable_line_keeps_the_lines_after_it_numbered(case, tmp_path, mapping_file):
    body = ("\n".join(LINES) + "\n").encode().replace(b'"world"', b'"w\xff\xfe"')
    path = tmp_path / "bad-utf8.jsonl"
    path.write_bytes(body)
    ingest(case, [str(path)], mapping_file=str(mapping_file))
    events, rejects = rows(case, path)
    assert rejects == [(3, "invalid JSON"), (4, "not a JSON object"), (5, "invalid UTF-8")]
    assert [(e[1], e[4]) for e in events][-2:] == [("t4", "7"), ("t5", "7")]


def test_two_paths_of_different_depth_in_one_document(case, tmp_path):
    mapping = tmp_path / "two.toml"
    mapping.write_text("""
name = "two"
[read]
nested = ["batches.items", "groups.members.items"]
[record]
batches = { id = "VARCHAR" }
groups = { id = "VARCHAR" }
members = { id = "VARCHAR" }
items = { at = "VARCHAR", n = "VARCHAR" }
[columns]
ts = "tt_ts(r.items.at)"
token_id = "r.items.n"
[extra]
outer = "coalesce(r.batches.id, r.groups.id || '/' || r.members.id)"
""")
    at = "2026-11-02T09:00:00Z"
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps({
        "batches": [{"id": "b1", "items": [{"at": at, "n": "1"}, {"at": at, "n": "2"}]}],
        "groups": [{"id": "g1", "members": [{"id": "m1", "items": [{"at": at, "n": "3"}]}]}],
    }) + "\n")
    ingest(case, [str(path)], mapping_file=str(mapping))
    _, got = case.query("select line, token_id, extra->>'outer' from events order by line")
    assert got == [(1, "1", "b1"), (2, "2", "b1"), (3, "3", "g1/m1")]


def test_sniffing_finds_nested_documents_and_leaves_other_containers_alone(tmp_path):
    nested = all_nested_paths(list(builtin_mappings()))
    assert ("resourceSpans", "scopeSpans", "spans") in nested
    pretty = tmp_path / "p.json"
    pretty.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]},
                                 indent=2))
    got = sniff_container(pretty.read_bytes(), KNOWN_WRAPPERS, nested)
    assert (got.container, got.nested_mode) == ("nested", "document")
    assert got.records == [{"resourceSpans": {}, "scopeSpans": {}, "spans": {"name": "x"}}]
    lines = sniff_container(b'{"resourceLogs": []}\n', KNOWN_WRAPPERS, nested)
    assert (lines.container, lines.nested_mode) == ("nested", "lines")
    # a Records wrapper, an array and JSON Lines are what they were
    assert sniff_container(b'{"Records": [{"a": 1}]}', KNOWN_WRAPPERS, nested).container == "wrapper"
    assert sniff_container(b'[{"a": 1}]', KNOWN_WRAPPERS, nested).container == "array"
    assert sniff_container(b'{"a": 1}\n', KNOWN_WRAPPERS, nested).container == "lines"


def test_no_existing_fixture_is_read_as_nested():
    from tokentrail.sources.discover import expand

    mappings = list(builtin_mappings())
    files, _ = expand([str(p) for p in sorted(FIXTURES.iterdir())
                       if p.is_dir() and p.name not in ("otel", "policy")])
    assert len(files) >= 10
    for src in files:
        sniffed = sniff_container(read_prefix(src), KNOWN_WRAPPERS, all_nested_paths(mappings))
        assert sniffed.container != "nested", src.name
        chosen = choose_format(sniffed.records, mappings)
        assert chosen is None or chosen.name != "otel", src.name


@pytest.mark.parametrize(("read", "key", "message"), [
    ('nested = ["spans"]', "read.nested[0]", "has one level"),
    ('nested = ["a..b"]', "read.nested[0]", "must be a non-empty JSON key"),
    ('nested = ["a.b c"]', "read.nested[0]", "must be a non-empty JSON key"),
    ('nested = ["a.b.a"]', "read.nested[0]", "repeats a level"),
    ('nested = ["a._document"]', "read.nested[0]", "reserved"),
    ('nested = ["a.b", "a.b"]', "read.nested[1]", "listed twice"),
    ('nested = ["Records.b"]\nwrappers = ["Records"]', "read.nested[0]", "also a wrapper key"),
    ("nested = 3", "read.nested", "string or a list of strings"),
    ('nesting = ["a.b"]', "read", "[read] accepts"),
])
def test_nested_mistakes_name_file_and_key(tmp_path, read, key, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "x"\n[read]\n{read}\n[record]\na = "VARCHAR"\n[columns]\nts = "r.a"\n')
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.key == key and message in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(("let", "key", "message"), [
    ('"l-1" = "1"', 'let.l-1', "identifier"),
    ("x = 1", "let.x", "SQL expression string"),
    ('x = "r.nosuch"', "let.x", "does not bind"),
])
def test_let_mistakes_name_their_key(tmp_path, case, let, key, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "x"\n[let]\n{let}\n[record]\na = "VARCHAR"\n[columns]\nts = "r.a"\n')
    with pytest.raises(MappingError) as err:
        validate_mapping(case, load_mapping(path))
    assert err.value.key == key and message in str(err.value)


def test_let_values_are_computed_once_and_used_as_l(case, tmp_path):
    path = tmp_path / "let.toml"
    path.write_text("""
name = "letdemo"
[let]
who = "upper(r.who)"
[record]
at = "VARCHAR"
who = "VARCHAR"
[columns]
ts = "tt_ts(r.at)"
subject = "l.who"
[extra]
again = "l.who || '!'"
""")
    log = tmp_path / "l.jsonl"
    log.write_text('{"at": "2026-11-02T09:00:00Z", "who": "alice"}\n')
    ingest(case, [str(log)], mapping_file=str(path))
    assert case.query("select subject, extra->>'again' from events")[1] == [("ALICE", "ALICE!")]
