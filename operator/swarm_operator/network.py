"""Egress policy: what a sandbox may reach, from the spec, the operator's defaults and the
operator-wide list of destinations no resource may open. Plain functions; the lifecycle passes the
result to the backend's create and shows it in status.network.
"""

from __future__ import annotations

import ipaddress

from swarm_operator.backend import EgressPolicy
from swarm_operator.config import Settings
from swarm_operator.model import NetworkStatus, SwarmSandboxSpec



def egress_policy(spec: SwarmSandboxSpec, settings: Settings) -> EgressPolicy:
    """The policy a sandbox of this spec is created with: each unset spec field takes the operator's
    default, and the operator's forbidden addresses are denied on every sandbox."""
    network = spec.network
    allow_internet = network.allow_internet if network and network.allow_internet is not None \
        else settings.network_allow_internet
    allow_out = network.allow_out if network and network.allow_out is not None \
        else settings.egress_list("network_allow_out")
    deny_out = network.deny_out if network and network.deny_out is not None \
        else settings.egress_list("network_deny_out")
    forbidden = [e for e in settings.egress_list("network_forbidden_out") if _is_address(e)]
    return EgressPolicy(
        allow_internet=allow_internet,
        allow_out=tuple(dict.fromkeys(allow_out)),
        deny_out=tuple(dict.fromkeys([*deny_out, *forbidden])),
    )


def egress_problems(spec: SwarmSandboxSpec, settings: Settings) -> list[str]:
    """allowOut entries that would open a destination the operator forbids for every resource.

    E2B lets allowOut win over denyOut, so denying the forbidden addresses is not enough: an
    allowOut entry overlapping one (a CIDR overlapping a forbidden CIDR, a host matching a
    forbidden host pattern, or a pattern covering a forbidden host) is refused.
    """
    forbidden = settings.egress_list("network_forbidden_out")
    allowed = egress_policy(spec, settings).allow_out
    problems = []
    for entry in allowed:
        hit = next((f for f in forbidden if _overlaps(entry, f)), None)
        if hit is not None:
            where = "spec.network.allowOut" if spec.network and spec.network.allow_out is not None \
                else "SWARM_NETWORK_ALLOW_OUT (operator default)"
            problems.append(f"{where}: {entry!r} opens {hit!r}, which the operator forbids for "
                            f"every resource")
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
    return NetworkStatus(allow_internet=policy.allow_internet, allow_out=list(policy.allow_out),
                         deny_out=list(policy.deny_out))
