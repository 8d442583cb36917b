"""Kubernetes TokenRequest logged at RequestResponse level (issue 17 item 3): the issued
service-account JWT in responseObject.status.token is fingerprinted, its claims and pod binding
recorded on the issuance, TT013 raised, and the token itself never stored.

Claims shape: https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/
(bound tokens carry "kubernetes.io": {namespace, pod: {name, uid}, node: {name, uid},
serviceaccount: {name, uid}}); audit Event: tests/fixtures/k8s-audit/README.md line 11.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

AUDIT = Path(__file__).parent / "fixtures" / "k8s-audit" / "audit.log"
JTI = "7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _jwt() -> str:
    claims = {"aud": ["https://kubernetes.default.svc"], "exp": 1715682723, "iat": 1715679123,
              "iss": "https://kubernetes.default.svc", "jti": JTI,
              "sub": "system:serviceaccount:payments:reporter",
              "kubernetes.io": {"namespace": "payments",
                                "node": {"name": "worker-2", "uid": "3b8b5e0e-1111-4a4a-9c9c-000000000002"},
                                "pod": {"name": "reporter-5c6d7f-abcde",
                                        "uid": "9f0e1d2c-2222-4b4b-8d8d-000000000001"},
                                "serviceaccount": {"name": "reporter",
                                                   "uid": "b88b0a13-3333-4c4c-8e8e-000000000003"}}}
    return f"{_b64({'alg': 'RS256', 'kid': 'k'})}.{_b64(claims)}.c2lnbmF0dXJlLW5vdC1yZWFs"


def test_issued_token_recorded_flagged_and_never_stored(tmp_path: Path) -> None:
    event = json.loads(AUDIT.read_text().splitlines()[10])
    token = _jwt()
    event["responseObject"]["status"]["token"] = token
    event["annotations"]["authentication.k8s.io/issued-credential-id"] = f"JTI={JTI}"
    path = tmp_path / "audit.log"
    path.write_text(json.dumps(event) + "\n")
    db = tmp_path / "case.duckdb"
    with Case(str(db)) as case:
        ingest(case, [str(path)])
        rows = case.query("SELECT kind, token_key, token_fp, raw_token_logged, pod, subject "
                          "FROM events")[1]
        fp = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        assert rows == [("issue", JTI, fp, True, "payments/reporter-5c6d7f-abcde",
                         "system:serviceaccount:payments:reporter")]
        analyse(case.con)
        hits = case.query("SELECT token_key FROM findings WHERE rule = 'TT013'")[1]
        assert hits == [(JTI,)]
        text = "".join(str(case.con.execute(f"SELECT * FROM {t}").fetchall())
                       for t in ("events", "rejects", "sources", "findings", "tokens"))
    assert token not in text and token.split(".")[2] not in text
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("case.duckdb*"))
    assert token.encode() not in blob
