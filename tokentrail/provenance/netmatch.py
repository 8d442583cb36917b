"""IP address and CIDR matching as DuckDB macros, without the `inet` extension.

DuckDB's `inet` extension is not bundled and cannot be downloaded on an offline machine, so
addresses are compared as text keys instead (`tt_ip_key`): "4" and 8 lowercase hex digits for
IPv4, "6" and 32 for IPv6. Fixed-width hex sorts like the number it spells and the family
digit keeps the families apart, so "address in CIDR" is a plain `key BETWEEN lo AND hi` on
VARCHAR (`tt_cidr_lo` / `tt_cidr_hi`): portable to any SQL engine and usable as a range join.

Semantics, by design:
- IPv4 and IPv6 both work. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the IPv4
  address: it gets the IPv4 key and matches IPv4 ranges; a range inside `::ffff:0:0/96` is the
  IPv4 range it maps. Other IPv6 ranges (even `::/0`) never contain IPv4 addresses, as in
  Python's `ipaddress`.
- Junk never raises: `255.090.254.5` (leading zeros are ambiguous; Python rejects them too),
  `10.0.0.256`, `1.2.3`, `fe80:::1`, "ip:port", NULL -> NULL key; `tt_ip_in_cidr` is NULL (not
  false) when the address or the range does not parse. Host bits in a range are masked.
- An IPv6 zone (`fe80::1%eth0`) is ignored; `[v6]` brackets are accepted; spaces are trimmed.
- Cost: roughly 1 s per million addresses on one core (the IPv6 parser is list lambdas). On
  big tables key distinct values, or join precomputed bounds (policy_networks.cidr_lo/hi).

`ip_key`, `cidr_bounds` and `network_bounds` are the same functions in Python (over
`ipaddress`); tests hold the two implementations to each other.
"""

from __future__ import annotations

import ipaddress
import re

import duckdb

_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_RE = _OCTET + "(\\." + _OCTET + "){3}"
_HEX = "0123456789abcdef"
# The 96-bit prefix of an IPv4-mapped IPv6 address, as hex.
V4_MAPPED_PREFIX = "00000000000000000000ffff"


def _let(value: str, var: str, body: str) -> str:
    """`body` with `var` bound to `value`, evaluated once. Macro arguments are substituted as
    expression trees, so a parameter used n times in nested macros is copied n^depth times;
    a one-element list_transform binds it once instead."""
    return f"list_transform([{value}], lambda {var}: {body})[1]"


