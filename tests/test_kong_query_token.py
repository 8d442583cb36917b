"""Kong `?token=` and `session_id` (issue 17 item 7): a credential in the `token` query
parameter is fingerprinted and flagged as a raw token in the log (TT013), never stored; a
`session_id` query parameter is redacted in every stored text.

Record shape: the Kong log plugins' serializer (request.querystring is the parsed query as an
object, request.uri / url as sent): https://docs.konghq.com/hub/kong-inc/file-log/#log-format
and the first record of tests/fixtures/kong/file-log.jsonl (see its README).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest

FIXTURE = Path(__file__).parent / "fixtures" / "kong" / "file-log.jsonl"
TOKEN = "kq7Zp2VfXw9Lr4Tb8Nc3Hd6Jm1Qs5Yg0"  # an opaque token as a query parameter
SESSION = "s3ss10n-4f9a2c7e1b8d6a3f5e0c9b2a"


def test_query_token_fingerprinted_flagged_and_session_id_redacted(tmp_path: Path) -> None:
    record = json.loads(FIXTURE.read_text().splitlines()[0])
    q = f"?token={TOKEN}&session_id={SESSION}"
    record["request"]["uri"] = "/v1/stock" + q
    record["request"]["url"] = "https://api.acme.example:8443/v1/stock" + q
    record["upstream_uri"] = "/v1/stock" + q
    record["request"]["querystring"] = {"token": TOKEN, "session_id": SESSION}
    record.pop("tokentrail", None)  # no preset fields: only what Kong logs by default
    path = tmp_path / "kong.jsonl"
    path.write_text(json.dumps(record) + "\n")
    db = tmp_path / "case.duckdb"
    with Case(str(db)) as case:
        f = ingest(case, [str(path)], format_name="kong").files[0]
        assert (f.events, f.rejects) == (1, 0)
        fp = base64.urlsafe_b64encode(hashlib.sha256(TOKEN.encode()).digest()).rstrip(b"=").decode()
        assert case.query("SELECT kind, token_fp, raw_token_logged FROM events")[1] == [
            ("use", fp, True)]
        analyse(case.con)
        assert case.query("SELECT count(*) FROM findings WHERE rule = 'TT013'")[1] == [(1,)]
        text = "".join(str(case.con.execute(f"SELECT * FROM {t}").fetchall())
                       for t in ("events", "rejects", "findings"))
    assert TOKEN not in text and SESSION not in text
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("case.duckdb*"))
    assert TOKEN.encode() not in blob and SESSION.encode() not in blob
