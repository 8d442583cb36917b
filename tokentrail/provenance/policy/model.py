"""What a policy says, as data: workloads, transports, delegations, networks and settings, and
how they reach SQL (TEMP tables that classification and rules join, `holder_workload_sql`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tokentrail.provenance.netmatch import install_net_macros, network_bounds, parse_network

from .patterns import PATTERN_KINDS, Pattern, parse_pattern

DEFAULT_CLOCK_SKEW_S = 120

ROLES = ("workload", "transport")
NETWORK_KINDS = ("trusted", "nat")


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Workload:
    """A named workload and every identifier that is it (replicas, NAT egress, aliases)."""

    name: str
    identifiers: tuple[str, ...]
    internal: bool = True
    description: str | None = None


@dataclass(frozen=True)
class Transport:
    """A gateway or sidecar that legitimately re-presents tokens it did not receive."""

    name: str
    identifiers: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True)
class Delegation:
    """`from_workload` may hand authority to each of `to` (for `audiences`, or any when empty),
    with act chains up to `max_depth` long."""

    from_workload: str
    to: tuple[str, ...]
    audiences: tuple[str, ...] = ()
    max_depth: int = 1
    description: str | None = None


@dataclass(frozen=True)
class Networks:
    """Normalised CIDRs ("10.0.0.0/8"; a bare address becomes a /32 or /128)."""

    trusted: tuple[str, ...] = ()
    nat: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A validated policy. `Policy()` is the empty policy used when there is no file."""

    path: Path | None = None
    max_token_lifetime_s: int | None = None
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S
    workloads: tuple[Workload, ...] = ()
    delegations: tuple[Delegation, ...] = ()
    transports: tuple[Transport, ...] = ()
    networks: Networks = field(default_factory=Networks)

    @property
    def is_empty(self) -> bool:
        return not (self.workloads or self.delegations or self.transports
                    or self.networks.trusted or self.networks.nat
                    or self.max_token_lifetime_s is not None
                    or self.clock_skew_s != DEFAULT_CLOCK_SKEW_S)

    def workload(self, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.name == name), None)

    def identifier_rows(self) -> list[tuple[str, str, bool, Pattern, int]]:
        """(name, role, internal, pattern, precedence) for every identifier, best match first."""
        entries: list[tuple[str, str, bool, Pattern]] = []
        for w in self.workloads:
            entries += [(w.name, "workload", w.internal, parse_pattern(i)) for i in w.identifiers]
        for t in self.transports:
            entries += [(t.name, "transport", True, parse_pattern(i)) for i in t.identifiers]
        order = sorted(range(len(entries)), key=lambda n: (PATTERN_KINDS.index(entries[n][3].kind),
                                                             -entries[n][3].specificity, n))
        return [(*entries[n], rank) for rank, n in enumerate(order)]

    def workload_of(self, holder_id: str, role: str | None = "workload") -> str | None:
        """The workload (or transport) name of a holder id, as `holder_workload_sql` finds it."""
        _check_role(role)
        for name, r, _internal, pattern, _rank in self.identifier_rows():
            if (role is None or r == role) and pattern.matches(holder_id):
                return name
        return None

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)create the policy_* TEMP tables on `con` (and the netmatch macros they need).

        The empty policy creates the same tables, empty, with default settings, so SQL written
        against them always binds.
        """
        install_net_macros(con)
        con.execute("CREATE OR REPLACE TEMP TABLE policy_workloads (name VARCHAR NOT NULL, "
                    "role VARCHAR NOT NULL, internal BOOLEAN NOT NULL, description VARCHAR)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_identifiers (workload VARCHAR NOT NULL, "
                    "role VARCHAR NOT NULL, internal BOOLEAN NOT NULL, pattern VARCHAR NOT NULL, "
                    "kind VARCHAR NOT NULL, like_pattern VARCHAR, cidr_lo VARCHAR, cidr_hi VARCHAR, "
                    "precedence INTEGER NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_delegations (from_workload VARCHAR NOT NULL, "
                    "to_workload VARCHAR NOT NULL, audience VARCHAR, max_depth INTEGER NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_networks (kind VARCHAR NOT NULL, "
                    "cidr VARCHAR NOT NULL, cidr_lo VARCHAR NOT NULL, cidr_hi VARCHAR NOT NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE policy_settings (key VARCHAR NOT NULL, value BIGINT)")

        workloads = [(w.name, "workload", w.internal, w.description) for w in self.workloads]
        workloads += [(t.name, "transport", True, t.description) for t in self.transports]
        identifiers = [(name, role, internal, p.text, p.kind, p.like, p.lo, p.hi, rank)
                       for name, role, internal, p, rank in self.identifier_rows()]
        delegations = [(d.from_workload, to, aud, d.max_depth)
                       for d in self.delegations for to in d.to for aud in (d.audiences or (None,))]
        networks = [(kind, cidr, *network_bounds(parse_network(cidr)))
                    for kind, cidrs in (("trusted", self.networks.trusted), ("nat", self.networks.nat))
                    for cidr in cidrs]
        settings = [("max_token_lifetime_s", self.max_token_lifetime_s), ("clock_skew_s", self.clock_skew_s)]
        for table, rows in (("policy_workloads", workloads), ("policy_identifiers", identifiers),
                            ("policy_delegations", delegations), ("policy_networks", networks),
                            ("policy_settings", settings)):
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _check_role(role: str | None) -> None:
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES} or None, not {role!r}")


def holder_workload_sql(holder_expr: str, role: str | None = "workload") -> str:
    """A scalar-subquery SQL expression: the workload name of the holder id `holder_expr`, or
    NULL. `role="transport"` names transports instead, `role=None` either.

    Needs `Policy.install(con)` first. `holder_expr` is evaluated in the enclosing query;
    qualify its columns (`e.holder_id`). Cost is a join of each distinct holder with the
    policy's identifiers: apply it to holders, not to raw events, on large cases.
    """
    _check_role(role)
    role_cond = "" if role is None else f"_tt_pi.role = '{role}' AND "
    return (
        "(SELECT _tt_pi.workload FROM "
        "(SELECT _tt_h0._tt_holder, tt_ip_key(tt_holder_ip(_tt_h0._tt_holder)) AS _tt_key "
        f"FROM (SELECT CAST(({holder_expr}) AS VARCHAR) AS _tt_holder) AS _tt_h0) AS _tt_h "
        f"JOIN policy_identifiers AS _tt_pi ON {role_cond}("
        "(_tt_pi.kind = 'exact' AND _tt_pi.pattern = _tt_h._tt_holder) "
        "OR (_tt_pi.kind = 'glob' AND _tt_h._tt_holder LIKE _tt_pi.like_pattern ESCAPE '\\') "
        "OR (_tt_pi.kind = 'cidr' AND _tt_h._tt_key BETWEEN _tt_pi.cidr_lo AND _tt_pi.cidr_hi)) "
        "ORDER BY _tt_pi.precedence LIMIT 1)"
    )


def ip_in_network_sql(ip_expr: str, kind: str | None = None) -> str:
    """A boolean SQL expression: is the address `ip_expr` inside a declared network of `kind`
    ('trusted' or 'nat'; None = either)? False for junk or NULL addresses. For a holder id, pass
    `tt_holder_ip(<holder expr>)`."""
    if kind is not None and kind not in NETWORK_KINDS:
        raise ValueError(f"kind must be one of {NETWORK_KINDS} or None, not {kind!r}")
    kind_cond = "" if kind is None else f"_tt_pn.kind = '{kind}' AND "
    return (f"EXISTS (SELECT 1 FROM policy_networks AS _tt_pn WHERE {kind_cond}"
            f"tt_ip_key({ip_expr}) BETWEEN _tt_pn.cidr_lo AND _tt_pn.cidr_hi)")
