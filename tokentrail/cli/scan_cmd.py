"""`tokentrail scan`: ingest (optional), classify every token holder, run the rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tokentrail.case.ingest import Ingestor
from tokentrail.case.store import MEMORY, resolve_db_path
from tokentrail.case.timeline import Window, window_from
from tokentrail.rules.findings import baseline_json, load_baseline
from tokentrail.scale.lake import is_lake

from ..analyse import analyse
from ..errors import ExitCode, InputError, UsageError
from ..export import ocsf_findings, sarif_log
from ..output import cell_text, json_bytes, write_rows
from ..results import FINDING_CSV_COLUMNS, finding_rows, keep_findings, scan_payload
from ..rules import load_rules
from ..rules.model import SEVERITIES
from ..rules.runner import failed_rules_error
from ..scale import ENGINES
from .common import (
    console_for,
    load_policy_option,
    new_case_guard,
    open_case,
    open_output,
    policy_option,
    progress_bar,
    protect,
    say,
    write_json,
)
from .render import print_incidents

SCAN_FORMATS = ("table", "json", "jsonl", "csv", "sarif", "ocsf")


@click.command("scan", epilog="""\b
Examples:
  tokentrail scan sample-logs/                       # in-memory case, table of findings
  tokentrail scan logs/ --format json -o findings.json --fail-on high
  tokentrail scan --db case.duckdb                   # re-analyse an existing case
  tokentrail scan logs/ --baseline known.json        # only findings not in the baseline
  tokentrail scan logs/ --write-baseline known.json
  tokentrail scan --db case.duckdb --since -2h       # findings active in the case's last 2 h
  tokentrail scan sample-logs/ --wide                # one full table row per finding
  tokentrail scan --lake lake/                       # a Parquet lake, DuckDB engine
  tokentrail scan --engine spark --lake lake/        # the same on Spark, local[*]
  tokentrail scan --engine spark --lake s3a://bucket/case --spark-master spark://head:7077 \\
      --spark-conf spark.executor.memory=8g

\b
Engines: duckdb (default) runs in this process; spark (pip install 'tokentrail[spark]', Java
17+) runs the same lineage, classification and rule SQL, transpiled, over a lake and writes
the same findings (same ids).

