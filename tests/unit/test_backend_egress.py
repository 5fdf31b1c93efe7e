"""The create request for every egress policy is one E2B's API accepts and enforces as meant.

Two models of E2B, each a direct reading of its server code, judge what the backend sends:

* ``e2b_refusal``: ``validateEgressRules`` (e2b-dev/infra packages/api/internal/handlers/
  sandbox_create.go) with ``IsSpecifiedIPOrCIDR``/``ParseAddressesAndDomains``
  (packages/shared/pkg/sandbox-network/firewall.go) — what would be a 400.
* ``e2b_allows``: what the sandbox may then reach: ``buildNetworkConfig``
  (packages/api/internal/orchestrator/create_instance.go) replaces denyOut with 0.0.0.0/0 when
  allowInternetAccess is false; allowed CIDRs win over denied ones; a host rule lets TCP through
  E2B's egress proxy when the connection names the host (HTTP Host / TLS SNI).

Every combination of spec.network shapes is checked against both, and against what the policy
means (``policy_allows``), on a set of probe destinations.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from swarm_operator.backend import ALL_TRAFFIC, EgressPolicy, egress_entry_refusal, network_request


def _is_ip_or_cidr(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _is_specified(entry: str) -> bool:
    # firewall.go IsSpecifiedIPOrCIDR: 0.0.0.0/0 is the one unspecified address allowed.
    if not _is_ip_or_cidr(entry):
        return False
    if entry == ALL_TRAFFIC:
        return True
    return not ipaddress.ip_address(entry.split("/")[0]).is_unspecified


def e2b_refusal(request: dict) -> str | None:
    """sandbox_create.go validateEgressRules, on the request the SDK sends."""
    network = request.get("network") or {}
    deny, allow = network.get("deny_out") or [], network.get("allow_out") or []
    for cidr in deny:
        if not _is_specified(cidr):
            return f"invalid denied CIDR {cidr}"
    if allow:
        addresses = [a for a in allow if _is_ip_or_cidr(a)]
        domains = [a for a in allow if not _is_ip_or_cidr(a)]
        for addr in addresses:
            if not _is_specified(addr):
                return f"invalid allowed address {addr}"
        if domains and ALL_TRAFFIC not in deny:
            return "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out"
    return None


def _in(ip: str, entries: list[str] | tuple[str, ...]) -> bool:
    addr = ipaddress.IPv4Address(ip)
    return any(addr in ipaddress.IPv4Network(e) for e in entries if _is_ip_or_cidr(e))


def _host_match(host: str | None, entries: list[str] | tuple[str, ...]) -> bool:
    if host is None:
        return False
    for e in entries:
        if _is_ip_or_cidr(e):
            continue
        if e == host or (e.startswith("*.") and host.endswith(e[1:])):
            return True
    return False


def e2b_allows(request: dict, ip: str, host: str | None) -> bool:
    """create_instance.go buildNetworkConfig + the firewall/proxy order (firewall.go)."""
    network = request.get("network") or {}
    allow, deny = network.get("allow_out") or [], network.get("deny_out") or []
    if request.get("allow_internet_access") is False:
        deny = [ALL_TRAFFIC]
    return _in(ip, allow) or _host_match(host, allow) or not _in(ip, deny)


def policy_allows(policy: EgressPolicy, ip: str, host: str | None) -> bool:
    """What the policy means: allowOut wins; else internet on and not denied."""
    return (
        _in(ip, policy.allow_out)
        or _host_match(host, policy.allow_out)
        or (policy.allow_internet and not _in(ip, policy.deny_out))
    )


ALLOW_SHAPES = [
    (),
    ("140.82.112.4",),
    ("140.82.112.0/20",),
    ("github.com",),
    ("*.pypi.org",),
    ("github.com", "8.8.4.4"),
    ("github.com", "0.0.0.0/0"),
]
DENY_SHAPES = [
    (),
    ("10.0.0.0/8",),
    ("140.82.0.0/16", "1.1.1.1"),
    (ALL_TRAFFIC,),
    ("169.254.0.0/16", "140.82.112.0/24"),
]
PROBES = [
    ("140.82.112.4", "github.com"),
    ("140.82.112.4", None),
    ("140.82.113.9", "example.com"),
    ("8.8.4.4", None),
    ("10.1.2.3", None),
    ("1.1.1.1", "one.one"),
    ("151.101.0.223", "files.pypi.org"),
    ("93.184.216.34", "example.com"),
    ("169.254.169.254", None),
    ("255.255.255.254", None),
    ("1.0.0.1", None),
]


@pytest.mark.parametrize(
    ("internet", "allow", "deny"), list(itertools.product([True, False], ALLOW_SHAPES, DENY_SHAPES))
)
def test_every_combination_is_accepted_and_enforced_as_meant(
    internet: bool, allow: tuple[str, ...], deny: tuple[str, ...]
) -> None:
    policy = EgressPolicy(allow_internet=internet, allow_out=allow, deny_out=deny)
    assert all(egress_entry_refusal(e, deny=False) is None for e in allow)
    assert all(egress_entry_refusal(e, deny=True) is None for e in deny)
    request = network_request(policy)
    assert e2b_refusal(request) is None, request
    assert request["allow_internet_access"] is internet
    for ip, host in PROBES:
        assert e2b_allows(request, ip, host) == policy_allows(policy, ip, host), (ip, host, request)


def test_internet_off_with_a_host_sends_all_traffic_denied() -> None:
    request = network_request(EgressPolicy(allow_internet=False, allow_out=("github.com",)))
    assert request == {
        "allow_internet_access": False,
        "network": {"allow_out": ["github.com"], "deny_out": [ALL_TRAFFIC]},
    }
    # What the naive mapping sent before: a 400 from E2B.
    naive = {"allow_internet_access": False, "network": {"allow_out": ["github.com"]}}
    assert e2b_refusal(naive) is not None


def test_internet_on_with_a_host_is_sent_as_its_exact_equivalent() -> None:
    request = network_request(EgressPolicy(allow_out=("github.com",), deny_out=("10.0.0.0/8",)))
    network = request["network"]
    assert network["deny_out"] == [ALL_TRAFFIC]
    ranges = [ipaddress.IPv4Network(e) for e in network["allow_out"] if _is_ip_or_cidr(e)]
    # The complement of the denied range (and of 0.0.0.0/8, never a destination) — nothing else.
    covered = sum(r.num_addresses for r in ranges)
    assert covered == 2**32 - 2**24 - 2**24
    assert not any(r.overlaps(ipaddress.IPv4Network("10.0.0.0/8")) for r in ranges)
    assert len(network["allow_out"]) < 40


def test_simple_policies_are_sent_unchanged() -> None:
    assert network_request(None) == {}
    assert network_request(EgressPolicy()) == {"allow_internet_access": True}
    assert network_request(EgressPolicy(deny_out=("10.0.0.0/8",), allow_out=("10.1.0.0/16",))) == {
        "allow_internet_access": True,
        "network": {"allow_out": ["10.1.0.0/16"], "deny_out": ["10.0.0.0/8"]},
    }


@pytest.mark.parametrize(
    ("entry", "deny", "refused"),
    [
        ("0.0.0.0", False, True),
        ("0.0.0.0", True, True),
        ("0.0.0.0/8", True, True),
        ("0.0.0.0/0", True, False),
        ("0.0.0.0/0", False, False),
        ("github.com", True, True),
        ("github.com", False, False),
        ("::1", False, True),
        ("10.0.0.1/8", True, True),
        ("1.2.3.4", True, False),
        ("*.example.com", False, False),
    ],
)
def test_entries_e2b_refuses(entry: str, deny: bool, refused: bool) -> None:
    assert (egress_entry_refusal(entry, deny=deny) is not None) is refused
    if not refused and (not deny or _is_ip_or_cidr(entry)):
        field = "deny_out" if deny else "allow_out"
        request = {"network": {field: [entry], **({"deny_out": [ALL_TRAFFIC]} if not deny else {})}}
        assert e2b_refusal(request) is None
