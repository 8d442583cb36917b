"""One answer per (token, holder) pair (issue 17 item 6): a finding's classification is the
pair's classification in token_holders. TT016 (instance credentials off their instance) used
to say `stolen` while token_holders said `unknown` 0.3 for the same pair.

Data: tests/fixtures/cloudtrail/records.json (CloudTrail record schema, see its README):
record 10 uses the instance-profile key of record 1 from 203.0.113.77.
"""

from __future__ import annotations

from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

FIXTURE = Path(__file__).parent / "fixtures" / "cloudtrail" / "records.json"
NODE_KEY = "ASIAQNODEEXAMPLE0001"


def test_instance_credentials_off_instance_agree_with_token_holders() -> None:
    case = Case()
    ingest(case, [str(FIXTURE)])
    analyse(case.con)
    findings = case.query(
        "SELECT holder_id, classification, confidence FROM findings "
        "WHERE rule = 'TT016' AND token_key = ?", [NODE_KEY])[1]
    assert findings, "TT016 must fire on the instance key used from a public address"
    for holder_id, cls, conf in findings:
        pair = case.query("SELECT classification, confidence, reasons FROM token_holders "
                          "WHERE token_key = ? AND holder_id = ?", [NODE_KEY, holder_id])[1]
        assert pair and pair[0][0] == cls == "stolen", (holder_id, pair)
        assert pair[0][1] == conf == 0.9
        assert any("203.0.113.77" in r for r in pair[0][2])
    # every finding of every rule whose rule class is stolen agrees with its pair
    bad = case.query(
        "SELECT f.rule, f.holder_id, th.classification FROM findings f JOIN token_holders th "
        "USING (token_key, holder_id) WHERE f.rule = 'TT016' "
        "AND th.classification <> f.classification")[1]
    assert bad == []
    # the instance's own private-address use stays the owner's / not stolen
    own = case.query("SELECT classification FROM token_holders WHERE token_key = ? "
                     "AND holder_id LIKE 'ip:10.0.1.23%'", [NODE_KEY])[1]
    assert own and all(c != "stolen" for (c,) in own)
