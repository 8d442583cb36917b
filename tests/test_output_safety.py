"""Hostile log content in exports: spreadsheet formulas and terminal control sequences."""

import csv
import io

from tokentrail.output import csv_cell, rows_to_text, sanitize_terminal
from tokentrail.redact import excerpt, redact_text


def test_csv_formulas_are_neutralised_and_quoting_survives_a_round_trip():
    hostile = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx",
               "a,b", 'say "hi"', "line1\nline2", "plain"]
    text = rows_to_text(["v"], [(h,) for h in hostile], "csv")
    back = [r[0] for r in csv.reader(io.StringIO(text))][1:]
    assert back[:6] == ["'" + h for h in hostile[:6]]
    assert back[6:] == hostile[6:]
    assert csv_cell(None) == "" and csv_cell(3) == "3"


def test_terminal_text_loses_escapes_controls_and_bidi():
    s = "ok\x1b[2J\x1b]8;;http://x\x07link\x1b]8;;\x07\u202etxt.exe\u2066\x00\x7f\x9b"
    clean = sanitize_terminal(s)
    assert clean == "oklinktxt.exe"


def test_redaction_covers_tokens_in_every_usual_spelling():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
    texts = [f"Authorization: Bearer {jwt}", f'{{"access_token": "{jwt}"}}',
             "GET /cb?code=abc123&access_token=opaqueTOKEN123456 HTTP/1.1",
             "dpop proof: DPoP Zm9vYmFyYmF6cXV4", '{"refresh_token":"8xLOxBtZp8"}',
             f"prefix {jwt[:30]}"]
    for t in texts:
        out = redact_text(t)
        assert jwt[:20] not in out and "opaqueTOKEN" not in out and "8xLOxBtZp8" not in out
        assert "Zm9vYmFyYmF6cXV4" not in out


def test_excerpt_redacts_before_truncating():
    jwt = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiJ" + "a" * 400 + ".sig"
    out = excerpt("x" * 230 + jwt, limit=240)
    assert "eyJzdWIiOiJ" not in out and len(out) <= 241


def test_okta_state_tokens_and_hints_in_query_strings_are_redacted():
    out = redact_text("/login/step-up/redirect?stateToken=02.id.Xy8gT2s&id_token_hint=abc.def.ghi")
    assert "02.id.Xy8gT2s" not in out and "abc.def.ghi" not in out
