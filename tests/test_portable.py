"""`tokentrail rules export --dialect ...`: the scan's SQL transpiled for other engines."""

from __future__ import annotations

import json

import duckdb
import pytest
import sqlglot
from click.testing import CliRunner

from tokentrail.case.sqlmacros import install_macros
from tokentrail.cli import main
from tokentrail.provenance.netmatch import install_net_macros, ip_key
from tokentrail.rules import load_rules
from tokentrail.rules.model import rule_from_dict
from tokentrail.scale import portable

RULE_IDS = [r.id for r in load_rules()]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("dialect", portable.DIALECTS)
def test_rules_export_parses_back_in_its_dialect_and_names_what_it_cannot_translate(dialect):
    r = run("rules", "export", "--dialect", dialect, "--format", "json")
    assert r.exit_code == 0, r.output
    statements = json.loads(r.stdout)
    stages = [s["stage"] for s in statements]
    assert stages.index("policy") < stages.index("lineage") < stages.index("classify") < stages.index("rules")
    assert [s["rule"] for s in statements if s["stage"] == "rules"] == RULE_IDS
    for s in statements:
        if s["error"] is None:
            for stmt in sqlglot.parse(s["sql"], read=dialect):
                assert stmt is not None
            # tokentrail's DuckDB macros are inlined, not left for the engine to find
            assert "tt_" not in s["sql"].lower().replace("_tt_", ""), s["name"]
        else:
            assert s["sql"] is None and len(s["error"]) > 20, s
            # named on stderr with the reason
            assert f"{s['name']}: {s['error']}" in r.stderr
    # the script form holds the same statements, untranslatable ones as comments
    text = run("rules", "export", "--dialect", dialect).stdout
    for s in statements:
        if s["rule"]:
            assert f"-- rule {s['rule']} (" in text
        if s["error"]:
            assert f"-- NOT TRANSLATED: {s['error']}" in text


def test_spark_trino_bigquery_get_every_statement_and_snowflake_names_the_interval_rules():
    for dialect in ("spark", "trino", "bigquery"):
        failed = [(t.step.name, t.error) for t in portable.export(dialect).failed]
        assert failed == [], (dialect, failed)
    snowflake = {t.step.name: t.error for t in portable.export("snowflake").failed}
    assert "TT007" in snowflake and "interval" in snowflake["TT007"]
    assert "TT001" not in snowflake  # a plain rule translates


def test_a_user_rule_calling_an_unknown_macro_is_named_with_the_reason(tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "X1.toml").write_text(
        'id = "X1"\ntitle = "t"\nseverity = "info"\nclassification = "unknown"\ndescription = "d"\n'
        'sql = """SELECT token_key, holder_id, first_seen, last_seen, count, event_ids, reasons '
        'FROM token_holders WHERE tt_my_own_udf(holder_id)"""\n')
    r = run("rules", "export", "--dialect", "spark", "--rules", str(d))
    assert r.exit_code == 0
    assert "not translated to spark: X1: calls tt_my_own_udf" in r.stderr
    assert "-- NOT TRANSLATED: calls tt_my_own_udf" in r.stdout


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    install_macros(con)
    install_net_macros(con)
    return con


@pytest.mark.parametrize("address", ["10.42.1.33", "203.0.113.45", "::1", "fe80::1%eth0",
                                     "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1", "[2001:db8::1]",
                                     "255.090.254.5", "10.0.0.256", "not an address", "1::2::3"])
def test_inlined_macros_compute_what_the_macros_compute(address):
    """The inlining is checked in DuckDB itself: the macro-free SQL gives the macro's answer
    (and Python's ipaddress-based key)."""
    con = _duck()
    lit = "'" + address.replace("'", "''") + "'"
    inlined = portable.inline_macros(sqlglot.parse_one(f"SELECT tt_ip_key({lit})", read="duckdb"))
    assert "tt_" not in inlined.sql("duckdb").replace("_tt", "")
    got = con.execute(inlined.sql("duckdb")).fetchone()[0]
    assert got == con.execute(f"SELECT tt_ip_key({lit})").fetchone()[0] == ip_key(address)


def test_rewrites_keep_duckdb_semantics():
    con = _duck()
    cases = [
        "SELECT tt_aud_covers(['api://Files/'], ['files'])",
        "SELECT tt_aud_covers(['a', 'b'], ['a', 'b', 'c'])",
        "SELECT tt_aud_covers(['https://repo-api.acme.example/'], ['repo-api'])",
        "SELECT tt_holder_ip('ip:10.1.2.3/curl')",
    ]
    for sql in cases:
        tree = portable.inline_macros(sqlglot.parse_one(sql, read="duckdb"))
        rewritten = portable._post_order(tree, portable._generic("trino")).sql("duckdb")
        assert con.execute(rewritten).fetchone() == con.execute(sql).fetchone(), sql
    # UPDATE ... FROM as the rows of the updated table, DELETE as the rows that remain
    con.execute("CREATE TABLE e AS SELECT * FROM (VALUES ('fp:a', 'a'), ('fp:b', NULL), ('k', 'c')) "
                "v(token_key, token_fp)")
    update = ("UPDATE e SET token_key = m.id FROM (SELECT 'a' AS fp, 'jti-1' AS id) m "
              "WHERE e.token_key = 'fp:' || m.fp")
    as_select = portable.update_as_select(update, ["token_key", "token_fp"]).sql("duckdb")
    expected = con.execute(as_select + " ORDER BY 1").fetchall()
    con.execute(update)
    assert con.execute("SELECT * FROM e ORDER BY 1").fetchall() == expected
    remaining = con.execute(portable.delete_as_select("DELETE FROM e WHERE token_fp IS NULL").sql("duckdb")
                            + " ORDER BY 1").fetchall()
    assert remaining == [("jti-1", "a"), ("k", "c")]


def test_every_rule_and_step_of_the_pipeline_is_recorded_from_the_engine_itself():
    steps = portable.pipeline()
    targets = [s.target for s in steps if s.stage == "lineage"]
    assert {"events", "tokens", "links", "token_holders"} <= set(targets)
    assert [s.target for s in steps if s.stage == "classify"][-1] == "token_holders"
    assert [s.rule.id for s in steps if s.stage == "rules"] == RULE_IDS
    sql = "SELECT * EXCLUDE (reasons), reasons FROM token_holders"
    rule = rule_from_dict({"id": "X", "title": "t", "severity": "low", "classification": "owner",
                           "description": "d", "sql": sql}, "x.toml")
    step = [s for s in portable.pipeline(rules=[rule]) if s.stage == "rules"][0]
    assert "EXCLUDE" not in step.sql.upper() and '"holder_id"' in step.sql  # named by DuckDB
