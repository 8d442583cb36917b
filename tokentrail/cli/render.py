"""Compact terminal views that fit the terminal: incidents with their findings, timelines.

Width: the terminal's own on a tty; when piped, $COLUMNS if set (else 200, room for grep).
Every line is cut to the width with an ellipsis, so a finding takes exactly two lines whatever
the log content. Severities are coloured on a terminal; NO_COLOR (or a pipe) gives plain text.
Log-derived text goes through cell_text (terminal controls and bidi characters stripped).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from rich.console import Console
from rich.text import Text

from ..output import cell_text

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow",
                  "low": "cyan", "info": "dim"}
CLASS_STYLE = {"stolen": "red", "forwarded": "yellow", "suspicious": "yellow"}
PIPE_WIDTH = 200


def output_width(stream: Any) -> int:
    """The width to fit: the terminal's, else $COLUMNS, else PIPE_WIDTH."""
    env = os.environ.get("COLUMNS", "").strip()
    tty = stream is sys.stdout and sys.stdout.isatty()
    if env.isdigit() and int(env) >= 20:
        return int(env)
    if tty:
        return max(shutil.get_terminal_size((80, 24)).columns, 20)
    return PIPE_WIDTH


def compact_console(stream: Any) -> Console:
    tty = stream is sys.stdout and sys.stdout.isatty()
    no_color = bool(os.environ.get("NO_COLOR")) or not tty
    return Console(file=stream, no_color=no_color, highlight=False, soft_wrap=False,
                   width=output_width(stream), force_terminal=tty and not no_color or None,
                   color_system=None if no_color else "auto")


def _line(console: Console, parts: Sequence[tuple[str, str | None]]) -> None:
    text = Text()
    for chunk, style in parts:
        text.append(chunk, style=style or "")
    text.truncate(console.width, overflow="ellipsis")
    console.print(text, no_wrap=True, overflow="ellipsis", crop=True)


def _short_time(value: str | None) -> str:
    """09:38:05 from an ISO time (the date goes in the header)."""
    if not value:
        return "?"
    t = value.split("T", 1)[-1]
    return t[:8]


def _span(first: str | None, last: str | None) -> str:
    a, b = _short_time(first), _short_time(last)
    return a if a == b else f"{a}-{b}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 1)] + "…"


def print_incidents(stream: Any, incidents: list[dict[str, Any]], findings: list[Any]) -> None:
    """Incidents first, each with its findings on two lines apiece:
    `<severity> <rule> <class> <conf> <token> <file:line>` / `  <title or first reason>`."""
    console = compact_console(stream)
    by_id = {f.id: f for f in findings}
    shown: set[str] = set()
    n_f = len(findings)
    day = next((f.first_seen[:10] for f in findings if f.first_seen), "")
    _line(console, [(f"{len(incidents)} incident(s) from {n_f} finding(s)", "bold"),
                    (f"  {day} UTC" if day else "", None)])
    for inc in incidents:
        members = [by_id[i] for i in inc["findings"] if i in by_id]
        if not members:
            continue
        console.print()
        holders = ", ".join(cell_text(h) for h in inc["holders"]) or "-"
        _line(console, [(inc["id"], "bold"), ("  ", None),
                        (inc["severity"].upper(), SEVERITY_STYLE.get(inc["severity"])),
                        (f"  {_span(inc['first_seen'], inc['last_seen'])}  ", None),
                        (holders, None)])
        if len(members) > 1 and inc["reasons"]:
            _line(console, [("  grouped: ", "dim"), (cell_text(inc["reasons"][0]), "dim")])
        related = inc.get("related") or []
        if related:
            first = related[0]
            more = f" (+{len(related) - 1} more)" if len(related) > 1 else ""
            if inc.get("related_truncated"):
                more = f" (+{len(related) - 1} more listed, and others not listed)"
            _line(console, [("  related: ", "dim"),
                            (cell_text(f"{first['id']}: {first['reason']}{more}"), "dim")])
        for f in members:
            shown.add(f.id)
            _finding_lines(console, f)
    rest = [f for f in findings if f.id not in shown]
    if rest:
        console.print()
        _line(console, [("not in an incident", "bold")])
        for f in rest:
            _finding_lines(console, f)


def _finding_lines(console: Console, f: Any) -> None:
    ev = f.evidence[0] if f.evidence else None
    where = f"{os.path.basename(str(ev['file']))}:{ev['line']}" if ev else ""
    conf = "" if f.confidence is None else f"{f.confidence:.2f}"
    token = cell_text(f.token.get("key") or "")
    head = [("  ", None), (f"{f.severity:<8}", SEVERITY_STYLE.get(f.severity)),
            (f" {f.rule} ", "bold"),
            (f"{f.classification:<10}", CLASS_STYLE.get(f.classification)),
            (f" {conf:<4} ", None)]
    used = 2 + 8 + 7 + 10 + 6
    room = max(console.width - used - len(where) - 1, 12)
    head += [(_fit(token, room).ljust(room), None), (" ", None), (cell_text(where), "dim")]
    _line(console, head)
    reason = f.reasons[0] if f.reasons else ""
    _line(console, [("    ", None), (cell_text(f.title), None),
                    (f": {cell_text(reason)}" if reason else "", "dim")])


def print_timeline(stream: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One event a line: time, kind, status, holder, token, what (method resource path / error)."""
    console = compact_console(stream)
    idx = {c: i for i, c in enumerate(columns)}
    day = ""
    for row in rows:
        ts = row[idx["ts"]]
        ts = ts.astimezone(UTC) if ts is not None else None
        stamp = ts.strftime("%Y-%m-%d") if ts else ""
        if stamp and stamp != day:
            day = stamp
            _line(console, [(f"{day} UTC", "bold")])
        clock = ts.strftime("%H:%M:%S.%f")[:12] if ts else "?" * 12
        kind = str(row[idx["kind"]] or "")
        status = row[idx["status"]]
        failed = row[idx["outcome"]] == "failure" or kind == "deny"
        holder = cell_text(row[idx["holder_id"]] or "-")
        token = cell_text(row[idx["token_key"]] or "-")
        what = " ".join(cell_text(v) for v in (row[idx["method"]], row[idx["resource"]],
                                               row[idx["path"]]) if v)
        if row[idx["error"]]:
            what += f" [{cell_text(row[idx['error']])}]"
        width = console.width
        fixed = 12 + 1 + 10 + 1 + 3 + 1
        rest = max(width - fixed, 30)
        h_w = min(max(len(holder), 12), max(rest * 2 // 5, 12))
        t_w = min(max(len(token), 10), max(rest // 4, 10))
        _line(console, [(clock, "dim"), (" ", None),
                        (f"{kind:<10}", "red" if failed else None), (" ", None),
                        (f"{'' if status is None else status!s:>3}", "red" if failed else None),
                        (" ", None), (_fit(holder, h_w).ljust(h_w), None), (" ", None),
                        (_fit(token, t_w).ljust(t_w), "dim"), (" ", None), (what, None)])
