"""`tokentrail report`: analyse a case and write report files for people and other tools.

Outputs are a group of options, at least one required; each option's parameter names a writer
in `REPORT_OUTPUTS`. A new output (e.g. `--html FILE`) is one more option, one more parameter
passed in `outputs`, and one more entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tokentrail.case.store import MEMORY, resolve_db_path
from tokentrail.case.timeline import Window, window_from

from ..analyse import Analysis, analyse
from ..errors import InputError, UsageError
from ..export import write_csv_dir
from ..rules import load_rules
from .common import db_option, load_policy_option, open_case, policy_option, refuse_protected, say

# A writer gets the analysed case connection, the analysis (findings and the rules that ran) and
# the option's value, and returns one line for the closing summary.
Writer = Callable[[Any, Analysis, str], str]


def _write_csv(con: Any, analysis: Analysis, directory: str) -> str:
    counts = write_csv_dir(con, analysis.findings, directory)
    parts = ", ".join(f"{name} ({n} rows)" for name, n in counts.items())
    return f"wrote {parts} to {directory}"


def _write_html(con: Any, analysis: Analysis, path: str) -> str:
    from ..export.html import write_html_report

    write_html_report(con, path, findings=analysis.findings, incidents=analysis.incidents)
    return (f"wrote {path} ({len(analysis.incidents)} incidents, {len(analysis.findings)} "
            "findings; self-contained, works offline)")


# option parameter name -> (option as the user types it, writer)
REPORT_OUTPUTS: dict[str, tuple[str, Writer]] = {
    "html_file": ("--html FILE", _write_html),
    "csv_dir": ("--csv DIR", _write_csv),
}


@click.command("report", epilog="""\b
Examples:
  tokentrail ingest logs/ --db case.duckdb
  tokentrail report --db case.duckdb --html report.html
  tokentrail report --db case.duckdb --csv report/     # findings, tokens, holders, events

\b
Exit codes: 0 written; 2 usage error (no output option given); 3 input error (no case, no
usable events, bad policy or rule, an output that cannot be written).
""")
@db_option
@policy_option
@click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
              help="Also load the rules in DIR (repeatable); a rule with a built-in id replaces it.")
@click.option("--html", "html_file", metavar="FILE",
              help="Write one self-contained HTML report (no network needed to view it).")
@click.option("--csv", "csv_dir", metavar="DIR",
              help="Write findings.csv, tokens.csv, holders.csv and events.csv into DIR (created "
                   "if missing; each file replaced atomically).")
@click.option("--since", metavar="TIME", help="Only findings active at or after TIME (ISO 8601, "
              "or a duration back from the case's latest event: -2h, 30m, 1d).")
@click.option("--until", metavar="TIME", help="Only findings active at or before TIME.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def report_cmd(db: str | None, policy_file: str | None, rules_dirs: tuple[str, ...],
               html_file: str | None, csv_dir: str | None, since: str | None,
               until: str | None, quiet: bool) -> None:
    """Analyse a case (lineage, classification, rules, as `scan` does) and write reports.

    Give at least one output. CSV files follow RFC 4180 (UTF-8, CRLF, multi-line values
    quoted); cells a spreadsheet would run as a formula are prefixed with '.
    """
    outputs = {"html_file": html_file, "csv_dir": csv_dir}
    wanted = {name: value for name, value in outputs.items() if value}
    if not wanted:
        names = " or ".join(flag for flag, _ in REPORT_OUTPUTS.values())
        raise UsageError(f"nothing to write: give {names}")
    rules = load_rules(rules_dirs)
    policy = load_policy_option(policy_file)
    db_path = resolve_db_path(db)
    if db_path == MEMORY or not Path(db_path).exists():
        raise InputError(f"no such case: {db_path}: run `tokentrail ingest` first, or "
                         "pass --db")
    with open_case(db_path) as case:
        events = case.con.execute("SELECT count(*) FROM events").fetchone()
        if not events or not events[0]:
            raise InputError(f"case {db_path} holds no events: nothing to report")
        analysis = analyse(case.con, policy=policy, rules=rules)
        if since or until:
            analysis = _in_window(analysis, window_from(case.con, since, until))
        if html_file:
            refuse_protected(html_file)
        for name, value in wanted.items():
            _, writer = REPORT_OUTPUTS[name]
            try:
                summary = writer(case.con, analysis, value)
            except OSError as exc:
                raise UsageError(f"cannot write {value}: {exc.strerror or exc}") from None
            if not quiet:
                say(summary)


def _in_window(analysis: Analysis, window: Window) -> Analysis:
    """Only the findings active in the window, and the incidents they still make up."""
    import dataclasses

    findings = [f for f in analysis.findings if window.overlaps(f.first_seen, f.last_seen)]
    keep = {f.id for f in findings}
    incidents = []
    for inc in analysis.incidents:
        members = [i for i in inc.findings if i in keep]
        if members:
            incidents.append(dataclasses.replace(inc, findings=members))
    return Analysis(findings=findings, rules=analysis.rules, incidents=incidents)
