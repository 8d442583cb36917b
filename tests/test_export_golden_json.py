"""Golden files for the remaining exports of the awkward fixture: scan json and jsonl, and
the HTML report (its generation time normalised). Regenerate with TOKENTRAIL_REGEN_GOLDEN=1,
then read the diff: a golden is only right if a person checked it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_export_sarif import EXPORT, check_golden, scan

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.export.html import render_html_report


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_scan_output_matches_the_golden_file(workdir, fmt):
    check_golden(scan(workdir, fmt), EXPORT / f"awkward.scan.{fmt}")


def test_html_report_matches_the_golden_file(workdir, monkeypatch):
    scan(workdir, "json")  # lays out logs/ in workdir
    monkeypatch.chdir(workdir)
    with Case() as case:
        ingest(case, ["logs"])
        analysis = analyse(case.con)
        html = render_html_report(case.con, findings=analysis.findings, incidents=analysis.incidents)
    html = re.sub(r"generated \S+ \S+", "generated <TIME>", html)
    html = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)? by tokentrail",
                  "<TIME> by tokentrail", html)
    check_golden(html.encode(), EXPORT / "awkward.report.html")
