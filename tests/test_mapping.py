"""User mappings (--mapping): the README walkthrough works, and mistakes name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, REPO

from tokentrail import Case
from tokentrail.case.ingest import ingest, validate_mapping
from tokentrail.cli import main
from tokentrail.errors import MappingError
from tokentrail.sources.mapping import load_mapping
from tokentrail.sources.registry import builtin_mappings

CUSTOM = FIXTURES / "custom"


def test_readme_walkthrough_mapping_is_the_tested_file():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert (CUSTOM / "mcp-server.toml").read_text(encoding="utf-8").strip() in readme


def test_user_mapping_ingests_like_a_builtin(case):
    report = ingest(case, [str(CUSTOM / "mcp-server.jsonl")],
                    mapping_file=str(CUSTOM / "mcp-server.toml"))
    assert report.files[0].format == "acme-mcp" and report.events == 2
    _, rows = case.query("select holder_id, token_key, outcome from events order by line")
    assert rows[0] == ("spiffe://acme.example/ns/agents/sa/coder",
                       "8e1d5c0a-31f4-4c52-9d0e-5b5f7c6e2a11", "success")
    assert rows[1][0] == "ip:10.42.9.9" and rows[1][1].startswith("fp:")


@pytest.mark.parametrize(("text", "key", "message"), [
    ('name = "x"\n[record]\na = "VARCHAR"\n[columns]\nts = "r.a"\nholderz = "1"\n',
     "columns.holderz", "unknown column"),
    ('name = "x"\n[record]\na = "VARCHAR"\n[columns]\nts = "r.nosuch"\n',
     "columns.ts", "does not bind"),
    ('name = "x"\n[record]\na = "VARCHAR"\n[columns]\nkind = "1"\n', "columns.ts", "timestamp"),
    ('name = "x"\nrecords = 1\n[record]\na = "VARCHAR"\n[columns]\nts = "r.a"\n', "records",
     "unknown key"),
    ('name = "x"\n[record]\na = 5\n[columns]\nts = "r.a"\n', "record.a", "DuckDB type"),
    ('name = "x"\n[record]\na = "VARCHAR"\n[columns]\nts = "r.a"\n[extra]\nq = "r.zz"\n',
     "extra.q", "does not bind"),
])
def test_mapping_mistakes_name_file_and_key(tmp_path, case, text, key, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(MappingError) as err:
        validate_mapping(case, load_mapping(path))
    assert err.value.key == key and message in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_toml_and_missing_file_exit_3(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    log = FIXTURES / "custom" / "mcp-server.jsonl"
    r = CliRunner().invoke(main, ["ingest", str(log), "--mapping", str(bad)])
    assert r.exit_code == 3 and "invalid TOML" in r.stderr and "bad.toml" in r.stderr
    r = CliRunner().invoke(main, ["ingest", str(log), "--mapping", str(tmp_path / "no.toml")])
    assert r.exit_code == 3 and "not found" in r.stderr


def test_every_builtin_mapping_binds_and_describes_itself():
    with Case() as case:
        for m in builtin_mappings():
            validate_mapping(case, m)
            assert m.sniff.enabled, m.name
            for key in ("token_id", "holder", "issuance", "limits"):
                assert m.provides.get(key), f"{m.name} lacks provides.{key}"


def test_builtin_sniffing_does_not_confuse_formats():
    """Each built-in fixture directory is recognised as its own format and nothing else."""
    expected = {"envoy": "envoy", "keycloak": "keycloak", "okta": "okta",
                "cloudtrail": "cloudtrail", "k8s-audit": "k8s-audit"}
    with Case() as case:
        for folder, fmt in expected.items():
            d = FIXTURES / folder
            if not d.exists():
                continue
            report = ingest(case, [str(d)])
            for f in report.files:
                if f.status in ("ingested", "skipped"):
                    assert f.format == fmt, (Path(f.name).name, f.format)
