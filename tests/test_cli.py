"""Every command through click's runner: output streams, formats and documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, write_jsonl

from tokentrail.cli import main

ENVOY = str(FIXTURES / "envoy" / "gateway-access.jsonl")


@pytest.fixture
def run():
    def _run(*args: str, input: str | bytes | None = None):
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return _run


def test_ingest_then_query_the_default_case_from_env(run, tmp_path):
    r = run("ingest", ENVOY)
    assert r.exit_code == 0, r.output
    assert "gateway-access.jsonl" in r.stdout and "envoy" in r.stdout
    assert Path(tmp_path / "case.duckdb").exists()  # $TOKENTRAIL_DB from conftest
    q = run("query", "select token_key, holders from v_token_holders order by token_key",
            "--format", "json")
    rows = json.loads(q.stdout)
    assert {"token_key": "8e1d5c0a-31f4-4c52-9d0e-5b5f7c6e2a11", "holders": 1} in rows


def test_ingest_json_summary_is_machine_readable(run):
    r = run("ingest", ENVOY, "--json", "--quiet")
    data = json.loads(r.stdout)
    assert data["events"] == 6 and data["files"][0]["format"] == "envoy"
    assert data["case"]["tokens"] >= 4


def test_second_ingest_skips_and_exits_zero(run):
    run("ingest", ENVOY, "-q")
    r = run("ingest", ENVOY)
    assert r.exit_code == 0 and "skipped" in r.stdout


def test_unreadable_or_unusable_input_exits_3_naming_the_file(run, tmp_path):
    r = run("ingest", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 3
    assert "missing.jsonl" in r.stderr and "no such file" in r.stderr
    junk = write_jsonl(tmp_path / "junk.jsonl", ["not json", "{broken"])
    r = run("ingest", str(junk), "--format", "envoy")
    assert r.exit_code == 3 and "no usable record" in r.stderr
    assert "Traceback" not in r.output


def test_stdin_dash(run):
    r = run("ingest", "-", "--json", input=Path(ENVOY).read_bytes())
    assert r.exit_code == 0 and json.loads(r.stdout)["files"][0]["name"] == "<stdin>"


def test_usage_errors_exit_2(run):
    assert run("ingest", ENVOY, "--format", "nope").exit_code == 2
    assert run("ingest", ENVOY, "--format", "envoy", "--mapping", "x.toml").exit_code == 2
    assert run("ingest").exit_code == 2
    run("ingest", ENVOY, "-q")
    r = run("query", "selec nothing")
    assert r.exit_code == 2 and "syntax error" in r.stderr


def test_query_without_a_case_is_an_input_error(run, tmp_path):
    r = run("query", "select 1", "--db", str(tmp_path / "none.duckdb"))
    assert r.exit_code == 3 and "no such case" in r.stderr


def test_query_from_stdin_to_csv_file(run, tmp_path):
    run("ingest", ENVOY, "-q")
    out = tmp_path / "out.csv"
    r = run("query", "-", "--format", "csv", "-o", str(out),
            input="select line, kind from events order by line")
    assert r.exit_code == 0 and r.stdout == ""
    assert out.read_text().splitlines()[:2] == ["line,kind", "1,use"]


def test_an_output_that_cannot_be_written_is_a_usage_error_not_a_traceback(run, tmp_path):
    run("ingest", ENVOY, "-q")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    r = run("query", "select 1", "-o", str(blocked / "out.csv"))
    assert r.exit_code == 2 and "cannot write" in r.stderr
    r = run("report", "--html", str(blocked / "report.html"))
    assert r.exit_code == 2 and "cannot write" in r.stderr
    # a missing folder is created, as for --csv DIR
    r = run("report", "--html", str(tmp_path / "new" / "report.html"))
    assert r.exit_code == 0 and (tmp_path / "new" / "report.html").exists()


def test_strict_exits_3_at_first_reject(run, tmp_path):
    log = write_jsonl(tmp_path / "g.jsonl", [json.loads(Path(ENVOY).read_text().splitlines()[0]),
                                             "garbage"])
    r = run("ingest", str(log), "--strict")
    assert r.exit_code == 3 and "g.jsonl:2" in r.stderr


def test_formats_lists_every_builtin_and_prints_a_mapping(run):
    r = run("formats", "--format", "json")
    names = {row["format"] for row in json.loads(r.stdout)}
    assert {"envoy", "tokentrail"} <= names
    assert run("formats", "envoy").stdout.startswith("#")
    cols = json.loads(run("formats", "--columns", "--format", "json").stdout)
    assert any(c["column"] == "holder_id" for c in cols)


def test_table_output_strips_terminal_escapes_from_log_content(run, tmp_path):
    rec = {"start_time": "2026-11-02T09:00:00Z", "response_code": 200, "method": "GET",
           "path": "/x\x1b]0;pwned\x07\x1b[31mred\u202e", "downstream_remote_address": "10.0.0.1:1",
           "token_fp": "abc"}
    run("ingest", str(write_jsonl(tmp_path / "e.jsonl", [rec])), "-q")
    r = run("query", "select path from events")
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
    assert "/x" in r.stdout and "red" in r.stdout


def test_every_command_has_help_with_an_example(run):
    for name, cmd in main.commands.items():
        r = run(name, "--help")
        assert r.exit_code == 0
        assert "Example" in r.stdout, f"{name} --help lacks an example"
        assert cmd.help, f"{name} has no docstring"
    top = run("--help").stdout
    assert "Exit codes" in top and all(n in top for n in main.commands)
