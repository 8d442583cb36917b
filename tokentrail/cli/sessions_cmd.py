"""`tokentrail sessions`: one row per identity-provider session (the `v_sessions` view).

A thin layer: the view holds the logic (case/views.py), so `query "select * from
v_sessions"` in any DuckDB client gives the same rows; this command classifies first so the
worst classification column is filled.
"""

from __future__ import annotations

import click

from tokentrail.case.views import refresh_derived_views

from .common import db_option, emit_rows, output_options, policy_option
from .tokens_cmd import _analysed_case

# What a responder reads first; the full row is in --format json / csv.
_TABLE_COLUMNS = ("session_id", "issuer", "subjects", "first_seen", "last_seen",
                  "tokens_issued", "refreshed", "holders", "networks", "devices",
                  "worst_classification")


@click.command("sessions", epilog="""\b
Examples:
  tokentrail sessions
  tokentrail sessions --format json -o sessions.json
  tokentrail query "select * from v_sessions where worst_classification = 'stolen'"
""")
@db_option
@policy_option
@output_options
def sessions_cmd(db: str | None, policy_file: str | None, fmt: str, output: str) -> None:
    """List every identity-provider session (Keycloak sessionId, Okta externalSessionId, Entra
    sessionId, Auth0 session, JWT sid): its tokens, refresh family, presenters and the worst
    classification among them."""
    with _analysed_case(db, policy_file) as case:
        refresh_derived_views(case.con)
        cols = "*" if fmt != "table" else ", ".join(_TABLE_COLUMNS)
        columns, rows = case.query(f"SELECT {cols} FROM v_sessions "
                                   "ORDER BY first_seen, session_id")
    emit_rows(columns, rows, fmt, output, title="sessions" if fmt == "table" else None)
