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
    settings = Settings.from_env({"SWARM_LEASE_SECONDS": "120", "SWARM_LOG_FORMAT": "text",
                                  "PATH": "/bin"})
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
