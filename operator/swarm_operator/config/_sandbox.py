"""The settings of one sandbox's life: its template and coordinator, its lease, lifetime and
hand-over, the init budget, and the bounds on every call made to or in it (part of
:class:`~swarm_operator.config.Settings`; each field is ``SWARM_<FIELD_NAME_UPPER>``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator


class SandboxSettings(BaseModel):
    """A sandbox's template, lease, lifetime, initialisation and call bounds."""

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

    sandbox_user: str = Field(
        default="user",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description=(
            "The unprivileged account inside the sandbox that every command runs as (setup, agents,"
            " coordinator, probes); E2B templates ship 'user'. Never root."
        ),
    )

    @model_validator(mode="after")
    def _handover_fits(self) -> SandboxSettings:
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


def _coordinator_pin() -> str:
    from swarm_operator.model import COORDINATOR_PIN  # the one copy of the pin

    return COORDINATOR_PIN
