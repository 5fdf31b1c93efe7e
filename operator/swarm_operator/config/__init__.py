"""Operator-wide settings, read once from the environment.

Every knob has a production-sane default so ``swarm-operator run`` works with no configuration beyond a
kubeconfig and the default API-key Secret. Settings are a frozen pydantic model: they are validated at
start-up (a typo'd number fails fast with the variable's name) and then passed around explicitly, never
read from the environment again deep inside the lifecycle.

The fields are grouped by concern: a sandbox's life (:mod:`._sandbox`), the limits and prices of
what the operator makes (:mod:`._policy`), and the process itself (here). :class:`Settings` is the
one public class.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from pydantic import ConfigDict, Field, ValidationError, field_validator

from swarm_operator.config._policy import PolicySettings
from swarm_operator.config._sandbox import SandboxSettings

ENV_PREFIX = "SWARM_"


class Settings(SandboxSettings, PolicySettings):
    """Operator-wide settings. Each field maps to ``SWARM_<FIELD_NAME_UPPER>`` in the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operator_id: str = Field(
        default_factory=lambda: socket.gethostname() or "swarm-operator",
        min_length=1,
        max_length=63,
        description="Tag written on every sandbox this operator creates; tells operators apart.",
    )

    namespace: str = Field(
        default="swarm-system",
        description="The operator's own namespace, where the default API-key Secret lives.",
    )

    default_api_key_secret: str = Field(
        default="e2b-api-key",
        description="Name of the Secret used when a resource names no e2b.apiKeySecretRef.",
    )

    default_api_key_secret_key: str = Field(
        default="api-key", description="Key inside the default Secret holding the E2B API key."
    )

    sweep_interval_seconds: float = Field(
        default=300.0, ge=1, description="How often the orphan sweeper looks for orphaned sandboxes."
    )

    sweep_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a sandbox must stay orphaned before the sweeper kills it.",
    )

    kube_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Timeout for one Kubernetes API call made by the operator."
    )

    retry_delay_seconds: float = Field(
        default=5.0, gt=0, description="First delay before kopf retries a failed reconcile."
    )

    max_retry_delay_seconds: float = Field(
        default=300.0, gt=0, description="Cap for the growing delay between reconcile retries."
    )

    secret_check_seconds: float = Field(
        default=60.0,
        ge=1,
        description=(
            "How often each resource's referenced Secrets are read again to notice a rotation"
            " (one GET per Secret: no cluster-wide Secret watch)."
        ),
    )

    shard: str = Field(
        default="",
        pattern=r"^(\d{1,3}/\d{1,3})?$",
        description=(
            "'i/N': this process is shard i of N (0 <= i < N, N >= 2): it serves only SwarmSandboxes"
            " labelled claudeswarm.io/shard=i, and labels unlabelled ones by a hash of their uid."
            " Empty: unsharded (every resource in scope)."
        ),
    )

    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus port; 0 = off.")

    log_format: str = Field(
        default="json", pattern="^(json|text)$", description="json (one object a line) or text."
    )

    log_level: str = Field(
        default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Root log level."
    )

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str) -> str:
        index, _, shards = value.partition("/")
        if value and not 0 <= int(index) < int(shards) >= 2:
            raise ValueError(f"{value!r}: needs at least 2 shards and 0 <= index < shards")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SWARM_*`` variables; unknown ``SWARM_*`` names are an error.

        Failing on unknown names catches typos (``SWARM_LEASE_SECOND=60``) that would otherwise be
        silently ignored while the operator runs with a default nobody intended.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        known = set(cls.model_fields)
        unknown: list[str] = []
        for key, value in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field in known:
                values[field] = value
            elif field not in _FOREIGN_SWARM_VARIABLES:
                unknown.append(key)
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(problems) from None


class SettingsError(ValueError):
    """The environment holds a setting that cannot be used; the message names the variable."""


# Variables with our prefix that are not operator settings (set by tests or the playground).
_FOREIGN_SWARM_VARIABLES = frozenset({"test_no_hard_exit"})
