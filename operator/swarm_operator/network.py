"""Egress policy: what a sandbox may reach, from the spec, the operator's defaults and the
operator-wide list of destinations no resource may open. Plain functions; the lifecycle passes the
result to the backend's create and shows it in status.network.

Every policy :func:`egress_problems` passes is one E2B's API accepts: the backend
(``network_request``) writes it the way E2B takes it (host names in allowOut need ``0.0.0.0/0``
denied; internet on with host rules is sent as its exact equivalent). Host rules filter only what
E2B's egress proxy sees — HTTP (Host header) and HTTPS (TLS SNI); everything else is filtered by
IPv4 address only.
"""

from __future__ import annotations

import ipaddress

from swarm_operator.backend import EgressPolicy, egress_entry_refusal
from swarm_operator.config import Settings
from swarm_operator.model import NetworkStatus, SwarmSandboxSpec


def egress_policy(spec: SwarmSandboxSpec, settings: Settings) -> EgressPolicy:
    """The policy a sandbox of this spec is created with: each unset spec field takes the operator's
    default, and the operator's forbidden addresses are denied on every sandbox."""
    network = spec.network
    allow_internet = (
        network.allow_internet
        if network and network.allow_internet is not None
        else settings.network_allow_internet
    )
    allow_out = (
        network.allow_out
        if network and network.allow_out is not None
        else settings.egress_list("network_allow_out")
    )
    deny_out = (
        network.deny_out
        if network and network.deny_out is not None
        else settings.egress_list("network_deny_out")
    )
    forbidden = [e for e in settings.egress_list("network_forbidden_out") if _is_address(e)]
    return EgressPolicy(
        allow_internet=allow_internet,
        allow_out=tuple(dict.fromkeys(allow_out)),
        deny_out=tuple(dict.fromkeys([*deny_out, *forbidden])),
    )


def egress_problems(spec: SwarmSandboxSpec, settings: Settings) -> list[str]:
    """Why this spec's egress cannot be created, each naming the field (or setting) to fix; empty
    when E2B will accept it. The lifecycle calls it before any create (InvalidSpec).

    Two kinds: entries E2B's API refuses (``egress_entry_refusal``: host names or the unspecified
    address 0.0.0.0 in denyOut, 0.0.0.0 CIDRs other than 0.0.0.0/0, IPv6), and allowOut entries
    that would open a destination the operator forbids for every resource — E2B lets allowOut win
    over denyOut, so denying the forbidden addresses is not enough: an allowOut entry overlapping
    one (a CIDR overlapping a forbidden CIDR, a host matching a forbidden host pattern, or a
    pattern covering a forbidden host) is refused.
    """
    forbidden = settings.egress_list("network_forbidden_out")
    policy = egress_policy(spec, settings)
    allowed = policy.allow_out
    problems = []
    network = spec.network
    sources = (
        (
            "spec.network.allowOut",
            "SWARM_NETWORK_ALLOW_OUT (operator default)",
            network.allow_out if network else None,
            "network_allow_out",
            False,
        ),
        (
            "spec.network.denyOut",
            "SWARM_NETWORK_DENY_OUT (operator default)",
            network.deny_out if network else None,
            "network_deny_out",
            True,
        ),
    )
    for field, setting, given, name, deny in sources:
        entries, where = (given, field) if given is not None else (settings.egress_list(name), setting)
        problems += [f"{where}: {why}" for e in entries if (why := egress_entry_refusal(e, deny=deny))]
    problems += [
        f"SWARM_NETWORK_FORBIDDEN_OUT: {why}"
        for e in forbidden
        if _is_address(e) and (why := egress_entry_refusal(e, deny=True))
    ]
    for entry in allowed:
        hit = next((f for f in forbidden if _overlaps(entry, f)), None)
        if hit is not None:
            where = (
                "spec.network.allowOut"
                if spec.network and spec.network.allow_out is not None
                else "SWARM_NETWORK_ALLOW_OUT (operator default)"
            )
            problems.append(
                f"{where}: {entry!r} opens {hit!r}, which the operator forbids for every resource"
            )
    return problems


def _is_address(entry: str) -> bool:
    return all(c in "0123456789./" for c in entry)


def _overlaps(entry: str, forbidden: str) -> bool:
    if _is_address(entry) != _is_address(forbidden):
        return False  # an address and a name cannot be compared without resolving the name
    if _is_address(entry):
        return ipaddress.IPv4Network(entry).overlaps(ipaddress.IPv4Network(forbidden))

    def covers(pattern: str, host: str) -> bool:
        base = pattern.removeprefix("*.")
        return host == pattern or (pattern.startswith("*.") and (host == base or host.endswith("." + base)))

    return covers(forbidden, entry.removeprefix("*.")) or covers(entry, forbidden.removeprefix("*."))


def network_status(policy: EgressPolicy) -> NetworkStatus:
    """The policy as status.network shows it."""
    return NetworkStatus(
        allow_internet=policy.allow_internet, allow_out=list(policy.allow_out), deny_out=list(policy.deny_out)
    )
