"""Property tests: mutated records of every built-in format never break ingest, and every
input record ends as exactly one event, one reject, or one counted duplicate (a repeat of an
earlier record's unique event id, for formats that declare one; the test counts them).

Seeds are real fixture records; hypothesis mutates them (wrong types, nulls, deleted keys,
huge strings, deep nesting, invalid UTF-8, NUL bytes, BOM, CRLF, truncation, JWT-shaped
garbage) and writes them as JSON Lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import FIXTURES, SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokentrail import Case
from tokentrail.case.ingest import ingest


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for ln in text.splitlines():  # the fixtures hold malformed lines on purpose
            try:
                data.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
    if isinstance(data, dict):  # {"Records": [...]}, {"records": [...]}, {"value": [...]}
        data = next((data[k] for k in ("Records", "records", "value") if k in data), [])
    return [r for r in data if isinstance(r, dict)]


SEEDS: dict[str, list[dict[str, Any]]] = {
    "envoy": _records(FIXTURES / "envoy" / "gateway-access.jsonl"),
    "keycloak": _records(FIXTURES / "keycloak" / "events.json"),
    "okta": _records(FIXTURES / "okta" / "logs.json"),
    "cloudtrail": _records(FIXTURES / "cloudtrail" / "records.json"),
    "k8s-audit": _records(FIXTURES / "k8s-audit" / "audit.log"),
    "tokentrail": _records(FIXTURES / "export" / "awkward.jsonl"),
    "entra-signin": _records(FIXTURES / "entra-signin" / "diagnostic-storage.jsonl")
    + _records(FIXTURES / "entra-signin" / "graph-api-signins.json"),
    "graph-activity": _records(FIXTURES / "graph-activity" / "diagnostic-storage.jsonl")
    + _records(FIXTURES / "graph-activity" / "log-analytics.json"),
    "gcp-audit": _records(FIXTURES / "gcp-audit" / "audit.jsonl"),
    "nginx": _records(FIXTURES / "nginx" / "access.jsonl"),
    "kong": _records(FIXTURES / "kong" / "file-log.jsonl"),
    "auth0": _records(FIXTURES / "auth0" / "logs.jsonl")
    + _records(FIXTURES / "auth0" / "stream.jsonl"),
}
assert all(SEEDS.values()), [k for k, v in SEEDS.items() if not v]
_ = SHARED  # datasets are exercised by the format tests

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=40), st.just("eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."),  # alg none
    st.just("eyJ!!!.@@@.###"), st.just("Bearer " + "A" * 3000), st.just("-"),
    st.just("2026-13-45T99:99:99Z"), st.just(""),
)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


@st.composite
def mutated_line(draw: st.DrawFn, fmt: str) -> bytes:
    record = json.loads(json.dumps(draw(st.sampled_from(SEEDS[fmt]))))
    keys = list(record)
    for _ in range(draw(st.integers(0, 3))):
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["replace", "delete", "deep"]))
        if action == "replace":
            record[key] = draw(json_value)
        elif action == "delete":
            record.pop(key, None)
        else:
            deep: Any = "x"
            for _ in range(draw(st.integers(1, 300))):
                deep = [deep]
            record[key] = deep
    line = json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
    damage = draw(st.sampled_from(["none", "none", "truncate", "utf8", "nul", "garbage", "crlf",
                                   "gzip_magic"]))
    if damage == "truncate":
        line = line[: draw(st.integers(1, max(1, len(line) - 1)))]
    elif damage == "utf8":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + b"\xff\xfe\xc3" + line[at:]
    elif damage == "nul":
        line = line.replace(b'"', b'"\x00', 1)
    elif damage == "garbage":
        line = draw(st.binary(min_size=1, max_size=200)).replace(b"\n", b" ").replace(b"\r", b" ")
    elif damage == "crlf":
        line += b"\r"
    elif damage == "gzip_magic":  # the two gzip magic bytes, alone or before some text:
        line = b"\x1f\x8b" + line[: draw(st.integers(0, len(line)))]  # first line = "a .gz"
    return line


def _records_in(lines: list[bytes]) -> int:
    """Records as tokentrail counts them: non-blank lines (a bare CR is documented as a line
    break, so the generator never writes one inside a line)."""
    return sum(1 for ln in lines if ln.strip(b" \t\r"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_records_are_each_one_event_or_one_reject(tmp_path_factory, data):
    fmt = data.draw(st.sampled_from(sorted(SEEDS)))
    lines = data.draw(st.lists(mutated_line(fmt), min_size=1, max_size=12))
    bom = data.draw(st.booleans())
    path = tmp_path_factory.mktemp("prop") / f"{fmt}.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    with Case() as case:
        report = ingest(case, [str(path)], format_name=fmt)
        f = report.files[0]
        assert f.status in ("ingested", "empty"), f.message
        events, rejects = (case.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                           for t in ("events", "rejects"))
        stored = case.con.execute("SELECT sum(duplicates) FROM sources").fetchone()[0] or 0
    assert f.duplicates == stored
    assert events + rejects + f.duplicates == _records_in(lines), (fmt, f.message)


def test_a_file_of_only_the_gzip_magic_bytes_is_one_reject(case, tmp_path):
    path = tmp_path / "stub.jsonl.gz"
    path.write_bytes(b"\x1f\x8b")  # what a crashed shipper leaves: the gzip header's start
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(SEEDS["envoy"][0]) + "\n")
    report = ingest(case, [str(path), str(good)], format_name="envoy")
    stub, ok = report.files
    assert (stub.status, stub.events, stub.rejects) == ("empty", 0, 1), stub.message
    assert (ok.status, ok.events) == ("ingested", 1)
    assert case.con.execute("SELECT line FROM rejects").fetchall() == [(1,)]


def test_a_10_mb_line_is_one_record(case, tmp_path):
    seed = dict(SEEDS["envoy"][0])
    seed["path"] = "/" + "a" * (10 * 1024 * 1024)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(seed) + "\n" + json.dumps(SEEDS["envoy"][1]) + "\n")
    report = ingest(case, [str(path)], format_name="envoy")
    assert report.events + report.rejects == 2 and report.events >= 1
