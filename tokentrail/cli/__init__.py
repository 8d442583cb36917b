"""The `tokentrail` command: a thin click layer over the library.

Exit codes: 0 done; 1 findings at or above --fail-on; 2 usage error; 3 input error
(unreadable file, bad mapping, no usable events, case in use, out of memory, a full disk);
130 interrupted.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
from typing import Any, NoReturn

import click

from .. import __version__
from ..errors import MEMORY_HINT, ExitCode, TokentrailError, first_line, is_out_of_memory
from ..output import sanitize_terminal
from ..redact import redact_text
from .common import forget_protected
from .export_cmd import export_cmd
from .formats_cmd import formats_cmd
from .ingest_cmd import ingest_cmd
from .policy_cmd import policy_cmd
from .query_cmd import query_cmd
from .report_cmd import report_cmd
from .rules_cmd import rules_cmd
from .scan_cmd import scan_cmd
from .sessions_cmd import sessions_cmd
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
  zcat trail.json.gz | tokentrail ingest - --log-format cloudtrail
  tokentrail export --parquet lake/ --db case.duckdb   # Parquet, partitioned by day
  tokentrail scan --engine spark --lake lake/          # the same rules on Spark

\b
Exit codes:
  0 done   1 findings at/above --fail-on   2 usage error
  3 input or I/O error (unreadable file, bad mapping, no usable events, case in use,
    no such case, disk full)
  130 interrupted

NO_COLOR disables colour; progress goes to stderr, data to stdout.
A case another tokentrail process holds is waited for up to $TOKENTRAIL_LOCK_WAIT
seconds (default 60; 0 fails at once). $TOKENTRAIL_DB names the default case.
"""


def _fail(message: str, code: int) -> NoReturn:
    try:
        click.echo(f"error: {sanitize_terminal(redact_text(message, strict=False))}", err=True)
    except OSError:
        pass
    sys.exit(code)


def _quiet_stdout() -> None:
    """stdout is gone (a closed pipe, `| head`): point it at /dev/null so Python's shutdown
    flush does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _os_error_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{where}cannot write: no space left on device"
    return f"{where}{exc.strerror or exc}"


def _database_error_message(exc: BaseException) -> str | None:
    """One line for an error DuckDB raised outside the places that word their own (lineage,
    classification, incidents, writing the case): out of memory under the case's limit, a
    full disk under the case or its spill folder, a damaged database file. None if `exc` is
    not DuckDB's."""
    import duckdb

    if not isinstance(exc, duckdb.Error):
        return None
    first = first_line(exc)
    if is_out_of_memory(exc):
        return f"{first} ({MEMORY_HINT})"
    if "no space left on device" in str(exc).lower():
        return f"cannot write the case: no space left on device ({first})"
    return f"database error: {first}"


def _is_interrupt(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)) or (
        isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower())


_WATCHING = False  # the watcher is installed once per process


def _watch_interrupts() -> None:
    """Ctrl-C must stop a DuckDB query that is computing: the main thread is inside DuckDB
    and runs no Python signal handler until the query ends. The C-level handler still
    writes the signal number to a wakeup fd at once; a daemon thread reading it asks every
    open case to stop, DuckDB raises InterruptException, and that is exit 130. An inherited
    ignored SIGINT (a background job) stays ignored."""
    import signal
    import threading

    global _WATCHING
    if _WATCHING or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    try:
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return

    def watch() -> None:
        from tokentrail.case.store import interrupt_open_cases

        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data:
                interrupt_open_cases()

    threading.Thread(target=watch, name="tokentrail-interrupt", daemon=True).start()
    _WATCHING = True


class TokentrailGroup(click.Group):
    """Maps errors to exit codes in one place; no traceback for user mistakes, interrupts or
    I/O failures (README "Exit codes")."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        _watch_interrupts()
        # The cyclic garbage collector is paused while a command runs: a scan holds millions
        # of short-lived, acyclic objects (findings, incidents, their JSON), and each full
        # collection walks all of them to reclaim nothing (1 M-event bench case: 14 full
        # collections, 0 objects collected, ~2 s of a 16 s scan). Reference counting still
        # frees everything; the previous state is restored for in-process callers (tests).
        collecting = gc.isenabled()
        gc.disable()
        try:
            result = super().main(*args, **kwargs)
        except SystemExit as exc:
            self._flush_stdout()
            raise exc from None
        except BaseException as exc:  # everything invoke() lets through
            self._handle(exc)
            raise
        finally:
            if collecting:
                gc.enable()
        self._flush_stdout()
        return result

    def _flush_stdout(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
        except OSError as exc:
            _quiet_stdout()
            _fail(f"stdout: {_os_error_message(exc)}", int(ExitCode.INPUT))

    def _handle(self, exc: BaseException) -> None:
        if isinstance(exc, TokentrailError):
            _fail(str(exc), int(exc.exit_code))
        if _is_interrupt(exc):
            try:
                click.echo("interrupted", err=True)
            except OSError:
                pass
            sys.exit(int(ExitCode.INTERRUPTED))
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
            sys.exit(0)
        if isinstance(exc, OSError):
            _quiet_stdout()
            _fail(_os_error_message(exc), int(ExitCode.INPUT))
        message = _database_error_message(exc)
        if message is not None:
            _fail(message, int(ExitCode.INPUT))

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        # Ctrl-C while click parses the top-level arguments: click would say "Aborted!" and
        # exit 1; the contract is exit 130 (subcommands parse inside invoke(), handled there).
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as exc:
            self._handle(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        forget_protected()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except BaseException as exc:
            self._handle(exc)
            raise


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
main.add_command(sessions_cmd)
main.add_command(holders_cmd)
main.add_command(rules_cmd)
main.add_command(report_cmd)
main.add_command(trace_cmd)
main.add_command(export_cmd)
main.add_command(timeline_cmd)
main.add_command(policy_cmd)
