"""JSON documents are written by orjson straight from the findings (no conversion pass): what
the old `jsonable` pass converted must still come out the same, and the CLI's paused garbage
collector must be running again for whoever called it in-process."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from click.testing import CliRunner
from conftest import REPO

from tokentrail.cli import main
from tokentrail.output import json_bytes, jsonable

MIXED = {
    "ts": datetime(2026, 3, 1, 9, 30, 5, tzinfo=timezone(timedelta(hours=2))),
    "naive": datetime(2026, 3, 1, 9, 30, 5, 120000),
    "day": date(2026, 3, 1),
    "money": Decimal("0.75"),
    "raw": b"\x00\xff",
    "nested": [{"when": datetime(2026, 1, 1, tzinfo=UTC), "n": 3, "tags": ("a", "b")}, None, 1.5],
    "flag": True,
}


def test_json_bytes_writes_what_the_conversion_pass_wrote():
    assert json_bytes(MIXED) == orjson.dumps(jsonable(MIXED))
    indented = json_bytes(MIXED, indent=True)
    assert indented.endswith(b"\n")
    assert orjson.loads(indented) == orjson.loads(orjson.dumps(jsonable(MIXED)))
    doc = orjson.loads(indented)
    assert doc["ts"] == "2026-03-01T07:30:05Z"          # UTC, Z, like every other timestamp
    assert doc["naive"] == "2026-03-01T09:30:05.120000Z"  # naive is taken as UTC
    assert doc["money"] == 0.75 and doc["raw"] == "00ff"


def test_json_bytes_refuses_what_it_cannot_write():
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        json_bytes({"x": object()})


def test_the_cli_restores_garbage_collection_for_in_process_callers():
    assert gc.isenabled()
    result = CliRunner().invoke(main, ["scan", str(REPO / "sample-logs"), "--format", "json",
                                       "--fail-on", "none", "-q"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["findings"]
    assert gc.isenabled()