# Each entry: (name, parameters, body), like sqlmacros.MACROS. Order matters: a macro may only
# call macros created before it. Names starting `tt__` are helpers, not API.
NET_MACROS: tuple[tuple[str, str, str], ...] = (
    # A dotted-quad IPv4 address as its 32-bit value, NULL for anything else.
    ("tt_ipv4_int", "ip",
     _let("trim(TRY_CAST(ip AS VARCHAR))", "_tt4",
          f"CASE WHEN regexp_full_match(_tt4, '{_V4_RE}') "
          "THEN TRY_CAST(split_part(_tt4, '.', 1) AS BIGINT) * 16777216 "
          "+ TRY_CAST(split_part(_tt4, '.', 2) AS BIGINT) * 65536 "
          "+ TRY_CAST(split_part(_tt4, '.', 3) AS BIGINT) * 256 "
          "+ TRY_CAST(split_part(_tt4, '.', 4) AS BIGINT) END")),
    # Lowercased IPv6 text without brackets or zone, a trailing dotted quad (`::ffff:1.2.3.4`)
    # rewritten as two hex groups; NULL when there is no ':' or the quad is invalid.
    ("tt__ip6_text", "ip",
     _let("split_part(rtrim(ltrim(lower(trim(TRY_CAST(ip AS VARCHAR))), '['), ']'), '%', 1)", "_tt6",
          "CASE WHEN NOT contains(_tt6, ':') THEN NULL "
          "WHEN NOT contains(_tt6, '.') THEN _tt6 "
          "WHEN NOT regexp_matches(_tt6, ':[0-9.]+$') THEN NULL ELSE "
          + _let("tt_ipv4_int(regexp_extract(_tt6, '([0-9.]+)$', 1))", "_tt6q",
                 "CASE WHEN _tt6q IS NOT NULL THEN regexp_replace(_tt6, '[0-9.]+$', '') "
                 "|| printf('%x:%x', _tt6q // 65536, _tt6q % 65536) END")
          + " END")),
    # IPv6 text (as tt__ip6_text returns it) as 8 groups, '::' expanded; NULL when malformed.
    ("tt__ip6_groups", "s",
     _let("s", "_ttg",
          "CASE WHEN _ttg IS NULL OR NOT regexp_full_match(_ttg, '[0-9a-f:]{2,39}') THEN NULL "
          "WHEN NOT contains(_ttg, '::') THEN CASE WHEN len(string_split(_ttg, ':')) = 8 "
          "THEN string_split(_ttg, ':') END "
          "WHEN len(string_split(_ttg, '::')) <> 2 THEN NULL "
          "ELSE tt__ip6_fill("
          "CASE WHEN split_part(_ttg, '::', 1) = '' THEN []::VARCHAR[] "
          "ELSE string_split(split_part(_ttg, '::', 1), ':') END, "
          "CASE WHEN split_part(_ttg, '::', 2) = '' THEN []::VARCHAR[] "
          "ELSE string_split(split_part(_ttg, '::', 2), ':') END) END")),
    # An IPv6 address as 32 lowercase hex digits (its 128-bit value), NULL for anything else.
    ("tt_ipv6_hex", "ip", "tt__ip6_hex_of_groups(tt__ip6_groups(tt__ip6_text(ip)))"),
    # Any address as 32 hex digits, IPv4 written IPv4-mapped (the space CIDR masks work in).
    ("tt__ip_key128", "ip",
     _let("ip", "_ttk",
          _let("tt_ipv4_int(_ttk)", "_ttk4",
               f"CASE WHEN _ttk4 IS NOT NULL THEN '{V4_MAPPED_PREFIX}' || printf('%08x', _ttk4) "
               "ELSE tt_ipv6_hex(_ttk) END"))),
    # The comparison key of an address: '4' + 8 hex digits (IPv4, also IPv4-mapped IPv6) or
    # '6' + 32 hex digits; NULL when it is not an address.
    ("tt_ip_key", "ip",
     _let("ip", "_ttk",
          _let("tt_ipv4_int(_ttk)", "_ttk4",
               "CASE WHEN _ttk4 IS NOT NULL THEN '4' || printf('%08x', _ttk4) ELSE "
               + _let("tt_ipv6_hex(_ttk)", "_ttk6",
                      f"CASE WHEN starts_with(_ttk6, '{V4_MAPPED_PREFIX}') THEN '4' || right(_ttk6, 8) "
                      "ELSE '6' || _ttk6 END")
               + " END"))),
    # A CIDR as [lowest, highest] 128-bit key (host bits cleared / set); a bare address is a
    # host route. IPv4 /n is /(96 + n) in this space. NULL when the range does not parse.
    ("tt__cidr_range128", "cidr",
     _let("trim(TRY_CAST(cidr AS VARCHAR))", "_ttc",
          _let("tt__ip_key128(split_part(_ttc, '/', 1))", "_ttck",
               _let("CASE WHEN _ttck IS NULL THEN NULL "
                    "WHEN NOT contains(_ttc, '/') THEN 128 "
                    "WHEN len(string_split(_ttc, '/')) <> 2 "
                    "OR NOT regexp_full_match(split_part(_ttc, '/', 2), '[0-9]{1,3}') THEN NULL "
                    "WHEN NOT contains(split_part(_ttc, '/', 1), ':') THEN "  # an IPv4 address
                    "CASE WHEN TRY_CAST(split_part(_ttc, '/', 2) AS INTEGER) <= 32 "
                    "THEN 96 + TRY_CAST(split_part(_ttc, '/', 2) AS INTEGER) END "
                    "WHEN TRY_CAST(split_part(_ttc, '/', 2) AS INTEGER) <= 128 "
                    "THEN TRY_CAST(split_part(_ttc, '/', 2) AS INTEGER) END", "_ttcp",
                    "CASE WHEN _ttcp IS NOT NULL "
                    "THEN [tt__mask_key(_ttck, _ttcp, false), tt__mask_key(_ttck, _ttcp, true)] END")))),
    # A CIDR as [lowest, highest] `tt_ip_key`: the IPv4 family when all of it is IPv4-mapped.
    ("tt__cidr_keys", "cidr",
     _let("tt__cidr_range128(cidr)", "_ttr",
          f"CASE WHEN _ttr IS NULL THEN NULL "
          f"WHEN starts_with(_ttr[1], '{V4_MAPPED_PREFIX}') AND starts_with(_ttr[2], '{V4_MAPPED_PREFIX}') "
          "THEN ['4' || right(_ttr[1], 8), '4' || right(_ttr[2], 8)] "
          "ELSE ['6' || _ttr[1], '6' || _ttr[2]] END")),
    # Lowest / highest `tt_ip_key` in a CIDR; NULL when it does not parse.
    ("tt_cidr_lo", "cidr", "tt__cidr_keys(cidr)[1]"),
    ("tt_cidr_hi", "cidr", "tt__cidr_keys(cidr)[2]"),
    # Is the address inside the range? NULL when either does not parse.
    ("tt_ip_in_cidr", "ip, cidr",
     _let("tt__cidr_keys(cidr)", "_ttr", "tt_ip_key(ip) BETWEEN _ttr[1] AND _ttr[2]")),
    # The address part of an `ip:<address>[/<user-agent family>]` holder id, NULL otherwise.
    ("tt_holder_ip", "h",
     "CASE WHEN starts_with(h, 'ip:') THEN nullif(split_part(substr(h, 4), '/', 1), '') END"),
)

