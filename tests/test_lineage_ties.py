"""Equal timestamps must not make a case's answer depend on thread scheduling or on the order
files were ingested in: two logs that record one token's issuance in the same second (an IdP
and the gateway in front of it, second-precision timestamps) name the same issuing event,
holder and session on every run. Ties go to the lowest event id, the order `event_ids`
lists already use."""

from __future__ import annotations

import json
from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

TS = "2026-11-02T09:00:00Z"


def _issue(holder: str, session: str) -> dict[str, object]:
    return {"ts": TS, "kind": "issue", "token_id": "tok-tie", "client_id": "reports",
            "workload": holder, "session_id": session, "issuer": "https://sso.example"}


def _files(tmp_path: Path) -> list[Path]:
    a = tmp_path / "idp.jsonl"
    a.write_text(json.dumps(_issue("client:reports", "sess-idp")) + "\n")
    b = tmp_path / "gateway.jsonl"
    b.write_text(json.dumps(_issue("client:reports-gw", "sess-gw")) + "\n"
                 + json.dumps({"ts": "2026-11-02T09:00:05Z", "kind": "use", "token_id": "tok-tie",
                               "workload": "client:reports"}) + "\n")
    return [a, b]


def _issuance(files: list[Path]) -> tuple[object, ...]:
    with Case() as case:
        ingest(case, [str(f) for f in files], format_name="tokentrail")
        analyse(case.con, rules=[])
        row = case.con.execute(
            "SELECT issue_event_id, issued_to_holder, issued_session_id FROM tokens "
            "WHERE token_key = 'tok-tie'").fetchone()
        first = case.con.execute(
            "SELECT min(event_id) FROM events WHERE kind = 'issue'").fetchone()[0]
    assert row is not None and row[0] == first
    return tuple(row)


def test_an_issuance_logged_twice_in_one_second_names_the_same_event_whatever_the_file_order(
        tmp_path):
    files = _files(tmp_path)
    # in one of the two orders the file whose event sorts last arrives first: a tie taken by
    # arrival gives two answers
    assert _issuance(files) == _issuance(files[::-1])
