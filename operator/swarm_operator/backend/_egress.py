"""E2B's egress rules, read from its own code: which allowOut/denyOut entries its API accepts, and
how a policy is written so that E2B enforces exactly that policy.

Kept apart from the backend's calls because the lifecycle asks it too (to refuse a spec before any
create) and because it is pure data work on addresses, testable without a sandbox.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ._protocol import EgressPolicy

__all__ = ["ALL_TRAFFIC", "egress_entry_refusal", "network_request"]

#: E2B's "all traffic" CIDR (e2b-dev/infra packages/shared/pkg/sandbox-network/firewall.go:
#: AllInternetTrafficCIDR), the only unspecified-address entry its API accepts.
ALL_TRAFFIC = "0.0.0.0/0"
#: "This network" (RFC 1122): never a destination, and E2B refuses any CIDR whose address is
#: 0.0.0.0 other than ALL_TRAFFIC (IsSpecifiedIPOrCIDR), so complements leave it out.
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def egress_entry_refusal(entry: str, *, deny: bool) -> str | None:
    """Why E2B's API would refuse this allowOut (``deny=False``) or denyOut entry, or None.

    The rules of e2b-dev/infra packages/api/internal/handlers/sandbox_create.go
    (``validateEgressRules``) with packages/shared/pkg/sandbox-network/firewall.go: denyOut takes
    IPs/CIDRs only; allowOut IPs, CIDRs or domain names; an address or CIDR whose IP is the
    unspecified 0.0.0.0 is refused except ``0.0.0.0/0`` itself. E2B's firewall is IPv4 only
    (``AddressStringToCIDR``), so IPv6 is refused here rather than failing inside E2B.
    """
    if _is_address(entry):
        try:
            net = ipaddress.IPv4Network(entry, strict=True)
        except ValueError as exc:
            return f"{entry!r} is not a valid IPv4 address or CIDR ({exc})"
        if entry != ALL_TRAFFIC and net.network_address == ipaddress.IPv4Address(0):
            return (
                f"{entry!r} starts at the unspecified address 0.0.0.0, which E2B refuses "
                f"(only {ALL_TRAFFIC} may)"
            )
        return None
    if ":" in entry:
        return f"{entry!r}: E2B's egress firewall is IPv4 only"
    if deny:
        return f"{entry!r} is a host name; E2B denies traffic by IPv4 address or CIDR only"
    return None


def _is_address(entry: str) -> bool:
    return bool(entry) and all(c in "0123456789./" for c in entry)


def _complement(deny: list[str]) -> list[str]:
    """IPv4 space minus ``deny`` (and 0.0.0.0/8), as few CIDRs as possible."""
    holes = ipaddress.collapse_addresses([*(ipaddress.IPv4Network(d) for d in deny), _THIS_NETWORK])
    remaining = [ipaddress.IPv4Network(ALL_TRAFFIC)]
    for hole in holes:
        nxt: list[ipaddress.IPv4Network] = []
        for block in remaining:
            if hole.subnet_of(block):
                nxt.extend(block.address_exclude(hole))
            elif not block.subnet_of(hole):
                nxt.append(block)
        remaining = nxt
    return [str(n) for n in ipaddress.collapse_addresses(remaining)]


def network_request(policy: EgressPolicy | None) -> dict[str, Any]:
    """The SDK's create options for an egress policy — ``allow_internet_access`` and ``network``
    (``allow_out``/``deny_out``) — written so that E2B's API accepts them and enforces exactly the
    policy. The SDK builds the request (never raw HTTP from here). The policy's entries must have
    passed :func:`egress_entry_refusal` (the lifecycle refuses the spec before any create).

    E2B's rules (e2b-dev/infra packages/api/internal/handlers/sandbox_create.go,
    packages/api/internal/orchestrator/create_instance.go):

    * a domain in allowOut is a 400 unless denyOut contains ``0.0.0.0/0``, and that check reads
      the request's denyOut only, not ``allowInternetAccess``;
    * ``allowInternetAccess: false`` replaces whatever denyOut says with ``0.0.0.0/0``;
    * allowOut wins over denyOut.

    So: internet off sends denyOut ``[0.0.0.0/0]`` (what E2B enforces anyway, and what lets host
    names through validation). Internet on with host names in allowOut and no ``0.0.0.0/0``
    denied is sent as its exact equivalent: denyOut ``[0.0.0.0/0]`` and allowOut = the policy's
    entries plus every IPv4 range *not* in its denyOut (the complement), so each address the policy
    allows stays allowed, each it denies stays denied unless a host rule lets it through.

    Host rules filter only what E2B's egress proxy sees: TCP goes through that proxy, which matches
    a host name against the TLS SNI (HTTPS) or the Host header (HTTP)
    (packages/orchestrator/pkg/sandbox/network/firewall.go, egressproxy.go). Other protocols, and
    TCP that carries neither, are filtered by address only.
    """
    if policy is None:
        return {}
    allow = list(policy.allow_out)
    deny = list(policy.deny_out)
    has_hosts = any(not _is_address(e) for e in allow)
    if not policy.allow_internet:
        deny = [ALL_TRAFFIC]
    elif has_hosts and ALL_TRAFFIC not in deny:
        allow = [*dict.fromkeys([*allow, *_complement(deny)])]
        deny = [ALL_TRAFFIC]
    network: dict[str, Any] = {}
    if allow:
        network["allow_out"] = allow
    if deny:
        network["deny_out"] = deny
    options: dict[str, Any] = {"allow_internet_access": policy.allow_internet}
    if network:
        options["network"] = network
    return options