\b
Exit codes: 0 no finding at or above --fail-on; 1 findings at or above it; 2 usage error;
3 input error (unreadable input, no usable events, bad policy or rule; a rule whose SQL
fails, e.g. out of memory: the other rules' findings are still written, the failed rules
are named on stderr; out of memory in lineage or classification, one line; either way
TOKENTRAIL_MEMORY_LIMIT gives DuckDB more memory).
""")
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option("--db", "db", metavar="FILE",
              help="Case database. With PATHs and no --db the case is in memory (CI); without "
                   "PATHs, --db or $TOKENTRAIL_DB or ./tokentrail.duckdb is analysed.")
@click.option("--log-format", "format_name", metavar="NAME",
              help="Read every input as this log format instead of sniffing (as for ingest).")
@click.option("--mapping", "mapping_file", metavar="FILE", help="Read every input with a user mapping.")
@policy_option
@click.option("--rules", "rules_dirs", multiple=True, metavar="DIR",
              help="Also load the rules in DIR (repeatable); a rule with a built-in id replaces it.")
@click.option("--format", "fmt", type=click.Choice(SCAN_FORMATS), default="table", show_default=True,
              help="Output format: sarif is SARIF 2.1.0, ocsf a JSON array of OCSF 1.1.0 Detection "
                   "Findings.")
@click.option("-o", "--output", "output", default="-", metavar="FILE", show_default=True,
              help="Write to FILE instead of stdout.")
@click.option("--sarif-root", metavar="DIR",
              help="--format sarif: write artifact URIs relative to DIR (the scanned folder) "
                   "under %SRCROOT% (default: the working directory).")
@click.option("--fail-on", type=click.Choice((*SEVERITIES, "none")), default="high",
              show_default=True, help="Exit 1 when a finding is at or above this severity.")
@click.option("--since", metavar="TIME",
              help="Only findings active at or after TIME: ISO 8601 (2026-11-02T09:30:00Z) or a "
                   "duration back from the case's latest event (-2h, 30m, 1d).")
@click.option("--until", metavar="TIME", help="Only findings active at or before TIME (as --since).")
@click.option("--wide", is_flag=True,
              help="Table: one full row per finding (every column) instead of the incident view "
                   "that fits the terminal.")
@click.option("--baseline", metavar="FILE",
              help="Suppress findings listed in FILE (ids, a scan's JSON, or entries with a "
                   "reason and an expiry date).")
@click.option("--write-baseline", metavar="FILE", help="Write the ids of this scan's findings to FILE.")
@click.option("--engine", type=click.Choice(ENGINES), default="duckdb", show_default=True,
              help="Where lineage, classification and the rules run; spark needs --lake.")
@click.option("--lake", "lake", metavar="DIR|URL",
              help="A Parquet lake written by `tokentrail export --parquet` (folder or object-store URL).")
@click.option("--spark-master", default="local[*]", show_default=True, metavar="URL",
              help="Spark master for --engine spark: local[N], spark://host:7077, yarn, k8s://...")
@click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
              help="A Spark setting for --engine spark (repeatable), e.g. spark.executor.memory=8g.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
def scan_cmd(paths: tuple[str, ...], db: str | None, format_name: str | None,
             mapping_file: str | None, policy_file: str | None, rules_dirs: tuple[str, ...],
             fmt: str, output: str, sarif_root: str | None, fail_on: str, since: str | None, until: str | None,
             wide: bool, baseline: str | None, write_baseline: str | None, engine: str, lake: str | None, spark_master: str,
             spark_conf: tuple[str, ...], quiet: bool) -> None:
    """Classify who held every token and report the findings of every rule.

    Each (token, holder) pair is classified owner, delegate, transport, forwarded, stolen,
    suspicious or unknown, with a confidence and the evidence as reasons; the rules turn
    those and the raw events into findings with stable ids, grouped into incidents (same
    holder with the same or a derived token, session or exchange, close in time). The table
    leads with the incidents and fits the terminal; --wide shows every column.
    """
    if baseline and write_baseline and Path(baseline).resolve() == Path(write_baseline).resolve():
        raise UsageError("--baseline and --write-baseline name the same file")
    if lake and (paths or db):
        raise UsageError("--lake scans a Parquet lake: give no log paths and no --db with it")
    if engine == "spark" and not lake:
        raise UsageError("--engine spark runs over a Parquet lake: pass --lake DIR|URL (write one "
                         "with `tokentrail export --parquet DIR`)")
    conf = _spark_conf(spark_conf)
    rules = load_rules(rules_dirs)
    policy = load_policy_option(policy_file)
    suppressed = load_baseline(baseline) if baseline else set()
    if engine == "spark":
        from tokentrail.scale.spark import scan_lake

        assert lake is not None
        result = scan_lake(lake, master=spark_master, conf=conf, policy=policy, rules=rules,
                           on_step=None if quiet else (lambda step: say(f"spark: {step}")))
        _finish(result.findings, result.payload, suppressed, rules, fmt, output, fail_on,
                write_baseline, quiet, since=since, until=until, wide=wide, sarif_root=sarif_root)
        return
    db_path = lake or (db if db else (MEMORY if paths else resolve_db_path(None)))
    if not paths and db_path != MEMORY and not is_lake(db_path) and not Path(db_path).exists():
        raise InputError(f"no such case: {db_path}: give log paths to scan, or --db")
    with new_case_guard(db_path) as guard, open_case(db_path, create=bool(paths)) as case:
        if paths:
            ingestor = Ingestor(case, format_name=format_name, mapping_file=mapping_file)
            with progress_bar(not quiet) as progress:
                ingestor.progress = progress
                report = ingestor.run(paths, stdin=sys.stdin.buffer)
            for f in report.files:
                protect(f.name, "an input log of this scan")
            guard.keep = bool(case.stats()["sources"])
            failed = [f for f in report.problems if f.status == "failed"]
            for f in report.problems:
                say(f"{'error' if f in failed else 'warning'}: {f.name}: {f.message}")
            if failed:
                # A missing or unreadable input is exit 3, as for ingest: a CI job must not
                # pass on a scan that silently skipped a log.
                raise SystemExit(int(ExitCode.INPUT))
            if not report.files:
                raise InputError("no input files found")
        else:
            guard.keep = True
        events = case.con.execute("SELECT count(*) FROM events").fetchone()
        if not events or not events[0]:
            raise InputError("no usable events in the input: nothing was analysed "
                             "(see the messages above, or `tokentrail ingest` for details)")
        analysis = analyse(case.con, policy=policy, rules=rules, keep_going=True)
        payload = scan_payload(case.con, analysis.findings, analysis.incidents)
        window = window_from(case.con, since, until)
    if not analysis.failed:
        _finish(analysis.findings, payload, suppressed, analysis.rules, fmt, output, fail_on,
                write_baseline, quiet, window=window, wide=wide, sarif_root=sarif_root)
        return
    # The other rules' findings are still written; then each failed rule's error, exit 3.
    try:
        _finish(analysis.findings, payload, suppressed, analysis.rules, fmt, output, fail_on,
                write_baseline, quiet, window=window, wide=wide, sarif_root=sarif_root)
    except SystemExit:
        pass
    for failure in analysis.failed:
        say(f"error: {failure}")
    raise failed_rules_error(analysis.failed)


def _spark_conf(pairs: tuple[str, ...]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spark-conf takes KEY=VALUE, not {pair!r}")
        conf[key.strip()] = value.strip()
    return conf


def _finish(all_findings: list[Any], payload: dict[str, Any], suppressed: set[str], rules: list[Any],
            fmt: str, output: str, fail_on: str, write_baseline: str | None, quiet: bool, *,
            window: Window | None = None, since: str | None = None, until: str | None = None,
            wide: bool = False, sarif_root: str | None = None) -> None:
    """Baselines, time window, output, summary and exit code: the same for every engine."""
    if window is None:
        if since or until:
            raise UsageError("--since/--until need the duckdb engine")
        window = Window()
    in_window = [f for f in all_findings if window.overlaps(f.first_seen, f.last_seen)]
    findings = [f for f in in_window if f.id not in suppressed]
    payload = keep_findings(payload, {f.id for f in findings})
    if write_baseline:  # same guarantees as -o: atomic, a symlink's target, never a folder
        with open_output(write_baseline) as stream:
            stream.write(baseline_json(all_findings).decode())
    _emit(findings, payload, fmt, output, rules=rules, wide=wide, sarif_root=sarif_root)
    if not quiet:
        hidden = len(in_window) - len(findings)
        outside = len(all_findings) - len(in_window)
        incidents = payload.get("incidents")
        say(f"{len(findings)} finding(s)"
            + (f" in {len(incidents)} incident(s)" if incidents is not None else "")
            + (f", {hidden} suppressed by baseline" if hidden else "")
            + (f", {outside} outside --since/--until" if outside else "")
            + f" from {len(rules)} rules over {payload['case']['events']} events")
    if fail_on != "none":
        limit = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) <= limit for f in findings):
            raise SystemExit(int(ExitCode.FINDINGS))


def _emit(findings: list[Any], payload: dict[str, Any], fmt: str, output: str,
          rules: list[Any] | None = None, wide: bool = False,
          sarif_root: str | None = None) -> None:
    with open_output(output) as stream:
        if fmt == "sarif":
            doc = sarif_log(findings, rules or [],
                            base_dir=Path(sarif_root) if sarif_root else None, origin=Path.cwd())
            write_json(stream, doc)
        elif fmt == "ocsf":
            write_json(stream, ocsf_findings(findings))
        elif fmt == "json":
            write_json(stream, payload)
        elif fmt == "jsonl":
            for f in payload["findings"]:
                stream.write(json_bytes(f).decode() + "\n")
        elif fmt == "csv":
            write_rows(FINDING_CSV_COLUMNS, finding_rows(findings), "csv", stream)
        elif not wide and payload.get("incidents") is not None:
            print_incidents(stream, payload["incidents"], findings)
        else:
            table = Table(title=f"{len(findings)} finding(s)", header_style="bold")
            for col in ("incident", "severity", "rule", "classification", "token", "holder", "conf",
                        "evidence", "why"):
                table.add_column(col, overflow="fold")
            for f in findings:
                ev = f.evidence[0] if f.evidence else None
                table.add_row(f.incident or "", f.severity, f.rule, f.classification, cell_text(f.token.get("key")),
                              cell_text(f.holder.get("id")),
                              "" if f.confidence is None else f"{f.confidence:.2f}",
                              cell_text(f"{ev['file']}:{ev['line']}" if ev else ""),
                              cell_text(f.reasons[0] if f.reasons else f.title))
            console_for(stream).print(table)
