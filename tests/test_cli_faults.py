"""Issue 13: the CLI as a CI job or a new user meets it, in a real subprocess.

Ctrl-C, a full disk, odd `-o` targets, missing cases and SQL that tries to leave the case: each
gives a documented exit code, one line on stderr (never a traceback) and touches no file it
must not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample-logs"
ENVOY = ROOT / "tests" / "fixtures" / "envoy" / "gateway-access.jsonl"


def tt(*args: str, cwd: Path, stdout: int | None = subprocess.PIPE, timeout: float = 240,
       **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TOKENTRAIL_DB"}
    env.update(NO_COLOR="1", COLUMNS="200", TOKENTRAIL_LOCK_WAIT="0")
    return subprocess.run([sys.executable, "-m", "tokentrail", *args], cwd=cwd, env=env,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          **kw)  # type: ignore[call-overload]


def clean(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    assert "Traceback" not in (r.stdout or "")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture(scope="module")
def built_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("built")
    r = tt("ingest", str(SAMPLE), "--db", str(folder / "case.duckdb"), "-q", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "case.duckdb"


@pytest.fixture
def case_db(built_case: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "case.duckdb"
    shutil.copy(built_case, dest)
    return dest


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# 1. Ctrl-C ---------------------------------------------------------------------------------

def test_sigint_during_a_long_query_exits_130_with_one_line_and_leaves_the_case(case_db, tmp_path):
    before = digest(case_db)
    env = {k: v for k, v in os.environ.items() if k != "TOKENTRAIL_DB"}
    slow = "select sum(hash(range) % 7) from range(100000000000)"
    proc = subprocess.Popen([sys.executable, "-m", "tokentrail", "query", slow, "--db",
                             str(case_db)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a terminal's Ctrl-C reaches a foreground process whose SIGINT is
                            # the default; a CI runner may start the tests with it ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Wait until DuckDB is running the query (the process has used more CPU than starting up
    # takes), then ^C: DuckDB itself never looks for signals while it computes.
    deadline = time.monotonic() + 120
    while cpu_seconds(proc.pid) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "interrupted"
    assert out == ""
    assert digest(case_db) == before
    assert listing(tmp_path) == {"case.duckdb"}


# 2. Full disk, broken pipe -------------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [
    ("query", "select * from events"),
    ("tokens", "--format", "csv"),
    ("scan", "--format", "sarif"),
    ("scan",),
    ("trace", "ASIALN5YQ6SWF73864KW"),
])
def test_stdout_on_a_full_disk_is_exit_3_with_the_reason(case_db, tmp_path, args):
    with open("/dev/full", "w") as full:
        r = tt(*args, "--db", str(case_db), cwd=tmp_path, stdout=full)
    clean(r)
    assert r.returncode == 3, r.stderr
    assert "no space left on device" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # the error (scan adds its summary line)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_ingest_summary_to_a_full_disk_is_exit_3(tmp_path):
    with open("/dev/full", "w") as full:
        r = tt("ingest", str(ENVOY), "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path, stdout=full)
    clean(r)
    assert r.returncode == 3 and "no space left on device" in r.stderr


def char_device(path: Path, minor: int) -> Path:
    """A private copy of /dev/null (1, 3) or /dev/full (1, 7): a bug here must not replace the
    machine's own device nodes."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return path


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


@root_only
def test_o_full_device_writes_through_and_leaves_the_device_node(case_db, tmp_path):
    full = char_device(tmp_path / "full", 7)
    r = tt("tokens", "--db", str(case_db), "-o", str(full), cwd=tmp_path)
    clean(r)
    assert r.returncode == 3 and "no space left on device" in r.stderr
    assert stat.S_ISCHR(os.lstat(full).st_mode)
    assert listing(tmp_path) == {"case.duckdb", "full"}


def test_broken_pipe_is_quiet(case_db, tmp_path):
    shell = (f"{sys.executable} -m tokentrail query 'select * from range(200000)' --format csv "
             f"--db {case_db} | head -1")
    r = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp_path, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.stdout == "range\n"
    assert r.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    assert r.returncode == 0


# 3. -o targets ----------------------------------------------------------------------------

def test_o_symlink_writes_the_target_and_keeps_the_link(case_db, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target.name)
    r = tt("tokens", "--db", str(case_db), "--format", "csv", "-o", str(link), cwd=tmp_path)
    clean(r)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "real.csv"
    assert target.read_text().startswith("token_key,")
    assert listing(tmp_path) == {"case.duckdb", "real.csv", "link.csv"}


