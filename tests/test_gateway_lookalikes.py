"""Gateway look-alikes (tests/fixtures/gateway-lookalikes/README.md): ordinary traffic of
replicas, egress pools, retries and roaming devices is not concurrent theft; strangers are."""

from __future__ import annotations

import pytest
from conftest import REPO

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

FIXTURES = REPO / "tests" / "fixtures" / "gateway-lookalikes"


def _scan(folder: str) -> tuple[list, dict]:
    with Case() as case:
        ingest(case, [str(FIXTURES / folder)])
        findings = analyse(case.con).findings
        pairs = {(h, c) for h, c in case.con.execute(
            "SELECT holder_id, classification FROM token_holders").fetchall()}
    return findings, dict(pairs)


@pytest.fixture(scope="module")
def benign():
    return _scan("benign")


@pytest.fixture(scope="module")
def attack():
    return _scan("attack")


def test_replicas_egress_pool_and_retries_raise_nothing(benign):
    findings, pairs = benign
    quiet = ("10.42.", "203.0.113.")
    assert not [f for f in findings if (f.holder.get("id") or "").startswith("ip:" + quiet[0])
                or (f.holder.get("id") or "").startswith("ip:" + quiet[1])]
    assert pairs["ip:10.42.3.12/reports-worker"] in ("suspicious", "owner")
    assert pairs["ip:203.0.113.8/chrome"] in ("suspicious", "owner")


def test_a_device_moving_between_networks_is_not_concurrent_use(benign):
    findings, _ = benign
    assert not [f for f in findings if f.rule == "TT015"]


def test_a_phone_between_carrier_addresses_is_a_handover_not_theft(benign):
    findings, pairs = benign
    phone = [h for h in pairs if h.endswith("/corpapp")]
    assert len(phone) == 4
    assert not [f for f in findings if (f.holder.get("id") or "").endswith("/corpapp")
                or f.rule == "TT014"]
    assert pairs["ip:172.58.33.190/corpapp"] == "suspicious"
    with Case() as case:
        ingest(case, [str(FIXTURES / "benign")])
        analyse(case.con)
        reason = case.con.execute("SELECT reasons[1] FROM token_holders "
                                  "WHERE holder_id = 'ip:172.56.2.77/corpapp'").fetchone()[0]
    assert reason.startswith("moved networks") and "ip:172.58.10.4/corpapp" in reason


def test_a_stranger_beside_the_replicas_and_a_replayed_browser_token_are_flagged(attack):
    findings, pairs = attack
    by_holder = {(f.rule, f.holder.get("id")) for f in findings}
    assert ("TT015", "ip:10.42.9.77/curl") in by_holder
    assert ("TT004", "ip:198.18.77.4/python-requests") in by_holder
    assert pairs["ip:198.18.77.4/python-requests"] == "stolen"
