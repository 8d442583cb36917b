"""The shipped sample logs as an end-to-end test: tokentrail's conclusions against EXPECTED.json.

sample-logs/EXPECTED.json is written from the story (sample-logs/README.md, "Incidents"), not
from tokentrail's output: for every (token, holder) pair that presented a token, the class a
careful responder gives it, and every finding a correct tool reports. Both precision and recall
must be 1.0; on failure the message lists every difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import REPO

from tokentrail import Case
from tokentrail.analyse import Analysis, analyse
from tokentrail.case.ingest import ingest

SAMPLE = REPO / "sample-logs"
EXPECTED = json.loads((SAMPLE / "EXPECTED.json").read_text(encoding="utf-8"))

Triple = tuple[str | None, str | None, str | None]


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[Case, Analysis]]:
    with Case() as case:
        report = ingest(case, [str(SAMPLE)])
        logs = [f for f in report.files if not f.name.endswith("EXPECTED.json")]
        assert logs and all(f.status == "ingested" and f.rejects == 0 for f in logs), logs
        yield case, analyse(case.con)


def score(got: set[Triple], want: set[Triple]) -> tuple[float, float]:
    hit = len(got & want)
    return (hit / len(got) if got else 1.0), (hit / len(want) if want else 1.0)


def differences(got: set[Triple], want: set[Triple], labels: tuple[str, str, str],
                why: dict[Triple, str]) -> str:
    def show(t: Triple) -> str:
        return ", ".join(f"{k}={v}" for k, v in zip(labels, t, strict=True))

    lines = [f"missing (expected, not reported):  {show(t)}  -- {why.get(t, '')}"
             for t in sorted(want - got, key=str)]
    lines += [f"unexpected (reported, not expected): {show(t)}" for t in sorted(got - want, key=str)]
    return "\n".join(lines)


def test_every_pair_is_classified_as_the_story_says(scanned):
    case, _ = scanned
    _, rows = case.query("SELECT token_key, holder_id, classification FROM token_holders")
    got: set[Triple] = {tuple(r) for r in rows}  # type: ignore[misc]
    want: set[Triple] = {(p["token_key"], p["holder_id"], p["classification"])
                         for p in EXPECTED["pairs"]}
    why = {(p["token_key"], p["holder_id"], p["classification"]): p["why"]
           for p in EXPECTED["pairs"]}
    precision, recall = score(got, want)
    assert (precision, recall) == (1.0, 1.0), (
        f"pairs: precision {precision:.3f}, recall {recall:.3f}\n"
        + differences(got, want, ("token_key", "holder_id", "classification"), why))


def test_every_finding_and_only_those(scanned):
    _, analysis = scanned
    got: set[Triple] = {(f.rule, f.token.get("key"), f.holder.get("id")) for f in analysis.findings}
    want: set[Triple] = {(f["rule"], f["token_key"], f["holder_id"]) for f in EXPECTED["findings"]}
    why = {(f["rule"], f["token_key"], f["holder_id"]): f["why"] for f in EXPECTED["findings"]}
    precision, recall = score(got, want)
    assert (precision, recall) == (1.0, 1.0), (
        f"findings: precision {precision:.3f}, recall {recall:.3f}\n"
        + differences(got, want, ("rule", "token_key", "holder_id"), why))


def test_expected_file_is_consistent():
    """EXPECTED.json names only the fixed classes and rules that exist."""
    from tokentrail.provenance.classify import CLASSES
    from tokentrail.rules import load_rules

    rules = {r.id for r in load_rules()}
    assert {p["classification"] for p in EXPECTED["pairs"]} <= set(CLASSES)
    assert {f["rule"] for f in EXPECTED["findings"]} <= rules
    keys = [(p["token_key"], p["holder_id"]) for p in EXPECTED["pairs"]]
    assert len(keys) == len(set(keys)), "one class per (token, holder) pair"


SEVERITY = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
LOOKALIKES = {"SSO to several apps", "admin console and API client", "two devices",
              "roaming between carrier addresses", "kept alive by refreshes", "corporate proxy",
              "retries"}


def test_benign_lookalikes_are_not_flagged_above_low(scanned):
    """Issue 11.5: each benign look-alike of the story (EXPECTED.json "lookalikes", in the okta
    and keycloak files) is neither stolen / forwarded / suspicious nor behind any finding above
    low, and every reason of its pairs names checkable evidence."""
    case, analysis = scanned
    stories = EXPECTED["lookalikes"]
    names = " | ".join(s["name"] for s in stories)
    assert all(kind in names for kind in LOOKALIKES), names
    assert {s["id"][0] for s in stories} == {"O", "K"}  # Okta and Keycloak both
    for story in stories:
        assert story["pairs"], story["id"]
        for p in story["pairs"]:
            rows = case.query("SELECT classification, reasons FROM token_holders "
                              "WHERE token_key = ? AND holder_id = ?",
                              [p["token_key"], p["holder_id"]])[1]
            assert rows, (story["id"], p)
            cls, reasons = rows[0]
            assert cls in ("owner", "delegate", "transport"), (story["id"], p, cls, reasons)
            loud = [f.rule for f in analysis.findings if f.token.get("key") == p["token_key"]
                    and SEVERITY.get(f.severity, 9) > SEVERITY["low"]]
            assert not loud, (story["id"], p, loud)
