"""SQL fragments the classification steps share: a holder's address and /24, names inside
SPIFFE IDs and client ids, device families from user agents, private address space, and the
policy's questions (`PolicySQL`), so each step reads as evidence rather than string handling."""

from __future__ import annotations

from dataclasses import dataclass

CLASSES = ("owner", "delegate", "transport", "forwarded", "stolen", "suspicious", "unknown")
DEFAULT_SKEW_SECONDS = 120

# Private and link-local address space: a network-tier holder here is inside someone's network.
_PRIVATE_PREFIXES = ("10.", "192.168.", "127.", "169.254.", "fc", "fd", "fe80:", "::1")


@dataclass(frozen=True)
class PolicySQL:
    """SQL fragments the classifier asks of a policy (all optional; no policy = evidence only).

    Each is an expression over a holder id expression `h` (use `{h}` in the template).
    """

    workload_of: str = "CAST(NULL AS VARCHAR)"  # workload name a holder belongs to
    is_transport: str = "false"  # declared gateway / sidecar
    in_nat: str = "false"  # holder address inside a declared NAT / egress range
    is_trusted_net: str = "NULL"  # address inside a declared trusted network (NULL: unknown)
    skew_seconds: int = DEFAULT_SKEW_SECONDS

    def of(self, template: str, h: str) -> str:
        return "(" + template.replace("{h}", h) + ")"


def _holder_ip(h: str) -> str:
    return f"CASE WHEN starts_with({h}, 'ip:') THEN split_part(substr({h}, 4), '/', 1) END"


def _same_v4_net(ip: str, other: str) -> str:
    """Both IPv4 and in one /24: the granularity of cloud NAT gateways and carrier egress pools."""
    return (f"coalesce({ip} <> {other} AND regexp_full_match({ip}, '\\d+\\.\\d+\\.\\d+\\.\\d+') "
            f"AND regexp_full_match({other}, '\\d+\\.\\d+\\.\\d+\\.\\d+') "
            f"AND regexp_replace({ip}, '\\.\\d+$', '') = regexp_replace({other}, '\\.\\d+$', ''), false)")


def _spiffe_name(h: str) -> str:
    """Last path segment of a SPIFFE ID (Istio: the service account): a workload's name."""
    return f"CASE WHEN starts_with({h}, 'spiffe://') THEN regexp_extract({h}, '/([^/]+)$', 1) END"


def _name_of(x: str) -> str:
    """A comparable short name for an identity: SPIFFE service account, client id, agent id."""
    return (f"CASE WHEN {x} IS NULL THEN NULL WHEN starts_with({x}, 'spiffe://') THEN {_spiffe_name(x)} "
            f"WHEN starts_with({x}, 'client:') OR starts_with({x}, 'agent:') "
            f"THEN substr({x}, strpos({x}, ':') + 1) ELSE {x} END")


def _norm_name(x: str) -> str:
    """A name compared across namespaces: lowercase, space / '_' / '.' as '-' (an IdP app
    labelled "Orders Sync" and the service account orders-sync). Plain replace(): portable."""
    return (f"trim(replace(replace(replace(replace(lower({x}), ' ', '-'), '_', '-'), '.', '-'), "
            f"'--', '-'), '-')")


def _net24(ip: str) -> str:
    """The /24 of an IPv4 address (an egress pool's granularity), else the address itself."""
    return (f"CASE WHEN regexp_full_match({ip}, '\\d+\\.\\d+\\.\\d+\\.\\d+') "
            f"THEN regexp_replace({ip}, '\\.\\d+$', '') ELSE {ip} END")


def _device_family(ua: str) -> str:
    """A user agent's product and platform without versions ("Mozilla/5.0 (iPhone; CPU ...)"
    -> mozilla/iphone, "python-requests/2.31" -> python-requests/): stays when the device
    changes networks or updates, differs between a phone, a laptop and a script. Every browser
    is "Mozilla", so the product alone would not tell one device from another."""
    return (f"CASE WHEN tt_ua_family({ua}) IS NOT NULL THEN tt_ua_family({ua}) || '/' "
            f"|| lower(regexp_extract({ua}, '\\(\\s*([^;)\\s]+)', 1)) END")


def _private(ip: str) -> str:
    tests = " OR ".join(f"starts_with({ip}, '{p}')" for p in _PRIVATE_PREFIXES)
    rfc1918_172 = (f"(starts_with({ip}, '172.') AND TRY_CAST(split_part({ip}, '.', 2) AS INTEGER) "
                   "BETWEEN 16 AND 31)")
    return f"({tests} OR {rfc1918_172})"
