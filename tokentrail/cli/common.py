"""Shared CLI plumbing: consoles, output options, safe tables, progress."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokentrail.case.store import Case

from ..errors import CaseError, UsageError
from ..output import ROW_FORMATS, cell_text, json_bytes, sanitize_terminal, write_rows

F = TypeVar("F", bound=Callable[..., Any])


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def console_for(stream: Any = None, *, width: int = 200) -> Console:
    """A console for data output: a terminal keeps its width and colour (unless NO_COLOR);
    a pipe or file gets plain text and room for long paths and ids."""
    stream = sys.stdout if stream is None else stream
    tty = stream is sys.stdout and sys.stdout.isatty()
    return Console(file=stream, no_color=_no_color() or not tty, highlight=False,
                   soft_wrap=False, width=None if tty else width)


def stdout_console() -> Console:
    return console_for(sys.stdout, width=160)


def stderr_console() -> Console:
    return Console(file=sys.stderr, no_color=_no_color(), highlight=False, stderr=True)


def say(message: str) -> None:
    """A diagnostic line on stderr (never stdout, which carries data)."""
    click.echo(sanitize_terminal(message), err=True)


DEFAULT_LOCK_WAIT = 60.0


def lock_wait_seconds() -> float:
    """How long a command waits for a case another process holds: $TOKENTRAIL_LOCK_WAIT."""
    raw = os.environ.get("TOKENTRAIL_LOCK_WAIT", "")
    try:
        return max(float(raw), 0.0) if raw.strip() else DEFAULT_LOCK_WAIT
    except ValueError:
        raise click.UsageError(f"TOKENTRAIL_LOCK_WAIT must be a number of seconds, not {raw!r}") from None


# Commands that may analyse a Parquet lake in an in-memory working copy (the lake itself is
# never written); any other command that writes refuses a lake.
LAKE_ANALYSE_COMMANDS = ("scan", "tokens", "holders", "trace", "report", "export")


def open_case(path: str | None, *, read_only: bool = False, create: bool = False) -> Case:
    """The case a command works on; waits (saying so on stderr) while another process
    holds it, up to $TOKENTRAIL_LOCK_WAIT seconds. A folder or URL is a Parquet lake
    (`tokentrail export --parquet`): read-only in place, or a working copy for analysis.
    Only `create=True` (ingest, scan with paths) makes a new case file: any other command
    given a path with nothing there fails with "no such case" and creates nothing."""
    from tokentrail.case.store import MEMORY
    from tokentrail.scale.lake import is_lake, open_lake

    if not create and path and path != MEMORY and not is_lake(path) and not os.path.exists(path):
        raise CaseError(f"no such case: {path} (create one with `tokentrail ingest LOGS --db "
                        f"{path}`)")

    if path and is_lake(path):
        command = click.get_current_context(silent=True)
        name = command.info_name if command is not None else None
        if not read_only and name not in LAKE_ANALYSE_COMMANDS:
            raise click.UsageError(f"{path} is a Parquet lake, which is read-only: "
                                   f"`tokentrail {name}` needs a case file (--db FILE)")
        return open_lake(path, read_only=read_only)
    wait = lock_wait_seconds()
    case = Case(path, read_only=read_only, wait=wait,
                on_wait=lambda: say(f"waiting up to {wait:g} s for case {path}: "
                                    "another tokentrail process has it open"))
    if path and path != MEMORY:
        protect(path, "the case database")
        protect(path + ".wal", "the case database's write-ahead log")
    return case


class _Guard:
    keep = False


@contextmanager
def new_case_guard(path: str) -> Iterator[_Guard]:
    """A case file this command creates is removed again unless the command sets
    `guard.keep` (it ingested something): a failed ingest leaves no empty case behind.
    A case that existed before is never touched."""
    from tokentrail.case.store import MEMORY

    existed = path == MEMORY or "://" in path or os.path.exists(path)
    guard = _Guard()
    try:
        yield guard
    finally:
        if not existed and not guard.keep:
            for leftover in (path, f"{path}.wal"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass


db_option = click.option(
    "--db", "db", metavar="FILE", envvar="TOKENTRAIL_DB", show_envvar=True,
    help="Case database (default: $TOKENTRAIL_DB, else ./tokentrail.duckdb), or a Parquet lake "
         "folder or URL written by `tokentrail export --parquet` (read in place).",
)


def output_options(func: F) -> F:
    """--format and -o, shared by every command that prints rows."""
    func = click.option(
        "-o", "--output", "output", metavar="FILE", default="-", show_default=True,
        help="Write to FILE instead of stdout ('-').",
    )(func)
    func = click.option(
        "--format", "fmt", type=click.Choice(ROW_FORMATS), default="table", show_default=True,
        help="Output format.",
    )(func)
    return func


_PROTECTED: dict[tuple[int, int], str] = {}
"""Files this command reads, by (device, inode): -o must not replace them (see protect)."""


def protect(path: str, what: str) -> None:
    """`-o` / `--write-baseline` will refuse to write over `path` (the case database, an
    input log): a typo there would replace the evidence with a report. Paths that do not
    exist, or are not regular files, need nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        _PROTECTED[(st.st_dev, st.st_ino)] = what


