"""Policy files (tokentrail/provenance/policy.py) and the IP/CIDR macros they rely on (tokentrail/provenance/netmatch.py)."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tokentrail.errors import ExitCode, TokentrailError
from tokentrail.provenance.netmatch import NET_MACROS, cidr_bounds, install_net_macros, ip_key
from tokentrail.provenance.policy import (
    Policy,
    PolicyError,
    Workload,
    find_default_policy,
    holder_workload_sql,
    ip_in_network_sql,
    load_policy,
    parse_duration,
    parse_pattern,
    parse_policy,
    resolve_policy,
)

POLICIES = Path(__file__).parent / "fixtures" / "policy"
GOOD = POLICIES / "good.toml"


@pytest.fixture(scope="module")
def good() -> Policy:
    return load_policy(GOOD)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def policy_error(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


# --------------------------------------------------------------------------------------------- model


def test_good_policy_loads_every_section(good: Policy) -> None:
    assert good.path == GOOD
    assert good.max_token_lifetime_s == 3600
    assert good.clock_skew_s == 90
    assert [w.name for w in good.workloads] == ["orchestrator", "coder", "researcher", "partner-bot", "batch"]
    partner = good.workload("partner-bot")
    assert partner is not None and partner.internal is False
    # A colon-hex certificate thumbprint is stored as the base64url x5t holders carry.
    assert partner.identifiers[0] == "x5t:n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"
    batch = good.workload("batch")
    assert batch is not None and batch.identifiers[0] == "ip:10.0.0.5/32"
    assert good.workload("coder") == Workload(
        name="coder",
        identifiers=("spiffe://acme.example/ns/agents/sa/coder", "client:coder", "agent:coder-*",
                     "k8s:agents/coder-*", "ip:10.42.1.0/24"))
    first, second = good.delegations
    assert (first.from_workload, first.to, first.audiences, first.max_depth) == (
        "orchestrator", ("coder", "researcher"), ("repo-api",), 2)
    assert (second.from_workload, second.to, second.audiences, second.max_depth) == (
        "coder", ("researcher",), (), 1)
    assert [t.name for t in good.transports] == ["gateway", "sidecars"]
    assert good.networks.trusted == ("10.0.0.0/8", "fd00::/8")
    assert good.networks.nat == ("203.0.113.0/28", "198.51.100.7/32")
    assert not good.is_empty


def test_empty_file_is_the_empty_policy(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "# nothing declared yet\n"))
    assert policy.is_empty
    assert policy == Policy(path=tmp_path / "policy.toml")
    assert Policy().clock_skew_s == 120 and Policy().max_token_lifetime_s is None


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("2D", 172800),
    (3600, 3600), ("3600", 3600), (0, 0),
])
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["2 minutes", "1w", "h", "", "1.5h", -5, True, 1.5, ["1h"]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_find_and_resolve_default_policy(tmp_path: Path) -> None:
    # conftest runs every test in tmp_path.
    assert find_default_policy() is None
    assert resolve_policy() == Policy()
    default = write(tmp_path, 'max_token_lifetime = "15m"\n', "tokentrail.toml")
    assert find_default_policy() == default
    assert find_default_policy(tmp_path) == default
    assert find_default_policy(tmp_path / "elsewhere") is None
    assert resolve_policy().max_token_lifetime_s == 900
    assert resolve_policy(GOOD).path == GOOD


# --------------------------------------------------------------------------------------------- errors


def test_policy_error_is_an_input_error(tmp_path: Path) -> None:
    err = policy_error(tmp_path / "missing.toml")
    assert isinstance(err, TokentrailError)
    assert err.exit_code == ExitCode.INPUT == 3
    assert str(err) == f"{tmp_path / 'missing.toml'}: policy file not found"


@pytest.mark.parametrize(("fixture", "key", "line", "text"), [
    ("bad-unknown-key.toml", "workloads[1].identifers", 9, "did you mean 'identifiers'?"),
    ("bad-cidr.toml", "workloads[1].identifiers[2]", 10, "'ip:10.42.1.0/33' is not a valid address or CIDR"),
    ("bad-host-bits.toml", "networks.nat[1]", 5, "did you mean '198.51.100.0/24'?"),
    ("bad-duration.toml", "clock_skew", 2, "'2 minutes' is not a duration"),
    ("bad-undefined-delegation.toml", "delegations[0].to[1]", 13, "undefined workload 'reseacher'"),
    ("bad-duplicate-workload.toml", "workloads[2].name", 10,
     "duplicate name 'coder' (already defined at workloads[0])"),
    ("bad-type.toml", "workloads[0].internal", 4, "expected true or false, got string"),
    ("bad-syntax.toml", None, 3, "invalid TOML: Unclosed array"),
])
def test_bad_policy_fixtures(fixture: str, key: str | None, line: int, text: str) -> None:
    path = POLICIES / fixture
    err = policy_error(path)
    assert (err.file, err.key, err.line) == (str(path), key, line)
    assert text in err.message
    # One line naming file:line: key: message, as the CLI prints it.
    assert str(err).startswith(f"{path}:{line}: " + (f"{key}: " if key else ""))


WORKLOAD = '[[workloads]]\nname = "coder"\nidentifiers = ["client:coder"]\n'


@pytest.mark.parametrize(("text", "key", "line", "message"), [
    ('max_token_lifetme = "1h"\n', "max_token_lifetme", 1, "did you mean 'max_token_lifetime'?"),
    ("max_token_lifetime = 0\n", "max_token_lifetime", 1, "must be at least 1s"),
    ("clock_skew = true\n", "clock_skew", 1, "got boolean"),
    ('[workloads]\nname = "coder"\n', "workloads", 1,
     "expected an array of tables ([[workloads]]), got table"),
    ('[[workloads]]\nidentifiers = ["client:coder"]\n', "workloads[0]", 1, "missing required key 'name'"),
    ('[[workloads]]\nname = ""\nidentifiers = ["client:coder"]\n', "workloads[0].name", 2,
     "must not be empty"),
    ('[[workloads]]\nname = "coder"\n', "workloads[0]", 1, "missing required key 'identifiers'"),
    ('[[workloads]]\nname = "coder"\nidentifiers = []\n', "workloads[0].identifiers", 3, "must not be empty"),
    ('[[workloads]]\nname = "coder"\nidentifiers = "client:coder"\n', "workloads[0].identifiers", 3,
     "expected an array of strings, got string"),
    ('[[workloads]]\nname = "coder"\nidentifiers = [\n  "client:coder",\n  42,\n]\n',
     "workloads[0].identifiers[1]", 3, "expected a string, got integer"),
    ('[[workloads]]\nname = "coder"\nidentifiers = ["coder"]\n', "workloads[0].identifiers[0]", 3,
     "is not a holder id"),
    ('[[workloads]]\nname = "coder"\nidentifiers = ["*"]\n', "workloads[0].identifiers[0]", 3,
     "would match every holder"),
    ('[[workloads]]\nname = "coder"\nidentifiers = ["ip:coder-host"]\n', "workloads[0].identifiers[0]", 3,
     "expected ip:<address>"),
    ('[[workloads]]\nname = "coder"\nidentifiers = ["ip:255.090.254.5/curl"]\n',
     "workloads[0].identifiers[0]", 3, "is not a valid IP address"),
    ('[[workloads]]\nname = "coder"\nidentifiers = ["ip:10.42.1.7/24"]\n', "workloads[0].identifiers[0]", 3,
     "did you mean ip:10.42.1.0/24?"),
    ('[[workloads]]\nname = "coder"\ndescription = 7\nidentifiers = ["client:coder"]\n',
     "workloads[0].description", 3, "expected a string"),
    (WORKLOAD + '[[workloads]]\nname = "coder2"\nidentifiers = ["client:x", "client:coder"]\n',
     "workloads[1].identifiers[1]", 6, "'client:coder' is already an identifier of 'coder'"),
    (WORKLOAD + '[[transports]]\nname = "coder"\nidentifiers = ["client:gw"]\n', "transports[0].name", 5,
     "duplicate name 'coder'"),
    (WORKLOAD + '[[delegations]]\nfrom = "codr"\nto = ["coder"]\n', "delegations[0].from", 5,
     "undefined workload 'codr' (did you mean 'coder'?)"),
    (WORKLOAD + '[[transports]]\nname = "gw"\nidentifiers = ["client:gw"]\n'
     '[[delegations]]\nfrom = "gw"\nto = ["coder"]\n', "delegations[0].from", 8, "'gw' is a transport"),
    (WORKLOAD + '[[delegations]]\nfrom = "coder"\nto = ["coder"]\nmax_depth = 0\n',
     "delegations[0].max_depth", 7, "must be at least 1"),
    (WORKLOAD + '[[delegations]]\nfrom = "coder"\nto = ["coder"]\nmax_depth = "2"\n',
     "delegations[0].max_depth", 7, "expected an integer, got string"),
    (WORKLOAD + '[[delegations]]\nfrom = "coder"\nto = []\n', "delegations[0].to", 6, "must not be empty"),
    (WORKLOAD + '[[delegations]]\nfrom = "coder"\nto = ["coder"]\naudiences = "repo-api"\n',
     "delegations[0].audiences", 7, "expected an array of strings"),
    (WORKLOAD + '[[delegations]]\nfrom = "coder"\nto = ["coder"]\nmax_dept = 3\n', "delegations[0].max_dept",
     7, "did you mean 'max_depth'?"),
    ('[networks]\ntrusted = ["10.0.0.0/8"]\negress = ["203.0.113.0/28"]\n', "networks.egress", 3,
     "unknown key 'egress'"),
    ('[networks]\ntrusted = "10.0.0.0/8"\n', "networks.trusted", 2, "expected an array of strings"),
    ('[networks]\ntrusted = ["10.0.0.0/8", "corp-lan"]\n', "networks.trusted[1]", 2, "not a valid CIDR"),
    ('networks = "10.0.0.0/8"\n', "networks", 1, "expected a table, got string"),
    ('workloads = [{name = "coder", identifiers = ["client:coder"], intenal = true}]\n',
     "workloads[0].intenal", 1, "unknown key 'intenal'"),
])
def test_validation_errors(tmp_path: Path, text: str, key: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    err = policy_error(path)
    assert (err.file, err.key, err.line) == (str(path), key, line), str(err)
    assert message in err.message, str(err)


def test_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy('clock_skew = "90s"\n[[workloads]\nname = "x"\n', file="p.toml")
    assert info.value.line == 2 and str(info.value).startswith("p.toml:2: invalid TOML")


def test_pattern_kinds() -> None:
    assert parse_pattern("client:coder").kind == "exact"
    assert parse_pattern("ip:10.42.1.17/python-requests").kind == "exact"
    assert parse_pattern("spiffe://acme.example/ns/*/sa/coder").kind == "glob"
    assert parse_pattern("ip:10.42.1.0/24").kind == "cidr"
    assert parse_pattern("ip:2001:db8::/32").text == "ip:2001:db8::/32"
    assert parse_pattern("ip:10.0.0.5").text == "ip:10.0.0.5/32"
    assert parse_pattern("x5t:" + "ab" * 32).text == "x5t:q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"


# --------------------------------------------------------------------------------------------- SQL


TABLES = ("policy_workloads", "policy_identifiers", "policy_delegations", "policy_networks",
          "policy_settings")


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def test_empty_policy_installs_the_same_tables(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    full = {t: columns(con, t) for t in TABLES}
    Policy().install(con)  # replaces the tables
    assert {t: columns(con, t) for t in TABLES} == full
    for table in TABLES[:-1]:
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert dict(con.execute("SELECT key, value FROM policy_settings").fetchall()) == {
        "max_token_lifetime_s": None, "clock_skew_s": 120}
    # SQL written against the policy binds and finds nothing.
    row = con.execute(f"SELECT {holder_workload_sql('h')}, {ip_in_network_sql('ip')} "
                      "FROM (VALUES ('client:coder', '10.0.0.1')) AS t(h, ip)").fetchone()
    assert row == (None, False)


def test_installed_schema(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    assert columns(con, "policy_identifiers") == [
        ("workload", "VARCHAR"), ("role", "VARCHAR"), ("internal", "BOOLEAN"), ("pattern", "VARCHAR"),
        ("kind", "VARCHAR"), ("like_pattern", "VARCHAR"), ("cidr_lo", "VARCHAR"), ("cidr_hi", "VARCHAR"),
        ("precedence", "INTEGER")]
    assert columns(con, "policy_delegations") == [
        ("from_workload", "VARCHAR"), ("to_workload", "VARCHAR"), ("audience", "VARCHAR"),
        ("max_depth", "INTEGER")]
    assert columns(con, "policy_networks") == [
        ("kind", "VARCHAR"), ("cidr", "VARCHAR"), ("cidr_lo", "VARCHAR"), ("cidr_hi", "VARCHAR")]
    assert columns(con, "policy_settings") == [("key", "VARCHAR"), ("value", "BIGINT")]
    assert con.execute("SELECT * FROM policy_delegations ORDER BY ALL").fetchall() == [
        ("coder", "researcher", None, 1),
        ("orchestrator", "coder", "repo-api", 2),
        ("orchestrator", "researcher", "repo-api", 2)]
    assert dict(con.execute("SELECT key, value FROM policy_settings").fetchall()) == {
        "max_token_lifetime_s": 3600, "clock_skew_s": 90}
    by_role = con.execute("SELECT role, count(*) FROM policy_identifiers GROUP BY ALL ORDER BY ALL")
    assert by_role.fetchall() == [("transport", 2), ("workload", 14)]
    external = con.execute("SELECT name FROM policy_workloads WHERE NOT internal")
    assert external.fetchall() == [("partner-bot",)]


HOLDERS: list[tuple[str, str | None]] = [
    # Replicas: two pods presenting the same SPIFFE ID, and their pod / agent / client aliases.
    ("spiffe://acme.example/ns/agents/sa/coder", "coder"),
    ("k8s:agents/coder-7d9f8-abcde", "coder"),
    ("k8s:agents/coder-7d9f8-fghij", "coder"),
    ("agent:coder-2", "coder"),
    ("client:coder", "coder"),
    ("ip:10.42.1.17/python-requests", "coder"),
    ("ip:10.42.1.18", "coder"),
    # The partner's NAT egress: any host, any user agent, one workload.
    ("ip:203.0.113.4/python-requests", "partner-bot"),
    ("ip:203.0.113.15/curl", "partner-bot"),
    ("ip:203.0.113.16/curl", None),
    ("x5t:n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg", "partner-bot"),
    # A bare address matches with or without a user-agent family.
    ("ip:10.0.0.5/curl", "batch"),
    ("ip:10.0.0.5", "batch"),
    ("ip:10.0.0.6", None),
    ("jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "batch"),
    ("agent:orch-1", "orchestrator"),
    ("client:researcher", "researcher"),
    # Near misses and junk.
    ("spiffe://acme.example/ns/agents/sa/coder-evil", None),
    ("client:Coder", None),
    ("client:coder ", None),
    ("k8s:other/coder-1", None),
    ("ip:255.090.254.5/curl", None),
    ("ip:2001:db8::1/curl", None),
    ("ip:", None),
    ("", None),
    # Transports are not workloads.
    ("spiffe://acme.example/ns/istio-system/sa/acme-gateway", None),
    ("spiffe://acme.example/ns/agents/sa/envoy-sidecar", None),
]


def test_holder_workload_sql(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    con.execute("CREATE TABLE holders(holder_id VARCHAR)")
    con.executemany("INSERT INTO holders VALUES (?)", [(h,) for h, _ in HOLDERS] + [(None,)])
    got = dict(con.execute(
        f"SELECT h.holder_id, {holder_workload_sql('h.holder_id')} AS workload FROM holders AS h").fetchall())
    expected = dict(HOLDERS)
    assert got == {**expected, None: None}
    # The Python twin agrees.
    assert {h: good.workload_of(h) for h in expected} == expected


def test_replicas_collapse_to_one_workload(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    events = [  # (holder_id, src_ip): two replicas, NAT egress with two user agents, a client alias
        ("spiffe://acme.example/ns/agents/sa/coder", "10.42.1.17"),
        ("spiffe://acme.example/ns/agents/sa/coder", "10.42.1.18"),
        ("ip:10.42.1.19/python-requests", "10.42.1.19"),
        ("client:coder", "10.42.1.17"),
        ("ip:203.0.113.4/python-requests", "203.0.113.4"),
        ("ip:203.0.113.9/go-http-client", "203.0.113.9"),
    ]
    con.execute("CREATE TABLE events(holder_id VARCHAR, src_ip VARCHAR)")
    con.executemany("INSERT INTO events VALUES (?, ?)", events)
    rows = con.execute(
        f"SELECT {holder_workload_sql('e.holder_id')} AS workload, count(DISTINCT e.holder_id), "
        f"bool_and({ip_in_network_sql('e.src_ip', 'nat')}) "
        "FROM events AS e GROUP BY ALL ORDER BY ALL").fetchall()
    assert rows == [("coder", 3, False), ("partner-bot", 2, True)]


def test_transport_role(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    sql = ("SELECT {w}, {t}, {a} FROM (VALUES (?)) AS v(h)").format(
        w=holder_workload_sql("v.h"), t=holder_workload_sql("v.h", "transport"),
        a=holder_workload_sql("v.h", None))
    gateway = "spiffe://acme.example/ns/istio-system/sa/acme-gateway"
    assert con.execute(sql, [gateway]).fetchone() == (None, "gateway", "gateway")
    sidecar = "spiffe://acme.example/ns/payments/sa/envoy-sidecar"
    assert con.execute(sql, [sidecar]).fetchone() == (None, "sidecars", "sidecars")
    assert con.execute(sql, ["client:coder"]).fetchone() == ("coder", None, "coder")
    assert good.workload_of(sidecar, "transport") == "sidecars"
    with pytest.raises(ValueError):
        holder_workload_sql("v.h", "gateway")


def test_most_specific_pattern_wins(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    policy = load_policy(write(tmp_path, """
[[workloads]]
name = "any-agent"
identifiers = ["spiffe://acme.example/ns/agents/*", "ip:10.0.0.0/8"]

