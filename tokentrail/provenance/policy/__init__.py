"""The policy file: what the environment says is legitimate.

A policy is a TOML file (`--policy`, default `./tokentrail.toml` when present) naming the
workloads and every identifier that is them, the delegations allowed between them, the
transports (gateways, sidecars) that re-present tokens, the trusted and NAT networks and the
token lifetime and clock skew to allow. Every section is optional; a missing file is the empty
`Policy()`.

`Policy.install(con)` writes the policy into TEMP tables so classification and rule SQL can
join it, and `holder_workload_sql` names the workload of a holder id inside any query:

    policy_workloads(name, role, internal, description)
    policy_identifiers(workload, role, internal, pattern, kind, like_pattern,
                       cidr_lo, cidr_hi, precedence)
    policy_delegations(from_workload, to_workload, audience, max_depth)
    policy_networks(kind, cidr, cidr_lo, cidr_hi)
    policy_settings(key, value)

Identifier patterns: an exact holder id; a glob where `*` matches any run of characters
(including `/`); or `ip:<address>` / `ip:<CIDR>`, which matches every `ip:` holder whose
address is in the range, with or without its `/<user-agent family>` suffix. When a holder
matches several patterns the most specific wins: exact, then the longest CIDR prefix, then the
glob with the most literal characters, then the first declared.

The package holds the policy in three parts: `patterns` (identifier patterns and how one
matches a holder id), `model` (the dataclasses and their TEMP tables / SQL), `loader` (reading
and validating the TOML, with file, line and key in every error).
"""

from .loader import (
                     DEFAULT_POLICY_NAME,
                     KeyPath,
                     PolicyError,
                     find_default_policy,
                     format_key,
                     load_policy,
                     parse_duration,
                     parse_policy,
                     resolve_policy,
)
from .model import (
                     DEFAULT_CLOCK_SKEW_S,
                     NETWORK_KINDS,
                     ROLES,
                     Delegation,
                     Networks,
                     Policy,
                     Transport,
                     Workload,
                     holder_workload_sql,
                     ip_in_network_sql,
)
from .patterns import PATTERN_KINDS, Pattern, holder_ip, parse_network_loose, parse_pattern

__all__ = [
    "DEFAULT_CLOCK_SKEW_S", "DEFAULT_POLICY_NAME", "NETWORK_KINDS", "PATTERN_KINDS", "ROLES",
    "Delegation", "KeyPath", "Networks", "Pattern", "Policy", "PolicyError", "Transport",
    "Workload", "find_default_policy", "format_key", "holder_ip", "holder_workload_sql",
    "ip_in_network_sql", "load_policy", "parse_duration", "parse_network_loose", "parse_pattern",
    "parse_policy", "resolve_policy",
]
