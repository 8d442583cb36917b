"""The `tokentrail` command: a thin click layer over the library.

Exit codes: 0 done; 1 findings at or above --fail-on; 2 usage error; 3 input error
(unreadable file, bad mapping, no usable events, case in use); 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..errors import ExitCode, TokentrailError
from ..output import sanitize_terminal
from ..redact import redact_text
from .export_cmd import export_cmd
from .formats_cmd import formats_cmd
from .ingest_cmd import ingest_cmd
from .query_cmd import query_cmd
from .report_cmd import report_cmd
from .rules_cmd import rules_cmd
from .scan_cmd import scan_cmd
from .policy_cmd import policy_cmd
from .timeline_cmd import timeline_cmd
from .tokens_cmd import holders_cmd, tokens_cmd
from .trace_cmd import trace_cmd

EPILOG = """\b
Examples:
  tokentrail scan sample-logs/                   # CI-style: findings, exit 1 at/above high
  tokentrail ingest logs/ --db case.duckdb       # keep a case for investigation
  tokentrail tokens --db case.duckdb             # every token, every holder, classified
  tokentrail trace ASIALN5YQ6SWF73864KW --db case.duckdb
  tokentrail timeline --ip 203.0.113.45 --since -30m   # events in time order, pivots
  tokentrail report --db case.duckdb --html report.html
  tokentrail query "select * from v_token_holders where holders > 1"
  zcat trail.json.gz | tokentrail ingest - --format cloudtrail
  tokentrail export --parquet lake/ --db case.duckdb   # Parquet, partitioned by day
  tokentrail scan --engine spark --lake lake/          # the same rules on Spark

\b
Exit codes:
  0 done   1 findings at/above --fail-on   2 usage error
  3 input error (unreadable file, bad mapping, no usable events, case in use)
  130 interrupted

NO_COLOR disables colour; progress goes to stderr, data to stdout.
A case another tokentrail process holds is waited for up to $TOKENTRAIL_LOCK_WAIT
seconds (default 60; 0 fails at once). $TOKENTRAIL_DB names the default case.
"""


class TokentrailGroup(click.Group):
    """Maps library errors to exit codes in one place; no traceback for user mistakes."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, **kwargs)
        except TokentrailError as exc:  # pragma: no cover - invoke() handles them
            click.echo(f"error: {sanitize_terminal(redact_text(str(exc), strict=False))}", err=True)
            sys.exit(int(exc.exit_code))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TokentrailError as exc:
            click.echo(f"error: {sanitize_terminal(redact_text(str(exc), strict=False))}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


@click.group(cls=TokentrailGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokentrail")
def main() -> None:
    """Follow bearer tokens across gateway, IdP, cloud and cluster logs.

    Ingest logs into a DuckDB case, fingerprint every token (base64url SHA-256, the DPoP `ath`
    value; raw tokens are never stored or printed), see who held each token, and tell
    delegation from forwarding and theft.
    """


main.add_command(ingest_cmd)
main.add_command(query_cmd)
main.add_command(formats_cmd)
main.add_command(scan_cmd)
main.add_command(tokens_cmd)
main.add_command(holders_cmd)
main.add_command(rules_cmd)
main.add_command(report_cmd)
main.add_command(trace_cmd)
main.add_command(export_cmd)
main.add_command(timeline_cmd)
main.add_command(policy_cmd)
