"""Pretty-printed JSON (issue 17 item 1): one indented object, and objects concatenated the
way `jq .` / `jq '.[]'` prints them, are read as records, with or without --format; a broken
document is one reject and the documents after it still ingest. Evidence lines point at the
line each document starts on.

Fixtures tests/fixtures/cloudtrail/jq-*.json are records of records.json (CloudTrail record
schema, see its README) printed by `jq .` (2-space indent, one document after another).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokentrail import Case
from tokentrail.case.ingest import ingest

FIX = Path(__file__).parent / "fixtures" / "cloudtrail"
DATASET = (Path(__file__).parents[2] / "shared" / "datasets" / "aws-cloudtrail"
           / "stratus-aws.discovery.ec2-download-user-data.json")


def _starts(path: Path) -> list[int]:
    return [i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith("{")]


@pytest.mark.parametrize("fmt", [None, "cloudtrail"])
def test_concatenated_pretty_documents_are_records(fmt: str | None) -> None:
    path = FIX / "jq-concatenated.json"
    case = Case()
    report = ingest(case, [str(path)], **({"format_name": fmt} if fmt else {}))
    f = report.files[0]
    assert (f.format, f.container, f.events, f.rejects) == ("cloudtrail", "documents", 5, 0)
    lines = [r[0] for r in case.query("SELECT line FROM events ORDER BY line")[1]]
    assert lines == _starts(path)
    assert case.query("SELECT count(DISTINCT token_key) FROM events")[1][0][0] >= 2


def test_one_indented_object_is_one_record() -> None:
    case = Case()
    f = ingest(case, [str(FIX / "jq-one-object.json")]).files[0]
    assert (f.status, f.events, f.rejects) == ("ingested", 1, 0)
    assert case.query("SELECT line FROM events")[1] == [(1,)]


def test_broken_document_is_one_reject_and_the_rest_ingests() -> None:
    path = FIX / "jq-broken.json"
    case = Case()
    f = ingest(case, [str(path)]).files[0]
    assert (f.events, f.rejects) == (4, 1)
    starts = _starts(path)
    assert case.query("SELECT line, reason FROM rejects")[1] == [(starts[2], "invalid JSON")]
    lines = [r[0] for r in case.query("SELECT line FROM events ORDER BY line")[1]]
    assert lines == [starts[0], starts[1], starts[3], starts[4]]


@pytest.mark.skipif(not DATASET.exists(), reason="shared dataset not present")
def test_real_detonation_printed_by_jq(tmp_path: Path) -> None:
    records = json.loads(DATASET.read_text())
    path = tmp_path / "pretty.json"
    path.write_text("".join(json.dumps(r, indent=2) + "\n" for r in records))
    case = Case()
    f = ingest(case, [str(path)], format_name="cloudtrail").files[0]
    assert (f.container, f.events, f.rejects) == ("documents", len(records), 0)