# Helpers the macros above call; created first.
_HELPERS: tuple[tuple[str, str, str], ...] = (
    # Left groups, '::' (at least one zero group), right groups -> 8 groups or NULL.
    ("tt__ip6_fill", "l, r",
     _let("[l, r]", "_ttf",
          "CASE WHEN len(_ttf[1]) + len(_ttf[2]) <= 7 THEN list_concat(list_concat(_ttf[1], "
          "list_transform(range(8 - len(_ttf[1]) - len(_ttf[2])), lambda _ttz: '0')), _ttf[2]) END")),
    ("tt__ip6_hex_of_groups", "g",
     _let("g", "_tth6",
          "CASE WHEN len(_tth6) = 8 "
          "AND list_bool_and(list_transform(_tth6, lambda _ttx: regexp_full_match(_ttx, '[0-9a-f]{1,4}'))) "
          "THEN array_to_string(list_transform(_tth6, lambda _ttx: lpad(_ttx, 4, '0')), '') END")),
    # Keep the first p bits of a 32-hex key; fill the rest with 0 (hi = false) or 1 (hi = true).
    ("tt__mask_key", "k, p, hi",
     _let("k", "_ttmk", _let("p", "_ttmp",
          "CASE WHEN _ttmk IS NULL OR _ttmp IS NULL THEN NULL ELSE "
          "left(_ttmk, _ttmp // 4) "
          "|| CASE WHEN _ttmp % 4 = 0 THEN '' ELSE "
          + _let(f"position(substr(_ttmk, _ttmp // 4 + 1, 1) IN '{_HEX}') - 1", "_ttmn",
                 f"substr('{_HEX}', 1 + CASE WHEN hi THEN _ttmn | (15 >> (_ttmp % 4)) "
                 "ELSE _ttmn & (15 - (15 >> (_ttmp % 4))) END, 1)")
          + " END || repeat(CASE WHEN hi THEN 'f' ELSE '0' END, 32 - (_ttmp + 3) // 4) END"))),
)

ALL_NET_MACROS: tuple[tuple[str, str, str], ...] = _HELPERS + NET_MACROS


def install_net_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the macros (and their helpers) as TEMP macros on `con`. Idempotent."""
    for name, params, body in ALL_NET_MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}({params}) AS ({body})")


# ---------------------------------------------------------------------------------------------
# The same keys in Python, for the policy loader and for tests.


def _hex128(value: int) -> str:
    return format(value, "032x")


def _key128(text: str) -> str | None:
    s = text.strip(" ")  # like SQL trim(): spaces only
    if ":" in s:  # IPv6: brackets and a zone id are tolerated
        s = s.lstrip("[").rstrip("]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return _hex128((0xFFFF << 32) | int(addr))
    return _hex128(int(addr))


def _family_bounds(lo: str, hi: str) -> tuple[str, str]:
    if lo.startswith(V4_MAPPED_PREFIX) and hi.startswith(V4_MAPPED_PREFIX):
        return "4" + lo[24:], "4" + hi[24:]
    return "6" + lo, "6" + hi


def ip_key(text: str) -> str | None:
    """`tt_ip_key` in Python: the comparison key of an address, None if it is not one."""
    key = _key128(text)
    if key is None:
        return None
    return "4" + key[24:] if key.startswith(V4_MAPPED_PREFIX) else "6" + key


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR or bare address (host route), strict: host bits must be zero. Raises ValueError."""
    s = text.strip()
    if not s:
        raise ValueError("empty network")
    return ipaddress.ip_network(s, strict=True)


def network_bounds(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    """The (lo, hi) keys of a network, as `tt_cidr_lo` / `tt_cidr_hi` compute them."""
    base = (0xFFFF << 32) if isinstance(net, ipaddress.IPv4Network) else 0
    return _family_bounds(_hex128(base | int(net.network_address)),
                          _hex128(base | int(net.broadcast_address)))


def cidr_bounds(text: str) -> tuple[str, str] | None:
    """`tt_cidr_lo` / `tt_cidr_hi` in Python (host bits allowed and masked), None if invalid."""
    addr_text, slash, plen = text.strip(" ").partition("/")
    key = _key128(addr_text)
    if key is None:
        return None
    is_v4 = ":" not in addr_text
    bits = 128
    if slash:
        if not re.fullmatch("[0-9]{1,3}", plen) or int(plen) > (32 if is_v4 else 128):
            return None
        bits = int(plen) + (96 if is_v4 else 0)
    value, host = int(key, 16), (1 << (128 - bits)) - 1
    return _family_bounds(_hex128(value & ~host), _hex128(value | host))
