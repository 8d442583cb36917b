"""Issue 11.3: lineage aliases and inferred exchange parents (tests/fixtures/keycloak-lineage).

A refresh presents the refresh token minted beside an access token; the refreshed token's
parent is that access token, so issue -> refresh -> refresh -> use is one lineage. A
TOKEN_EXCHANGE whose subject token Keycloak does not log gets the latest earlier issuance of
the same session and subject as its parent, marked inferred; never across sessions/subjects.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, cli_ingest

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.cli import main
from tokentrail.provenance.trace import trace

DIR = FIXTURES / "keycloak-lineage"
AT1 = "3f9a1c2e-7b4d-4e6f-a0b1-c2d3e4f5a6b7"
RT1 = "8c0a9b1e-2d3f-4a5b-9c6d-7e8f9a0b1c2d"
AT2 = "9e8d7c6b-5a49-4827-9605-f4e3d2c1b0a9"
AT3 = "c4b3a291-8f7e-4d6c-b5a4-9382716f5e4d"
XT1 = "e1d2c3b4-a596-4877-8695-a4b3c2d1e0f9"
AT9 = "7b6a5948-3726-4150-9f8e-7d6c5b4a3928"
XT9 = "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706"
XT3 = "a8b7c6d5-e4f3-4a2b-9c1d-0e9f8a7b6c5d"
S1 = "q7Y8IQLk-8uJWuPcijrV6GeS"


@pytest.fixture(scope="module")
def case():
    with Case() as c:
        ingest(c, [str(DIR / "events.json")], format_name="keycloak")
        ingest(c, [str(DIR / "gateway.jsonl")], format_name="tokentrail")
        analyse(c.con)
        yield c


def _links(case):
    rows = case.query("SELECT child_key, parent_key, kind, basis, evidence FROM links")[1]
    return {r[0]: r[1:] for r in rows}


def test_refresh_parent_is_the_access_token_minted_with_the_refresh_token(case):
    links = _links(case)
    assert links[AT2][:3] == (AT1, "refresh", "alias")
    assert links[AT3][:3] == (AT2, "refresh", "alias")
    # the evidence names the refresh token id a responder finds in the raw log
    assert RT1 in links[AT2][3] and AT1 in links[AT2][3]
    parents = dict(case.query("SELECT token_key, parent_token_key FROM tokens")[1])
    assert parents[AT2] == AT1 and parents[AT3] == AT2


def test_exchange_parent_is_inferred_within_session_and_subject(case):
    links = _links(case)
    parent, kind, basis, evidence = links[XT1]
    assert (parent, kind, basis) == (AT3, "exchange", "inferred")
    assert evidence.startswith("inferred") and S1 in evidence
    # bob's exchange, later than alice's AT3 and by the same client, takes bob's token
    assert links[XT9][:3] == (AT9, "exchange", "inferred")
    # an exchange in a session with no issuance in the case: nothing is inferred across
    # sessions, even though the same user has tokens in another one
    assert XT3 not in links
    # inferred parents are not logged facts: tokens.parent_token_key stays empty for them
    parents = dict(case.query("SELECT token_key, parent_token_key FROM tokens")[1])
    assert parents[XT1] is None


def test_trace_shows_issue_refresh_exchange_as_one_lineage(case):
    result = trace(case.con, XT1)
    assert result["ancestors"] == [AT3, AT2, AT1]
    tree = result["tree"]
    assert tree["key"] == AT1
    at2 = tree["children"][0]
    assert at2["key"] == AT2 and at2["link"]["basis"] == "alias"
    xt1 = at2["children"][0]["children"][0]
    assert xt1["key"] == XT1 and xt1["link"]["basis"] == "inferred"
    assert "inferred" in json.dumps(result)


def test_trace_cli_marks_the_inferred_edge(tmp_path):
    db = str(tmp_path / "c.duckdb")
    cli_ingest(db, (DIR / "events.json", "keycloak"), (DIR / "gateway.jsonl", "tokentrail"))
    runner = CliRunner()
    r = runner.invoke(main, ["trace", AT2, "--db", db], env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert f"exchange (inferred) token {XT1}" in r.output
    assert f"refresh token {AT2}" in r.output
    r = runner.invoke(main, ["trace", XT1, "--db", db, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert '"basis": "inferred"' in r.output