def test_o_fifo_is_written_through_to_its_reader(case_db, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    r = tt("tokens", "--db", str(case_db), "--format", "csv", "-o", str(fifo), cwd=tmp_path)
    got, _ = reader.communicate(timeout=60)
    clean(r)
    assert r.returncode == 0, r.stderr
    assert got.startswith("token_key,") and "ASIALN5YQ6SWF73864KW" in got
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@root_only
def test_o_character_device_is_written_through(case_db, tmp_path):
    null = char_device(tmp_path / "null", 3)
    r = tt("scan", "--db", str(case_db), "--format", "json", "-o", str(null), cwd=tmp_path)
    clean(r)
    assert r.returncode == 1  # the sample story's findings; the device node is still one
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert listing(tmp_path) == {"case.duckdb", "null"}


def test_o_folder_or_socket_is_a_usage_error_and_writes_nothing(case_db, tmp_path):
    import socket

    folder = tmp_path / "out"
    folder.mkdir()
    r = tt("tokens", "--db", str(case_db), "-o", str(folder), cwd=tmp_path)
    clean(r)
    assert r.returncode == 2 and "folder" in r.stderr
    assert list(folder.iterdir()) == []
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        r = tt("tokens", "--db", str(case_db), "-o", str(sock_path), cwd=tmp_path)
    finally:
        sock.close()
    clean(r)
    assert r.returncode == 2 and stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    assert listing(tmp_path) == {"case.duckdb", "out", "s.sock"}


def test_o_regular_file_is_replaced_atomically_keeping_its_mode(case_db, tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    r = tt("tokens", "--db", str(case_db), "--format", "csv", "-o", str(out), cwd=tmp_path)
    clean(r)
    assert r.returncode == 0 and out.read_text().startswith("token_key,")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert listing(tmp_path) == {"case.duckdb", "t.csv"}


# 4. Read-only commands create nothing; a failed ingest leaves no case ----------------------

@pytest.mark.parametrize("args", [
    ("tokens",), ("holders",), ("trace", "x"), ("query", "select 1"), ("report", "--csv", "o"),
    ("export", "--parquet", "lake"), ("scan",),
])
def test_read_only_command_with_no_case_is_exit_3_and_creates_nothing(tmp_path, args):
    r = tt(*args, "--db", str(tmp_path / "missing.duckdb"), cwd=tmp_path)
    clean(r)
    assert r.returncode == 3 and "no such case" in r.stderr
    assert listing(tmp_path) == set()


def test_tokens_in_an_empty_folder_does_not_create_the_default_case(tmp_path):
    r = tt("tokens", cwd=tmp_path)
    clean(r)
    assert r.returncode == 3 and "no such case: tokentrail.duckdb" in r.stderr
    assert listing(tmp_path) == set()


def test_open_case_of_a_missing_file_raises_and_creates_nothing(tmp_path):
    code = ("import tokentrail, sys\n"
            "try:\n    tokentrail.open_case('missing.duckdb')\n"
            "except tokentrail.errors.CaseError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True,
                       capture_output=True, timeout=120)
    assert r.stdout.strip() == "no such case: missing.duckdb", r.stderr
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("args", [
    ("ingest", "/nonexistent/logs.jsonl"),
    ("ingest", str(ENVOY), "--log-format", "no-such-format"),
    ("ingest", str(ENVOY), "--mapping", "/nonexistent.toml"),
])
def test_failed_ingest_leaves_no_new_case_behind(tmp_path, args):
    r = tt(*args, "--db", str(tmp_path / "new.duckdb"), cwd=tmp_path)
    clean(r)
    assert r.returncode in (2, 3), r.stderr
    assert listing(tmp_path) == set()


def test_failed_ingest_keeps_a_pre_existing_case(case_db, tmp_path):
    before = digest(case_db)
    r = tt("ingest", "/nonexistent/logs.jsonl", "--db", str(case_db), cwd=tmp_path)
    clean(r)
    assert r.returncode == 3
    assert case_db.exists() and digest(case_db) == before


# 5. scan of a missing input -----------------------------------------------------------------

def test_scan_with_a_missing_input_is_exit_3(tmp_path):
    r = tt("scan", str(SAMPLE), "/nonexistent", cwd=tmp_path)
    clean(r)
    assert r.returncode == 3 and "/nonexistent" in r.stderr and "no such file" in r.stderr
    assert listing(tmp_path) == set()


# 6. user SQL cannot leave the case ----------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "COPY events TO '{out}/x.csv'",
    "COPY (select 1) TO '{out}/x.parquet' (FORMAT parquet)",
    "select * from read_text('/etc/passwd')",
    "select * from read_csv('/etc/passwd')",
    "select * from read_parquet('{out}/x.parquet')",
    "ATTACH '{out}/other.duckdb' AS o",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "select 1; COPY events TO '{out}/y.csv'",
])
def test_query_sql_cannot_read_or_write_outside_the_case(case_db, tmp_path, sql):
    out = tmp_path / "elsewhere"
    out.mkdir()
    before = digest(case_db)
    r = tt("query", sql.format(out=out), "--db", str(case_db), cwd=tmp_path)
    clean(r)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "root:" not in r.stdout
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []
    assert digest(case_db) == before
    assert listing(tmp_path) == {"case.duckdb", "elsewhere"}


