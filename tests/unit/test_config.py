from __future__ import annotations

import pytest

from swarm_operator.config import Settings, SettingsError


def test_defaults_are_production_sane() -> None:
    settings = Settings.from_env({})
    assert settings.lease_seconds == 600
    assert settings.lease_renew_seconds < settings.lease_seconds
    # E2B's template with Claude Code preinstalled: a first swarm installs least (README "why").
    assert settings.default_template == "anthropic-claude-code"
    # An unset spec.coordinator.install takes the operator's pin.
    from swarm_operator.model import COORDINATOR_PIN

    assert settings.coordinator_install == COORDINATOR_PIN


def test_the_coordinator_setting_takes_only_a_pin_and_names_itself() -> None:
    mirror = "claude-swarm==0.4.2"  # e.g. an air-gapped cluster's mirror
    assert Settings.from_env({"SWARM_COORDINATOR_INSTALL": mirror}).coordinator_install == mirror
    with pytest.raises(SettingsError, match="SWARM_COORDINATOR_INSTALL.*not pinned"):
        Settings.from_env({"SWARM_COORDINATOR_INSTALL": "claude-swarm"})


def test_environment_overrides_and_coerces() -> None:
    settings = Settings.from_env({"SWARM_LEASE_SECONDS": "120", "SWARM_LOG_FORMAT": "text", "PATH": "/bin"})
    assert settings.lease_seconds == 120
    assert settings.log_format == "text"


def test_unknown_setting_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="SWARM_LEASE_SECOND"):
        Settings.from_env({"SWARM_LEASE_SECOND": "60"})


def test_invalid_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="SWARM_LEASE_SECONDS"):
        Settings.from_env({"SWARM_LEASE_SECONDS": "2"})


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    named = set(re.findall(r"^# (SWARM_[A-Z_]+)=", text, flags=re.M))
    assert named == {f"SWARM_{name.upper()}" for name in Settings.model_fields}


def test_handover_lead_is_derived_from_the_init_budget_and_fits_in_the_cap() -> None:
    settings = Settings.from_env({})
    assert settings.sandbox_max_lifetime_seconds == 3600  # E2B Hobby's cap
    # One jittered renewal interval, a create, every init attempt with its backoffs.
    assert settings.handover_lead_seconds == pytest.approx(1.1 * 120 + 20 + 3 * 120 + 2 + 4)
    short = Settings.from_env({"SWARM_SANDBOX_MAX_LIFETIME_SECONDS": "300"})
    assert short.handover_lead_seconds == 150  # never more than half the cap
    assert Settings.from_env({"SWARM_SANDBOX_HANDOVER_LEAD_SECONDS": "90"}).handover_lead_seconds == 90
    with pytest.raises(SettingsError, match="sandbox_handover_lead_seconds"):
        Settings.from_env(
            {"SWARM_SANDBOX_MAX_LIFETIME_SECONDS": "60", "SWARM_SANDBOX_HANDOVER_LEAD_SECONDS": "60"}
        )
