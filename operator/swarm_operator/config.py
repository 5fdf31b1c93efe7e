"""Operator-wide settings, read once from the environment.

Every knob has a production-sane default so ``swarm-operator run`` works with no configuration beyond a
kubeconfig and the default API-key Secret. Settings are a frozen pydantic model: they are validated at
start-up (a typo'd number fails fast with the variable's name) and then passed around explicitly, never
read from the environment again deep inside the lifecycle.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "SWARM_"


class Settings(BaseModel):
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
    default_template: str = Field(
        default="anthropic-claude-code",
        min_length=1,
        description=(
            "E2B template used when a resource names none. E2B's anthropic-claude-code ships the"
            " Claude Code CLI (and a newer Node than base), so a first swarm installs least; any"
            " Debian-based template with passwordless sudo works (the setup installs what is"
            " missing once), and one built by 'swarm-operator template --build' installs nothing."
        ),
    )
    coordinator_install: str = Field(
        default_factory=lambda: _coordinator_pin(),
        min_length=1,
        max_length=512,
        description=(
            "The coordinator a resource gets when its spec.coordinator.install is unset: a pinned"
            " 'name==X.Y.Z', a 'git+https://...@<40-hex SHA>' URL or 'preinstalled'. Air-gapped"
            " clusters point it at their own mirror's pin."
        ),
    )
    lease_seconds: int = Field(
        default=600,
        ge=5,
        le=86_400,
        description=(
            "E2B timeout given to each sandbox and renewed while its resource exists: the dead-man's"
            " switch. If the operator is gone for good, a sandbox costs at most one lease."
        ),
    )
    lease_renew_seconds: int = Field(
        default=120, ge=1, description="How often leases are renewed (well under lease_seconds)."
    )
    sandbox_max_lifetime_seconds: int = Field(
        default=3600,
        ge=30,
        le=86_400,
        description=(
            "The E2B plan's lifetime cap, counted from a sandbox's start (Hobby 3600, Pro 86400):"
            " leases and creates never ask past it, and before it the swarm is handed over to a new"
            " sandbox (unless ttlSeconds ends it first)."
        ),
    )
    sandbox_handover_lead_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "How long before the lifetime cap the hand-over to a new sandbox starts. Unset: one lease"
            " renewal interval plus a create and the initialisation budget, at most half the cap."
        ),
    )
    orphan_timeout_seconds: int = Field(
        default=3600,
        ge=30,
        le=86_400,
        description=(
            "E2B timeout given to a sandbox released by deletionPolicy: Orphan (no one renews its"
            " lease any more). E2B caps it at 1 h on Hobby and 24 h on Pro plans."
        ),
    )
    sweep_interval_seconds: float = Field(
        default=300.0, ge=1, description="How often the orphan sweeper looks for orphaned sandboxes."
    )
    sweep_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a sandbox must stay orphaned before the sweeper kills it.",
    )
    ready_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long the in-sandbox setup waits for every agent to come alive.",
    )
    init_attempts: int = Field(
        default=3, ge=1, le=20, description="Initialisation attempts on one sandbox before Failed."
    )
    init_backoff_seconds: float = Field(
        default=2.0, ge=0, description="First pause between initialisation attempts (doubles)."
    )
    delete_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long agents get to exit after Ctrl-C before their sandbox is killed.",
    )
    delete_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Upper bound on one teardown before it is retried."
    )
    control_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Timeout for one E2B control-plane call."
    )
    command_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Timeout for one command run inside a sandbox."
    )
    command_output_limit_bytes: int = Field(
        default=1024 * 1024,
        ge=4096,
        le=64 * 1024 * 1024,
        description=(
            "Most bytes one command in a sandbox may print per stream (stdout, stderr); past it the"
            " command is killed (OutputLimitExceeded), so no sandbox can grow the operator's memory."
        ),
    )
    probe_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description=(
            "Timeout for one health probe in a sandbox. A probe reads a few lines of tmux state;"
            " one that runs this long was made to hang by something in the sandbox."
        ),
    )
    quarantine_after: int = Field(
        default=5,
        ge=1,
        le=100,
        description=(
            "Health probes in a row a sandbox may misbehave on (output past the cap, a hang to the"
            " probe timeout, an unreadable report) before it is killed and its resource Failed with"
            " reason SandboxQuarantined. Probes back off (doubling) in between."
        ),
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
    creations_per_minute: float | None = Field(
        default=30.0, gt=0, description="Operator-wide sandbox creations per minute; unset = no limit."
    )
    creations_per_hour: float | None = Field(
        default=None, gt=0, description="Operator-wide sandbox creations per hour; unset = no limit."
    )
    max_sandboxes_per_namespace: int | None = Field(
        default=20,
        ge=0,
        description=(
            "Live sandboxes allowed per namespace (more wait, reason RateLimited); a bound on what"
            " one tenant can make the platform pay for. Raise it for a namespace-heavy workload."
        ),
    )
    default_key_namespaces: str = Field(
        default="default",
        description=(
            "Comma-separated namespaces (glob patterns such as team-*; * = every namespace) whose"
            " resources may omit spec.e2b.apiKeySecretRef and so use the operator's default E2B"
            " key; a resource elsewhere gets reason DefaultKeyNotAllowed and no sandbox. Default:"
            " only 'default' (the quick start's namespace); empty: no namespace."
        ),
    )
    default_key_templates: str = Field(
        default="",
        description=(
            "Comma-separated E2B templates (glob patterns such as claude-swarm*; * = any) a resource"
            " using the default key may name, besides SWARM_DEFAULT_TEMPLATE, which is always"
            " allowed; another gets reason TemplateNotAllowed. Default: empty (only the default)."
        ),
    )
    replace_debounce_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "Least age of a sandbox before a template or egress change replaces it: a spec that"
            " flaps creates at most one sandbox per this many seconds (each also takes a creation"
            " token)."
        ),
    )
    default_ttl_seconds: int = Field(
        default=7200,
        ge=60,
        le=86_400,
        description=(
            "Lifetime of a sandbox whose resource sets no spec.ttlSeconds: killed then (resource"
            " Failed, SandboxExpired). Shown in status.sandbox.ttlSeconds."
        ),
    )
    max_ttl_seconds: int = Field(
        default=28_800,
        ge=60,
        le=86_400,
        description=(
            "Longest lifetime any sandbox gets, whatever spec.ttlSeconds asks; a longer ttlSeconds is"
            " cut to this (status.sandbox.ttlSeconds shows the lifetime applied)."
        ),
    )
    quota_retry_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Least wait before retrying a create refused for E2B's concurrent-sandbox quota.",
    )
    sandbox_user: str = Field(
        default="user",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description=(
            "The unprivileged account inside the sandbox that every command runs as (setup, agents,"
            " coordinator, probes); E2B templates ship 'user'. Never root."
        ),
    )
    network_allow_internet: bool = Field(
        default=True,
        description="Default of spec.network.allowInternet: outbound internet traffic allowed.",
    )
    network_allow_out: str = Field(
        default="",
        description="Default of spec.network.allowOut: comma-separated IPv4 addresses, CIDRs or host names.",
    )
    network_deny_out: str = Field(
        default="",
        description="Default of spec.network.denyOut: comma-separated IPv4 addresses or CIDRs.",
    )
    network_forbidden_out: str = Field(
        default="",
        description=(
            "Comma-separated IPv4 addresses, CIDRs or host names no resource may open: CIDRs are"
            " denied on every sandbox, and an allowOut entry reaching one is refused (InvalidSpec)."
        ),
    )
    secret_check_seconds: float = Field(
        default=60.0,
        ge=1,
        description=(
            "How often each resource's referenced Secrets are read again to notice a rotation"
            " (one GET per Secret: no cluster-wide Secret watch)."
        ),
    )
    # Cost: E2B's published prices (see swarm_operator.cost for the source and date) and how often
    # status.cost is rewritten while nothing else changes.
    price_vcpu_usd_per_second: float = Field(
        default=0.000014,
        ge=0,
        le=1,
        description=(
            "Price of one vCPU per running second, in USD, for status.cost and budgets. Default: E2B's"
            " published rate ($0.0504/hour), read 2026-11-29; set your contract's."
        ),
    )
    price_memory_usd_per_gib_second: float = Field(
        default=0.0000045,
        ge=0,
        le=1,
        description=(
            "Price of one GiB of memory per running second, in USD. Default: E2B's published rate"
            " ($0.0162/hour), read 2026-11-29."
        ),
    )
    cost_refresh_minutes: float = Field(
        default=10.0,
        gt=0,
        le=1440,
        description=(
            "How often status.cost is rewritten while nothing else changes (always on a pause, resume,"
            " hand-over, size change, and with the lease's expiresAt); in between it is computed."
        ),
    )
    max_usd_per_namespace_per_day: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Operator-wide cap on the estimated spend, per namespace and UTC day, of the resources"
            " that use the operator's default E2B API key (not their own spec.e2b.apiKeySecretRef):"
            " reaching it pauses them (BudgetExceeded) until the next UTC day. Unset: no cap."
        ),
    )
    max_secret_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=8 * 1024 * 1024,
        description=(
            "Bytes all the Secret values one resource references may hold together; a resource over"
            " it gets reason SecretsTooLarge and no sandbox work. They become the setup script's"
            " environment, which Linux bounds."
        ),
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus port; 0 = off.")
    log_format: str = Field(
        default="json", pattern="^(json|text)$", description="json (one object a line) or text."
    )
    log_level: str = Field(
        default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Root log level."
    )

    @model_validator(mode="after")
    def _handover_fits(self) -> Settings:
        lead = self.sandbox_handover_lead_seconds
        if lead is not None and lead >= self.sandbox_max_lifetime_seconds:
            raise ValueError(
                f"sandbox_handover_lead_seconds ({lead}) must be under sandbox_max_lifetime_seconds"
                f" ({self.sandbox_max_lifetime_seconds})"
            )
        return self

    @property
    def handover_lead_seconds(self) -> float:
        """Seconds before the lifetime cap at which the hand-over starts.

        Derived, when not set, from what a hand-over must fit in before the old sandbox dies: the
        lease daemon notices the window at most one jittered renewal interval late, then a create
        and every initialisation attempt with its backoff. Never more than half the cap, or a
        sandbox would spend more time being replaced than running.
        """
        if self.sandbox_handover_lead_seconds is not None:
            return float(self.sandbox_handover_lead_seconds)
        backoffs = sum(self.init_backoff_seconds * 2**i for i in range(self.init_attempts - 1))
        need = (
            1.1 * self.lease_renew_seconds
            + self.control_timeout_seconds
            + self.init_attempts * self.ready_timeout_seconds
            + backoffs
        )
        return float(min(need, self.sandbox_max_lifetime_seconds / 2))

    @field_validator("coordinator_install")
    @classmethod
    def _pinned_coordinator(cls, value: str) -> str:
        from swarm_operator.model import CoordinatorSpec  # model imports nothing from here

        try:
            CoordinatorSpec(install=value)  # the same rule, and message, as spec.coordinator.install
        except ValidationError as exc:
            raise ValueError(
                "; ".join(str(e.get("ctx", {}).get("error") or e["msg"]) for e in exc.errors())
            ) from None
        return value

    @field_validator("network_allow_out", "network_deny_out", "network_forbidden_out")
    @classmethod
    def _egress_list(cls, value: str, info: Any) -> str:
        from swarm_operator.model import network_entry_problem  # model imports nothing from here

        hosts = info.field_name != "network_deny_out"
        problems = [p for e in _split(value) if (p := network_entry_problem(e, hosts_allowed=hosts))]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("default_key_namespaces", "default_key_templates")
    @classmethod
    def _pattern_list(cls, value: str) -> str:
        # The chart copies these into CEL string literals of its admission policy: plain names only.
        bad = [p for p in _split(value) if not _PATTERN.fullmatch(p)]
        if bad:
            raise ValueError(f"not a name or glob pattern (letters, digits, . _ : / - * ?): {bad[0]!r}")
        return value

    def patterns(self, name: str) -> tuple[str, ...]:
        """One of the comma-separated pattern settings (``default_key_namespaces`` ...) as a tuple."""
        return _split(getattr(self, name))

    def egress_list(self, name: str) -> tuple[str, ...]:
        """One of the comma-separated egress settings as a tuple (``network_allow_out`` ...)."""
        return _split(getattr(self, name))

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


_PATTERN = re.compile(r"[A-Za-z0-9._:/*?-]{1,253}")


def _coordinator_pin() -> str:
    from swarm_operator.model import COORDINATOR_PIN  # the one copy of the pin

    return COORDINATOR_PIN


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class SettingsError(ValueError):
    """The environment holds a setting that cannot be used; the message names the variable."""


# Variables with our prefix that are not operator settings (set by tests or the playground).
_FOREIGN_SWARM_VARIABLES = frozenset({"test_no_hard_exit"})
