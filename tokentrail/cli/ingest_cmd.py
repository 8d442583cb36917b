"""`tokentrail ingest`: load logs into the case and show what was seen."""

from __future__ import annotations

import sys

import click
import orjson
from rich.table import Table

from tokentrail.case.ingest import Ingestor, IngestReport
from tokentrail.case.store import resolve_db_path

from ..errors import ExitCode, InputError
from ..output import cell_text
from .common import db_option, new_case_guard, open_case, progress_bar, say, stdout_console


@click.command("ingest", epilog="""\b
Examples:
  tokentrail ingest sample-logs/
  tokentrail ingest 'logs/**/*.json.gz' --db case.duckdb
  kubectl logs ... | tokentrail ingest - --log-format k8s-audit
  tokentrail ingest app.log --mapping my-app.toml --strict
""")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@db_option
@click.option("--log-format", "format_name", metavar="NAME",
              help="Read every input as this log format instead of sniffing (see "
                   "`tokentrail formats`).")
@click.option("--format", "format_alias", metavar="NAME", hidden=True,
              help="Old spelling of --log-format.")
@click.option("--mapping", "mapping_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Read every input with a user mapping (TOML written like the built-in ones).")
@click.option("--force", is_flag=True, help="Re-ingest files already in the case (same SHA-256).")
@click.option("--strict", is_flag=True, help="Stop at the first rejected record (exit 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
def ingest_cmd(paths: tuple[str, ...], db: str | None, format_name: str | None,
               format_alias: str | None, mapping_file: str | None, force: bool, strict: bool, as_json: bool,
               quiet: bool) -> None:
    """Ingest log files, directories, globs, .gz files or - (stdin) into the case.

    Each file's format is sniffed from its first records (JSON Lines, JSON arrays and
    CloudTrail's {"Records": [...]} wrapper all work). Malformed records go to the `rejects`
    table with file, line and reason; the rest of the file still loads. Re-ingesting a file
    with the same SHA-256 is a no-op unless --force. Each file is one transaction.
    """
    db_path = resolve_db_path(db)
    format_name = format_name or format_alias
    with new_case_guard(db_path) as guard:
        with open_case(db_path, create=True) as case:
            ingestor = Ingestor(case, format_name=format_name, mapping_file=mapping_file,
                                force=force, strict=strict)
            with progress_bar(not quiet) as progress:
                ingestor.progress = progress
                report = ingestor.run(paths, stdin=sys.stdin.buffer)
            stats = case.stats()
        guard.keep = bool(stats["sources"])
    if as_json:
        payload = report.as_dict()
        payload["case"] = {"db": db_path, **stats}
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    elif not quiet:
        _print_summary(report, stats, db_path)
    _exit_for(report)


def _print_summary(report: IngestReport, stats: dict[str, object], db_path: str) -> None:
    table = Table(title="ingest", header_style="bold")
    for col, justify in (("file", "left"), ("format", "left"), ("events", "right"),
                         ("rejects", "right"), ("status", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for f in report.files:
        status = f.status + (f": {f.message}" if f.message else "")
        table.add_row(cell_text(f.name), cell_text(f.format or "-"), str(f.events),
                      str(f.rejects), cell_text(status))
    console = stdout_console()
    console.print(table)
    tr = stats.get("time_range") or [None, None]
    assert isinstance(tr, list)
    console.print(
        f"case {cell_text(db_path)}: {stats['events']} events, {stats['tokens']} tokens, "
        f"{stats['holders']} holders, {stats['rejects']} rejects; "
        f"{cell_text(tr[0] or '-')} .. {cell_text(tr[1] or '-')}",
        markup=False,
    )
    if report.duplicates:
        console.print(f"duplicate records: {report.duplicates} (same event id as an earlier record "
                      "of the file; counted once, see sources.duplicates)", markup=False)
    if report.rejects:
        console.print("rejected records: tokentrail query \"select * from v_rejects\"",
                      markup=False)


def _exit_for(report: IngestReport) -> None:
    problems = report.problems
    for f in problems:
        say(f"error: {f.name}: {f.message}")
    if problems:
        raise SystemExit(int(ExitCode.INPUT))
    if not report.files:
        raise InputError("no input files found")