def test_query_still_reads_the_case_and_its_views(case_db, tmp_path):
    r = tt("query", "select count(*) as n from v_token_holders", "--db", str(case_db),
           "--format", "csv", cwd=tmp_path)
    clean(r)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "n"


# 7. open_case twice ---------------------------------------------------------------------------

def test_open_case_twice_in_one_process(case_db, tmp_path):
    code = ("import tokentrail\n"
            f"a = tokentrail.open_case({str(case_db)!r})\n"
            f"b = tokentrail.open_case({str(case_db)!r})\n"
            "print(len(a.findings()), len(b.findings()))\n"
            "a.close()\n"
            "print(len(b.tokens()))\n"
            "b.close()\n"
            f"c = tokentrail.open_case({str(case_db)!r})\n"
            "print(len(c.tokens())); c.close()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True,
                       capture_output=True, timeout=240)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout.split() == ["14", "14", "39", "39"]  # 21 + 18 look-alike tokens (issue 11.5)


# 8. consistency ---------------------------------------------------------------------------------

def test_ingest_log_format_and_its_old_spelling(tmp_path):
    r = tt("ingest", str(ENVOY), "--log-format", "envoy", "--db", str(tmp_path / "a.duckdb"),
           "--json", cwd=tmp_path)
    assert r.returncode == 0 and '"format": "envoy"' in r.stdout
    r = tt("ingest", str(ENVOY), "--format", "envoy", "--db", str(tmp_path / "b.duckdb"),
           "--json", cwd=tmp_path)
    assert r.returncode == 0 and '"format": "envoy"' in r.stdout
    helptext = tt("ingest", "--help", cwd=tmp_path).stdout
    assert "--log-format" in helptext and "--format " not in helptext


def test_rules_show_is_case_insensitive(tmp_path):
    r = tt("rules", "show", "tt001", cwd=tmp_path)
    assert r.returncode == 0 and 'id = "TT001"' in r.stdout


def test_rules_dir_without_rule_files_is_a_usage_error(case_db, tmp_path):
    empty = tmp_path / "rules"
    empty.mkdir()
    r = tt("scan", "--db", str(case_db), "--rules", str(empty), cwd=tmp_path)
    clean(r)
    assert r.returncode == 2 and "no rule file" in r.stderr


def test_trace_token_file_missing_is_exit_3(case_db, tmp_path):
    r = tt("trace", "--token-file", str(tmp_path / "leaked.txt"), "--db", str(case_db), cwd=tmp_path)
    clean(r)
    assert r.returncode == 3 and "leaked.txt" in r.stderr


def test_ingest_and_scan_report_the_same_token_count(tmp_path):
    import json

    ing = tt("ingest", str(SAMPLE), "--db", str(tmp_path / "c.duckdb"), "--json", cwd=tmp_path)
    scan = tt("scan", str(SAMPLE), "--format", "json", "--fail-on", "none", cwd=tmp_path)
    assert ing.returncode == 0 and scan.returncode == 0
    assert json.loads(ing.stdout)["case"]["tokens"] == json.loads(scan.stdout)["case"]["tokens"]


def test_query_with_several_statements_says_it_printed_the_last(case_db, tmp_path):
    r = tt("query", "select 1 as a; select 2 as b", "--db", str(case_db), "--format", "csv",
           cwd=tmp_path)
    clean(r)
    assert r.returncode == 0 and r.stdout.splitlines() == ["b", "2"]
    assert "ran 2 statements" in r.stderr and "last" in r.stderr


def test_query_of_analysis_tables_before_a_scan_says_to_scan(case_db, tmp_path):
    r = tt("query", "select * from findings", "--db", str(case_db), cwd=tmp_path)
    clean(r)
    assert r.returncode == 2 and "findings is built by analysis" in r.stderr
    assert "run `tokentrail scan --db" in r.stderr


