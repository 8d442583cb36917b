"""`tokentrail scan`: ingest (optional), classify every token holder, run the rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table

from ..analyse import analyse
from ..case import MEMORY, resolve_db_path
from ..errors import ExitCode, InputError, UsageError
from ..export import ocsf_findings, sarif_log
from ..findings import baseline_json, load_baseline
from ..ingest import Ingestor
from ..output import cell_text, write_rows
from ..results import FINDING_CSV_COLUMNS, finding_rows, scan_payload
from ..rules import load_rules
from ..rules.model import SEVERITIES
from .common import console_for, load_policy_option, open_case, open_output, policy_option, progress_bar, say

SCAN_FORMATS = ("table", "json", "jsonl", "csv", "sarif", "ocsf")


@click.command("scan", epilog="""\b
Examples:
  tokentrail scan sample-logs/                       # in-memory case, table of findings
  tokentrail scan logs/ --format json -o findings.json --fail-on high
  tokentrail scan --db case.duckdb                   # re-analyse an existing case
  tokentrail scan logs/ --baseline known.json        # only findings not in the baseline
  tokentrail scan logs/ --write-baseline known.json

\b
Exit codes: 0 no finding at or above --fail-on; 1 findings at or above it; 2 usage error;
3 input error (unreadable input, no usable events, bad policy or rule).
""")
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option("--db", "db", metavar="FILE",
              help="Case database. With PATHs and no --db the case is in memory (CI); without "
                   "PATHs, --db or $TOKENTRAIL_DB or ./tokentrail.duckdb is analysed.")
@click.option("--log-format", "format_name", metavar="NAME", help="Read every input as this log format.")
@click.option("--mapping", "mapping_file", metavar="FILE", help="Read every input with a user mapping.")
@policy_option
@click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
              help="Also load the rules in DIR (repeatable); a rule with a built-in id replaces it.")
@click.option("--format", "fmt", type=click.Choice(SCAN_FORMATS), default="table", show_default=True,
              help="Output format: sarif is SARIF 2.1.0, ocsf a JSON array of OCSF 1.1.0 Detection "
                   "Findings.")
@click.option("-o", "--output", "output", default="-", metavar="FILE", show_default=True,
              help="Write to FILE instead of stdout.")
@click.option("--fail-on", type=click.Choice((*SEVERITIES, "none")), default="high",
              show_default=True, help="Exit 1 when a finding is at or above this severity.")
@click.option("--baseline", metavar="FILE", help="Suppress findings whose id is listed in FILE.")
@click.option("--write-baseline", metavar="FILE", help="Write the ids of this scan's findings to FILE.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
def scan_cmd(paths: tuple[str, ...], db: str | None, format_name: str | None,
             mapping_file: str | None, policy_file: str | None, rules_dirs: tuple[str, ...],
             fmt: str, output: str, fail_on: str, baseline: str | None,
             write_baseline: str | None, quiet: bool) -> None:
    """Classify who held every token and report the findings of every rule.

    Each (token, holder) pair is classified owner, delegate, transport, forwarded, stolen,
    suspicious or unknown, with a confidence and the evidence as reasons; the rules turn
    those and the raw events into findings with stable ids.
    """
    if baseline and write_baseline and Path(baseline).resolve() == Path(write_baseline).resolve():
        raise UsageError("--baseline and --write-baseline name the same file")
    rules = load_rules(rules_dirs)
    policy = load_policy_option(policy_file)
    suppressed = load_baseline(baseline) if baseline else set()
    db_path = db if db else (MEMORY if paths else resolve_db_path(None))
    if not paths and db_path != MEMORY and not Path(db_path).exists():
        raise InputError(f"no case database at {db_path}: give log paths to scan, or --db")
    with open_case(db_path) as case:
        if paths:
            ingestor = Ingestor(case, format_name=format_name, mapping_file=mapping_file)
            with progress_bar(not quiet) as progress:
                ingestor.progress = progress
                report = ingestor.run(paths, stdin=sys.stdin.buffer)
            for f in report.problems:
                say(f"warning: {f.name}: {f.message}")
        events = case.con.execute("SELECT count(*) FROM events").fetchone()
        if not events or not events[0]:
            raise InputError("no usable events in the input: nothing was analysed "
                             "(see the messages above, or `tokentrail ingest` for details)")
        analysis = analyse(case.con, policy=policy, rules=rules)
        findings = [f for f in analysis.findings if f.id not in suppressed]
        payload = scan_payload(case.con, findings)
    if write_baseline:
        Path(write_baseline).write_bytes(baseline_json(analysis.findings))
    _emit(findings, payload, fmt, output, rules=analysis.rules)
    if not quiet:
        hidden = len(analysis.findings) - len(findings)
        say(f"{len(findings)} finding(s)" + (f", {hidden} suppressed by baseline" if hidden else "")
            + f" from {len(rules)} rules over {payload['case']['events']} events")
    if fail_on != "none":
        limit = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) <= limit for f in findings):
            raise SystemExit(int(ExitCode.FINDINGS))


def _emit(findings: list[Any], payload: dict[str, Any], fmt: str, output: str,
          rules: list[Any] | None = None) -> None:
    with open_output(output) as stream:
        if fmt == "sarif":
            doc = sarif_log(findings, rules or [])
            stream.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif fmt == "ocsf":
            stream.write(orjson.dumps(ocsf_findings(findings), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
        elif fmt == "json":
            stream.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif fmt == "jsonl":
            for f in payload["findings"]:
                stream.write(orjson.dumps(f).decode() + "\n")
        elif fmt == "csv":
            write_rows(FINDING_CSV_COLUMNS, finding_rows(findings), "csv", stream)
        else:
            table = Table(title=f"{len(findings)} finding(s)", header_style="bold")
            for col in ("severity", "rule", "classification", "token", "holder", "conf", "evidence",
                        "why"):
                table.add_column(col, overflow="fold")
            for f in findings:
                ev = f.evidence[0] if f.evidence else None
                table.add_row(f.severity, f.rule, f.classification, cell_text(f.token.get("key")),
                              cell_text(f.holder.get("id")),
                              "" if f.confidence is None else f"{f.confidence:.2f}",
                              cell_text(f"{ev['file']}:{ev['line']}" if ev else ""),
                              cell_text(f.reasons[0] if f.reasons else f.title))
            console_for(stream).print(table)
