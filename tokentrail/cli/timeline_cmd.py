"""`tokentrail timeline`: the case's events in time order, around a token, holder, address,
session or incident, inside --since/--until."""

from __future__ import annotations

import click

from tokentrail.case.store import resolve_db_path
from tokentrail.case.timeline import timeline, window_from

from ..output import write_rows
from .common import db_option, open_case, open_output
from .render import print_timeline


@click.command("timeline", epilog="""\b
Examples:
  tokentrail timeline --db case.duckdb                      # every event, oldest first
  tokentrail timeline --ip 203.0.113.45 --since 2026-11-02T09:30:00Z
  tokentrail timeline --holder ip:203.0.113.45/curl --format csv -o curl.csv
  tokentrail timeline --token ASIALN5YQ6SWF73864KW --since -1h
  tokentrail timeline --incident TTI-74ee7ea0f5fd           # ids from `tokentrail scan`

\b
Times: ISO 8601 (UTC unless an offset is given) or a duration back from the case's latest
event: -2h, 30m, 1d, 90s, 1w.
Exit codes: 0 done; 2 usage error; 3 input error (no case, unknown incident).
""")
@db_option
@click.option("--token", metavar="KEY", help="Only this token (key, issuer id or fingerprint) "
              "and the issuance events that minted tokens from it.")
@click.option("--holder", metavar="ID", help="Only events presented or received by this holder.")
@click.option("--ip", metavar="ADDRESS", help="Only events from this source address.")
@click.option("--session", metavar="ID", help="Only events of this IdP session.")
@click.option("--incident", metavar="TTI-…", help="Only the events of this incident (its tokens "
              "with its holders, their issuance and revocation, its evidence).")
@click.option("--since", metavar="TIME", help="Events at or after TIME.")
@click.option("--until", metavar="TIME", help="Events at or before TIME.")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "jsonl")), default="table",
              show_default=True, help="table fits the terminal; csv and jsonl carry every column.")
@click.option("-o", "--output", "output", default="-", metavar="FILE", show_default=True,
              help="Write to FILE instead of stdout.")
def timeline_cmd(db: str | None, token: str | None, holder: str | None, ip: str | None,
                 session: str | None, incident: str | None, since: str | None,
                 until: str | None, fmt: str, output: str) -> None:
    """Every event of the case in time order (like a forensic super-timeline), or of one
    token, holder, address, session or incident; pivots combine (all must match)."""
    with open_case(resolve_db_path(db), read_only=True) as case:
        window = window_from(case.con, since, until)
        columns, rows = timeline(case.con, window=window, token=token, holder=holder, ip=ip,
                                 session=session, incident=incident)
    with open_output(output) as stream:
        if fmt == "table":
            print_timeline(stream, columns, rows)
        else:
            write_rows(columns, rows, fmt, stream)
