"""Egress policy: the operator's defaults and forbidden destinations merged with spec.network, and
the rules a regex cannot say (overlaps with forbidden destinations, settings refused at start)."""

from __future__ import annotations

import pytest

from swarm_operator.config import Settings, SettingsError
from swarm_operator.model import SwarmSandboxSpec
from swarm_operator.network import egress_policy, egress_problems


def _settings(**env: str) -> Settings:
    return Settings.from_env({f"SWARM_{k.upper()}": v for k, v in env.items()})


def test_unset_fields_take_the_defaults_and_forbidden_addresses_are_always_denied() -> None:
    settings = _settings(
        network_allow_internet="false",
        network_allow_out="pypi.org",
        network_deny_out="10.0.0.0/8",
        network_forbidden_out="169.254.0.0/16,*.evil.example",
    )
    policy = egress_policy(SwarmSandboxSpec.from_body({}), settings)
    assert (policy.allow_internet, policy.allow_out, policy.deny_out) == (
        False,
        ("pypi.org",),
        ("10.0.0.0/8", "169.254.0.0/16"),
    )
    spec = SwarmSandboxSpec.from_body({"network": {"allowInternet": True, "denyOut": []}})
    policy = egress_policy(spec, settings)
    assert (policy.allow_internet, policy.allow_out, policy.deny_out) == (
        True,
        ("pypi.org",),
        ("169.254.0.0/16",),
    )


@pytest.mark.parametrize(
    ("allow", "refused"),
    [
        ("169.254.169.254", True),
        ("169.0.0.0/8", True),
        ("169.255.0.0/16", False),
        ("a.evil.example.com", True),
        ("evil.example.com", True),
        ("*.example.com", True),
        ("notevil.example.com", False),
        ("api.anthropic.com", False),
    ],
)
def test_allow_out_may_not_reopen_a_forbidden_destination(allow: str, refused: bool) -> None:
    settings = _settings(network_forbidden_out="169.254.0.0/16,*.evil.example.com")
    problems = egress_problems(SwarmSandboxSpec.from_body({"network": {"allowOut": [allow]}}), settings)
    assert bool(problems) is refused
    assert all(p.startswith("spec.network.allowOut: ") for p in problems)


@pytest.mark.parametrize(
    "env",
    [
        {"network_deny_out": "example.com"},
        {"network_allow_out": "10.0.0.1/8"},
        {"network_forbidden_out": "a b"},
        {"sandbox_user": "root user"},
    ],
)
def test_malformed_egress_settings_stop_the_operator_at_start(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=f"SWARM_{next(iter(env)).upper()}"):
        _settings(**env)


@pytest.mark.parametrize(
    ("network", "env", "named"),
    [
        ({"denyOut": ["0.0.0.0"]}, {}, "spec.network.denyOut: '0.0.0.0'"),
        ({"allowOut": ["0.0.0.0/8"]}, {}, "spec.network.allowOut: '0.0.0.0/8'"),
        ({}, {"network_deny_out": "0.0.0.0/8"}, "SWARM_NETWORK_DENY_OUT (operator default): '0.0.0.0/8'"),
        ({}, {"network_allow_out": "0.0.0.0"}, "SWARM_NETWORK_ALLOW_OUT (operator default): '0.0.0.0'"),
    ],
)
def test_entries_the_e2b_api_refuses_are_invalid_spec_naming_the_field(
    network: dict, env: dict[str, str], named: str
) -> None:
    """e2b-dev/infra sandbox_create.go validateEgressRules: 0.0.0.0 (other than 0.0.0.0/0) is a 400."""
    problems = egress_problems(SwarmSandboxSpec.from_body({"network": network}), _settings(**env))
    assert len(problems) == 1 and problems[0].startswith(named), problems


@pytest.mark.parametrize(
    "network",
    [
        {"allowInternet": False, "allowOut": ["github.com"]},
        {"allowInternet": True, "allowOut": ["github.com", "*.pypi.org"], "denyOut": ["10.0.0.0/8"]},
        {"allowOut": ["github.com"], "denyOut": ["0.0.0.0/0"]},
        {"allowInternet": False},
        {"denyOut": ["169.254.169.254"]},
    ],
)
def test_every_valid_network_shape_passes(network: dict) -> None:
    assert egress_problems(SwarmSandboxSpec.from_body({"network": network}), _settings()) == []
