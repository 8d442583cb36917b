"""Fill the report template and write the file: the jinja environment (autoescape, visible
control characters, strict undefined), the inline assets and their CSP hashes, the atomic write."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import jinja2
from markupsafe import Markup

from tokentrail.rules.findings import Finding

from ... import __version__
from .data import MAX_ROWS, coverage, finding_view, holder_table, incident_views, sorted_findings, token_table
from .graph import delegation_graph
from .text import CLASS_COLOURS, LIFECYCLE_COLOURS, SEVERITIES, finalize, ts_text
from .timeline import timeline

TEMPLATES = Path(__file__).parent.parent / "templates"
TEMPLATE = "report.html.j2"
MAX_TIMELINES = 40


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml", "j2"),
                                            default_for_string=True, default=True),
        finalize=finalize, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["tstext"] = ts_text
    return env


@cache
def _asset(name: str) -> tuple[Markup, str]:
    """A static stylesheet or script to inline, and its CSP hash. Our own file, not log data."""
    body = (TEMPLATES / name).read_text(encoding="utf-8")
    assert "</" not in body, f"{name} must not contain '</'"
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return Markup(body), f"'sha256-{digest}'"


def render_html_report(con: duckdb.DuckDBPyConnection, *, findings: list[Finding],
                       generated: datetime | None = None,
                       incidents: Sequence[Any] | None = None) -> str:
    """The report as one HTML string (see `write_html_report`); it opens with the incidents
    (tokentrail.rules.incidents) when they are given."""
    ordered = sorted_findings(findings)
    flagged: dict[str, dict[str, list[str]]] = {}
    for f in ordered:
        key = f.token.get("key")
        if key:
            rules = flagged.setdefault(key, {}).setdefault(f.holder.get("id") or "", [])
            if f.rule not in rules:
                rules.append(f.rule)
    timelines = []
    for key in list(flagged)[:MAX_TIMELINES]:
        tl = timeline(con, key, flagged[key])
        if tl is not None:
            timelines.append(tl)
    tokens, tokens_total = token_table(con)
    holder_cols, holders, holders_total = holder_table(con)
    css, css_hash = _asset("report.css")
    js, js_hash = _asset("report.js")
    views = [finding_view(f) for f in ordered]
    by_sev = [(s, sum(1 for v in views if v["severity"] == s)) for s in SEVERITIES]
    return _environment().get_template(TEMPLATE).render(
        version=__version__,
        generated=ts_text(generated or datetime.now(UTC)),
        css=css, js=js, csp=f"default-src 'none'; style-src {css_hash}; script-src {js_hash}; "
                            "img-src data:; base-uri 'none'; form-action 'none'",
        cov=coverage(con), findings=views, by_sev=by_sev,
        incidents=incident_views(incidents or [], ordered),
        timelines=timelines, timelines_total=len(flagged), max_timelines=MAX_TIMELINES,
        graph=delegation_graph(con, ordered), class_colours=CLASS_COLOURS,
        lifecycle_colours=LIFECYCLE_COLOURS,
        tokens=tokens, tokens_total=tokens_total,
        holder_cols=holder_cols, holders=holders, holders_total=holders_total, max_rows=MAX_ROWS,
    )


def write_html_report(con: duckdb.DuckDBPyConnection, path: str, *, findings: list[Finding],
                      incidents: Sequence[Any] | None = None) -> None:
    """Write the report to `path` atomically: a temporary file beside it, then a rename, so a
    reader never sees half a report and a failed run leaves the old one in place."""
    html = render_html_report(con, findings=findings, incidents=incidents)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)  # like --csv DIR
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