def refuse_protected(path: str) -> None:
    """UsageError if writing `path` would replace a file protect() named."""
    try:
        st = os.stat(path)
    except OSError:
        return
    what = _PROTECTED.get((st.st_dev, st.st_ino))
    if what:
        raise UsageError(f"refusing to write {path}: it is {what}")


def forget_protected() -> None:
    """A new command protects its own inputs (an in-process caller runs many commands)."""
    _PROTECTED.clear()


@contextmanager
def open_output(path: str) -> Iterator[Any]:
    """Where -o PATH writes (README "Output files").

    '-' is stdout. A regular file, or nothing, is written atomically: a temp file in the same
    folder renamed over it, so an error or Ctrl-C leaves the old file as it was. A symlink is
    followed and its target written the same way (the link itself is never replaced). A FIFO
    or character device (/dev/stdout, /dev/null, a pipe) is written through in place. A
    folder, socket or block device is refused (exit 2).
    """
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None:
        refuse_protected(target)
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        try:
            fh = open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        with fh:
            yield fh
        return
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file, FIFO or character device"
        raise UsageError(f"cannot write {path}: {kind}")
    folder = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(folder, f".{os.path.basename(target)}.tmp-{os.getpid()}")
    try:
        fh = open(tmp, "x", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with fh:
            yield fh
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(stream: Any, value: Any) -> None:
    """`value` as indented JSON and a newline. The bytes go to the stream's binary buffer when
    it has one: a scan document can be hundreds of MB, and decoding it to str only for the
    text layer to encode it again cost ~0.5 s per 200 MB."""
    data = json_bytes(value, indent=True)
    raw = getattr(stream, "buffer", None)
    if raw is None:
        stream.write(data.decode())
        return
    stream.flush()
    raw.write(data)


def emit_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, output: str,
              *, title: str | None = None) -> None:
    with open_output(output) as stream:
        if fmt == "table":
            table = Table(title=title, show_lines=False, header_style="bold")
            for c in columns:
                table.add_column(cell_text(c), overflow="fold")
            for row in rows:
                table.add_row(*[cell_text(v) for v in row])
            console_for(stream, width=240).print(table)
        else:
            write_rows(columns, rows, fmt, stream)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A byte progress bar on stderr, only for a terminal and without --quiet."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TimeElapsedColumn(), console=stderr_console(), transient=True)
    task = progress.add_task("ingest", total=None)

    def update(name: str, done: int, total: int) -> None:
        label = sanitize_terminal(name)[-40:] if name else "done"
        progress.update(task, description=label, completed=done, total=total or None)

    with progress:
        yield update


policy_option = click.option(
    "--policy", "policy_file", metavar="FILE",
    help="Policy file (default: ./tokentrail.toml when present).",
)


def load_policy_option(path: str | None) -> Any:
    """The policy named by --policy, else ./tokentrail.toml, else the empty policy."""
    from tokentrail.provenance.policy import find_default_policy, resolve_policy

    if path is None and find_default_policy() is not None:
        # a policy changes every classification: never apply one the user did not see
        click.echo("note: using the policy ./tokentrail.toml found in the working directory "
                   "(--policy FILE to choose another)", err=True)
    return resolve_policy(path)