[[workloads]]
name = "coder"
identifiers = ["spiffe://acme.example/ns/agents/sa/coder-*", "ip:10.42.0.0/16"]

[[workloads]]
name = "pinned"
identifiers = ["spiffe://acme.example/ns/agents/sa/coder-pinned", "ip:10.42.9.9/curl"]

[[workloads]]
name = "odd_names"
identifiers = ["client:my_app%*"]
"""))
    policy.install(con)
    cases = {
        "spiffe://acme.example/ns/agents/sa/researcher": "any-agent",
        "spiffe://acme.example/ns/agents/sa/coder-1": "coder",
        "spiffe://acme.example/ns/agents/sa/coder-pinned": "pinned",
        "ip:10.1.2.3/curl": "any-agent",
        "ip:10.42.9.8/curl": "coder",
        "ip:10.42.9.9/curl": "pinned",
        "ip:10.42.9.9/wget": "coder",
        "client:my_app%1": "odd_names",
        "client:myXappY1": None,  # `_` and `%` are literal, not LIKE wildcards
    }
    sql = f"SELECT v.h, {holder_workload_sql('v.h')} FROM (SELECT unnest(?::VARCHAR[]) AS h) AS v"
    assert dict(con.execute(sql, [list(cases)]).fetchall()) == cases
    assert {h: policy.workload_of(h) for h in cases} == cases


def test_ip_in_network_sql(con: duckdb.DuckDBPyConnection, good: Policy) -> None:
    good.install(con)
    ips = ["10.1.2.3", "203.0.113.5", "198.51.100.7", "198.51.100.8", "fd12::1", "8.8.8.8",
           "255.090.254.5", None]
    sql = (f"SELECT v.ip, {ip_in_network_sql('v.ip', 'trusted')}, {ip_in_network_sql('v.ip', 'nat')}, "
           f"{ip_in_network_sql('tt_holder_ip(v.h)')} "
           "FROM (SELECT unnest(?::VARCHAR[]) AS ip, 'ip:' || unnest(?::VARCHAR[]) || '/curl' AS h) AS v")
    got = {ip: rest for ip, *rest in con.execute(sql, [ips, ips]).fetchall()}
    assert got == {
        "10.1.2.3": [True, False, True], "203.0.113.5": [False, True, True],
        "198.51.100.7": [False, True, True], "198.51.100.8": [False, False, False],
        "fd12::1": [True, False, True], "8.8.8.8": [False, False, False],
        "255.090.254.5": [False, False, False], None: [False, False, False]}


# --------------------------------------------------------------------------------------------- netmatch


def test_inet_extension_is_not_needed(con: duckdb.DuckDBPyConnection) -> None:
    install_net_macros(con)
    loaded = con.execute("SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'inet' AND loaded")
    assert loaded.fetchone() == (0,)
    assert {name for name, _, _ in NET_MACROS} >= {"tt_ipv4_int", "tt_ip_in_cidr", "tt_ip_key"}


@pytest.mark.parametrize(("ip", "value"), [
    ("10.0.0.1", 167772161), ("0.0.0.0", 0), ("255.255.255.255", 4294967295), (" 10.0.0.1 ", 167772161),
    ("255.090.254.5", None), ("10.0.0.256", None), ("1.2.3", None), ("1.2.3.4.5", None),
    ("10.0.0.1:443", None), ("::1", None), ("", None), (None, None), ("١.٢.٣.٤", None),
])
def test_tt_ipv4_int(con: duckdb.DuckDBPyConnection, ip: str | None, value: int | None) -> None:
    install_net_macros(con)
    assert con.execute("SELECT tt_ipv4_int(?)", [ip]).fetchone() == (value,)


def test_tt_ip_in_cidr(con: duckdb.DuckDBPyConnection) -> None:
    install_net_macros(con)
    cases = [
        ("10.42.1.17", "10.42.1.0/24", True), ("10.42.2.17", "10.42.1.0/24", False),
        ("10.42.1.17", "10.42.1.17", True), ("10.42.1.17", "0.0.0.0/0", True),
        ("10.42.1.17", "10.42.1.5/24", True),  # host bits in the range are masked, not an error
        ("2001:db8::5", "2001:db8::/32", True), ("2001:db9::5", "2001:db8::/32", False),
        ("[2001:DB8::5]", "2001:db8::/32", True), ("fe80::1%eth0", "fe80::/10", True),
        ("::ffff:10.0.0.1", "10.0.0.0/8", True), ("10.0.0.1", "::ffff:0:0/96", True),
        ("10.0.0.1", "2001:db8::/32", False), ("2001:db8::1", "10.0.0.0/8", False),
        ("10.0.0.1", "::/0", False), ("::ffff:10.0.0.1", "::/0", False), ("2001:db8::1", "::/0", True),
        ("10.0.0.1", "::ffff:10.0.0.0/104", True), ("10.1.0.1", "::ffff:10.0.0.0/112", False),
        ("255.090.254.5", "0.0.0.0/0", None), ("junk", "10.0.0.0/8", None), (None, "10.0.0.0/8", None),
        ("10.0.0.1", "10.0.0.0/33", None), ("10.0.0.1", "10.0.0.0/", None), ("10.0.0.1", "corp", None),
        ("10.0.0.1", None, None), ("fe80:::1", "::/0", None), ("1:2:3:4:5:6:7:8:9", "::/0", None),
    ]
    got = con.execute("SELECT tt_ip_in_cidr(ip, c) FROM (SELECT unnest(?::VARCHAR[]) AS ip, "
                      "unnest(?::VARCHAR[]) AS c, generate_subscripts(?::VARCHAR[], 1) AS n) ORDER BY n",
                      [[c[0] for c in cases], [c[1] for c in cases], [c[0] for c in cases]]).fetchall()
    assert [g[0] for g in got] == [c[2] for c in cases]


def _random_inputs() -> tuple[list[str], list[str], list[str], list[str]]:
    """(all ips, all cidrs, the valid random ips, the valid random cidrs)."""
    rnd = random.Random(20240611)
    ips = ["::", "::1", "1::", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7:8", "1::1.2.3.4", "::ffff:1.2.3.04",
           "00001::", "[10.0.0.1]", "\t10.0.0.1", "10.0.0.1%eth0", "1.2.3.4/24", "ip:1.2.3.4",
           "::ffff:1.2.3.4.5"]
    cidrs = ["::/0", "0.0.0.0/0", "10.0.0.0/08", "10.0.0.0/8/8", "x/8", "2001:db8::1/129", "10.1.2.3/31"]
    good_ips: list[str] = []
    good_cidrs: list[str] = []
    for _ in range(200):
        v4 = ipaddress.IPv4Address(rnd.getrandbits(32))
        bits = rnd.getrandbits(rnd.choice([16, 64, 128])) << rnd.choice([0, 16, 64])
        v6 = ipaddress.IPv6Address(bits & (2**128 - 1))
        good_ips += [str(v4), rnd.choice([str(v6), v6.exploded, str(v6).upper()])]
        good_cidrs += [f"{v4}/{rnd.randint(0, 32)}", f"{v6}/{rnd.randint(0, 128)}"]
    return ips + good_ips, cidrs + good_cidrs, good_ips, good_cidrs


def test_sql_and_python_keys_agree(con: duckdb.DuckDBPyConnection) -> None:
    install_net_macros(con)
    ips, cidrs, good_ips, good_cidrs = _random_inputs()
    got = dict(con.execute("SELECT ip, tt_ip_key(ip) FROM unnest(?::VARCHAR[]) AS t(ip)", [ips]).fetchall())
    assert got == {ip: ip_key(ip) for ip in ips}
    rows = con.execute("SELECT c, tt_cidr_lo(c), tt_cidr_hi(c) FROM unnest(?::VARCHAR[]) AS t(c)",
                       [cidrs]).fetchall()
    assert {c: (lo, hi) if lo else None for c, lo, hi in rows} == {c: cidr_bounds(c) for c in cidrs}
    # And they are right: membership by key equals membership by ipaddress.
    for c in good_cidrs[:30]:
        bounds = cidr_bounds(c)
        assert bounds is not None
        net = ipaddress.ip_network(c, strict=False)
        for ip in good_ips[:50]:
            key = ip_key(ip)
            assert key is not None
            addr = ipaddress.ip_address(ip)
            assert (bounds[0] <= key <= bounds[1]) == (addr.version == net.version and addr in net)


def test_library_imports_neither_click_nor_rich() -> None:
    code = ("import sys, tokentrail.provenance.policy, tokentrail.provenance.netmatch;"
            "print(','.join(m for m in ('click', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