@pytest.mark.parametrize("argv", [["scan", "--help"], ["formats"]])
def test_ctrl_c_while_arguments_are_parsed_is_exit_130_not_click_aborted(argv, tmp_path):
    """A Ctrl-C that lands while click parses the command line (here: raised from the parser
    in the child) keeps the contract: exit 130, one line, not click's "Aborted!" with 1."""
    code = ("import sys, click\n"
            "from tokentrail.cli import main\n"
            "def boom(self, ctx, args):\n"
            "    raise KeyboardInterrupt\n"
            "click.Group.parse_args = boom\n"
            f"sys.argv = ['tokentrail', *{argv!r}]\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip() == "interrupted"
    assert "Aborted" not in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_scan_out_of_memory_outside_the_rules_is_exit_3_naming_the_setting(case_db, tmp_path,
                                                                          monkeypatch):
    # Lineage runs before any rule: under a memory limit far too small for it, DuckDB's
    # OutOfMemoryException reached the user as a traceback and exit 1 ("findings").
    monkeypatch.setenv("TOKENTRAIL_MEMORY_LIMIT", "8MB")
    out = tmp_path / "findings.json"
    r = tt("scan", "--db", str(case_db), "--format", "json", "-o", str(out), cwd=tmp_path)
    clean(r)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Out of Memory" in lines[0] and "TOKENTRAIL_MEMORY_LIMIT" in lines[0]
    assert not out.exists()


def test_a_full_disk_under_the_case_is_one_line_and_exit_3(case_db, monkeypatch):
    # DuckDB reports its own write failures (the case file, its spill folder) as
    # duckdb.IOException, not OSError.
    import importlib

    import duckdb
    from click.testing import CliRunner

    from tokentrail.cli import main

    scan_module = importlib.import_module("tokentrail.cli.scan_cmd")  # the name is the command

    def full(*_args: object, **_kw: object) -> None:
        raise duckdb.IOException('IO Error: Could not write file "/cases/c.duckdb.wal": '
                                 "No space left on device\nmore detail")

    monkeypatch.setattr(scan_module, "analyse", full)
    r = CliRunner().invoke(main, ["scan", "--db", str(case_db), "-q"])
    assert r.exit_code == 3
    assert r.stderr.strip().splitlines() == [
        'error: cannot write the case: no space left on device (IO Error: Could not write '
        'file "/cases/c.duckdb.wal": No space left on device)']


def test_a_memory_limit_that_is_not_a_size_is_a_usage_error_naming_the_variable(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_MEMORY_LIMIT", "lots")
    r = tt("scan", str(SAMPLE), "-q", cwd=tmp_path)
    clean(r)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: TOKENTRAIL_MEMORY_LIMIT='lots' is not a memory size")
    assert len(r.stderr.strip().splitlines()) == 1
    assert listing(tmp_path) == set()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_o_never_writes_over_an_input_log_or_the_case(case_db, tmp_path):
    # A slip of the keyboard (`scan gw.jsonl -o gw.jsonl`, `tokens --db c.duckdb -o c.duckdb`)
    # would have replaced the evidence with a report, atomically and without a word.
    log = tmp_path / "gw.jsonl"
    shutil.copy(ENVOY, log)
    link = tmp_path / "latest.json"
    link.symlink_to(log)
    before = _digest(log)
    attempts = [
        (("scan", str(log), "-q", "--format", "json", "-o", str(log)),
         "an input log of this scan"),
        (("scan", str(log), "-q", "--format", "json", "-o", str(link)),
         "an input log of this scan"),
        (("scan", str(log), "-q", "--write-baseline", str(log)), "an input log of this scan"),
        (("tokens", "--db", str(case_db), "-o", str(case_db)), "the case database"),
        (("scan", "--db", str(case_db), "-q", "--format", "sarif", "-o", str(case_db)),
         "the case database"),
        (("report", "--db", str(case_db), "--html", str(case_db)), "the case database"),
    ]
    for args, what in attempts:
        r = tt(*args, cwd=tmp_path)
        clean(r)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1].endswith(f"it is {what}"), (args, r.stderr)
    # the log byte for byte; the case still a database (scan and report refresh its derived
    # tables, so its bytes may change), and it still answers
    assert _digest(log) == before and case_db.read_bytes()[8:12] == b"DUCK"
    assert link.is_symlink()
    ok = tt("tokens", "--db", str(case_db), "--format", "csv", "-o", str(tmp_path / "t.csv"),
            cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
