"""User-agent families (issue 17 item 5): holder ids from real user agents.

UA strings as AWS documents them for CloudTrail's userAgent field (record contents:
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
lists console.amazonaws.com, signin.amazonaws.com, AWS Internal, the aws-cli and SDK forms),
the AWS SDK user-agent format (https://docs.aws.amazon.com/sdkref/latest/guide/feature-appid.html),
Terraform's AWS provider ("APN/1.0 HashiCorp/1.0 Terraform/..."), Kubernetes client-go's
default ("<binary>/<version> (<os>/<arch>) kubernetes/<commit>") and browsers' documented
strings (MDN, "User-Agent"). Before, `[aws-cli/2...` gave `[aws-cli`, console front ends
`ec2consolefrontend,`, and every browser `mozilla`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tokentrail import Case
from tokentrail.case.ingest import ingest
from tokentrail.case.sqlmacros import install_macros

DATASET = Path(__file__).parents[2] / "shared" / "datasets" / "aws-cloudtrail"

CASES = [
    ("[aws-cli/2.13.5 Python/3.11.4 Darwin/22.6.0 exe/x86_64 prompt/off command/s3.ls]", "aws-cli"),
    ("aws-cli/1.29.0 Python/3.8.8 Linux/4.14 botocore/1.31.0", "aws-cli"),
    ("ec2consolefrontend, aws-internal/3 aws-sdk-java/1.12.570 Linux/5.10 "
     "OpenJDK_64-Bit_Server_VM/25.382-b06 java/1.8.0_382 vendor/Oracle_Corporation", "aws-console"),
    ("console.amazonaws.com", "aws-console"),
    ("signin.amazonaws.com", "aws-console"),
    ("AWS Internal", "aws-console"),
    ("S3Console/0.4, aws-internal/3 aws-sdk-java/1.11.1030", "aws-console"),
    ("Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.2 lang/python#3.11.6 Botocore/1.34.0", "boto3"),
    ("Botocore/1.29.0 Python/3.9.1 Linux/5.10", "botocore"),
    ("aws-sdk-go-v2/1.32.3 os/linux lang/go#1.23.1 md/GOOS#linux md/GOARCH#amd64", "aws-sdk-go-v2"),
    ("aws-sdk-java/2.20.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17.0.8", "aws-sdk-java"),
    ("aws-sdk-js/3.400.0 ua/2.0 os/linux#5.10 lang/js md/nodejs#18.17.0 api/s3#3.400.0", "aws-sdk-js"),
    ("APN/1.0 HashiCorp/1.0 Terraform/1.5.7 (+https://www.terraform.io) terraform-provider-aws/5.17.0 "
     "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.21.0", "terraform"),
    ("kubectl/v1.29.0 (linux/amd64) kubernetes/3f7a50f", "kubectl"),
    ("kube-controller-manager/v1.29.0 (linux/amd64) kubernetes/3f7a50f", "kube-controller-manager"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", "chrome"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0", "edge"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15", "safari"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "firefox"),
    ("curl/8.4.0", "curl"),
    ("python-requests/2.31.0", "python-requests"),
    ("okhttp/4.12.0", "okhttp"),
    ("-", None),
    ("", None),
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    install_macros(c)
    return c


@pytest.mark.parametrize(("ua", "family"), CASES)
def test_family(con: duckdb.DuckDBPyConnection, ua: str, family: str | None) -> None:
    assert con.execute("SELECT tt_ua_family(?)", [ua]).fetchone()[0] == family


def test_one_console_session_is_one_holder(tmp_path: Path) -> None:
    """One console user at one address: the console's front ends write different user agents
    for one session; they are one holder, not several (TT014 fired on them)."""
    base = {"eventVersion": "1.09", "eventSource": "s3.amazonaws.com", "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.20", "eventType": "AwsApiCall",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAQCONSOLESESSION1",
                             "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
                             "accountId": "111122223333"}}
    uas = ["console.amazonaws.com", "S3Console/0.4, aws-internal/3 aws-sdk-java/1.11.1030",
           "ec2consolefrontend, aws-internal/3 aws-sdk-java/1.12.570 Linux/5.10",
           "AWS Internal"]
    records = [{**base, "eventTime": f"2026-11-02T09:0{i}:00Z", "eventName": "ListBuckets",
                "eventID": f"e{i}", "userAgent": ua} for i, ua in enumerate(uas)]
    path = tmp_path / "ct.json"
    path.write_text(json.dumps({"Records": records}))
    case = Case()
    ingest(case, [str(path)])
    assert case.query("SELECT DISTINCT holder_id FROM events")[1] == [
        ("ip:198.51.100.20/aws-console",)]


@pytest.mark.skipif(not DATASET.exists(), reason="shared dataset not present")
def test_real_sdk_user_agent_in_dataset() -> None:
    case = Case()
    ingest(case, [str(p) for p in sorted(DATASET.glob("*.json"))])
    holders = {r[0] for r in case.query("SELECT DISTINCT holder_id FROM events "
                                        "WHERE user_agent LIKE 'aws-sdk-go-v2/%'")[1]}
    assert holders and all(h.endswith("/aws-sdk-go-v2") for h in holders)
