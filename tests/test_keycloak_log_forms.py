"""Keycloak events as Keycloak logs them (issue 17 item 2): the jboss-logging event listener's
key=value message inside Keycloak's JSON log format, and JSON events with an ISO timestamp and
flattened detail keys, read to the same events as the admin REST API's form.

Shapes: tests/fixtures/keycloak/README.md (Keycloak "Configuring logging" guide, JSON console
output; keycloak/keycloak JBossLoggingEventListenerProvider).
"""

from __future__ import annotations

from pathlib import Path

from tokentrail import Case
from tokentrail.case.ingest import ingest

KC = Path(__file__).parent / "fixtures" / "keycloak"
COLS = ("date_trunc('millisecond', ts), kind, outcome, token_id, parent_token_key, holder_id, "
        "subject, client_id, issuer, src_ip")


def _read(name: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], str | None]:
    with Case() as case:
        f = ingest(case, [str(KC / name)]).files[0]
        events = case.query(f"SELECT {COLS} FROM events ORDER BY ts")[1]
        rejects = case.query("SELECT line, reason FROM rejects ORDER BY line")[1]
    return events, rejects, f.format


def test_json_log_lines_of_the_jboss_logging_listener_read_as_the_rest_events() -> None:
    expected, _, _ = _read("events.json")
    events, rejects, fmt = _read("json-log.jsonl")
    assert fmt == "keycloak"
    assert events == expected
    # token ids, refresh parents and the client holder come from the message's key=value pairs
    assert ("issue", "onrtac:3f9a1c2e-7b4d-8e6f-a0b1-c2d3e4f5a6b7", "client:web-portal") in [
        (e[1], e[3], e[5]) for e in events]
    assert rejects == [(1, "neither a user event (type) nor an admin event (operationType)")]


def test_events_with_iso_timestamp_and_flattened_details_read_as_the_rest_events() -> None:
    expected, _, _ = _read("events.json")
    events, rejects, fmt = _read("flat.jsonl")
    assert (fmt, rejects) == ("keycloak", [])
    assert events == expected
