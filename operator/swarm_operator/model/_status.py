"""Status models: lenient readers (the operator wrote what they read) and strict writers."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from swarm_operator.model._progress import ProgressStatus
from swarm_operator.model._push import PushStatus
from swarm_operator.model._task import TaskStatus
from swarm_operator.model._vocab import (
    MAX_STEPS,
    STEP_NAME,
    Timestamp,
    _plain,
)

# --------------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------------


class Phase(str, enum.Enum):
    """The one-word summary in ``kubectl get``; derived from conditions (see conditions.py)."""

    PENDING = "Pending"
    CREATING = "Creating"
    INITIALIZING = "Initializing"
    READY = "Ready"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    FAILED = "Failed"
    SUCCEEDED = "Succeeded"  # spec.task.completion: the task is done and the meter stopped.
    TERMINATING = "Terminating"

    def __str__(self) -> str:
        return self.value


class _Status(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_assignment=True,
    )


class Condition(_Status):
    """A metav1.Condition."""

    model_config = ConfigDict(frozen=True, validate_assignment=False)

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of condition: SandboxCreated, AgentsReady, Ready, Synced, Suspended, "
        "BudgetExceeded, TaskDelivered or Completed.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: Timestamp = Field(
        description="When the status last changed (not when the condition was last written).",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was computed from.",
        json_schema_extra={"format": "int64"},
    )


class SandboxStatus(_Status):
    """The E2B sandbox backing the resource."""

    id: str | None = Field(default=None, max_length=256, description="E2B sandbox id.")
    template: str | None = Field(default=None, max_length=128, description="Template the sandbox runs.")
    started_at: Timestamp | None = Field(
        default=None,
        description="When the sandbox was created or adopted; kept across a lifetime hand-over, so "
        "ttlSeconds counts the swarm's whole life.",
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="E2B keeps the sandbox at least until then, renewed or not: the lease's end as "
        "last written. Renewals move the real end further without a status write; this is rewritten "
        "before the next renewal could find it passed, and whenever the real end comes earlier. Never "
        "past the plan's lifetime cap (SWARM_SANDBOX_MAX_LIFETIME_SECONDS from the sandbox's start).",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "The lifetime this sandbox gets: spec.ttlSeconds, else the operator's default"
            " (SWARM_DEFAULT_TTL_SECONDS), never over its maximum (SWARM_MAX_TTL_SECONDS)."
        ),
    )
    init_attempts: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Failed setup attempts on this sandbox since its agents were last all up, timeouts and"
            " backend errors included. At the operator's SWARM_INIT_ATTEMPTS the sandbox is killed and"
            " the resource Failed (InitFailed). In status so a restart keeps the count."
        ),
    )


class AgentItem(_Status):
    """One agent pane."""

    id: int = Field(ge=0, le=99, description="Agent index, 0-based.")
    pane: str | None = Field(default=None, max_length=256, description="tmux pane id (e.g. %3).")
    state: Literal["Starting", "Running", "Dead", "Restarting", "Unknown"] = Field(
        default="Unknown",
        description="Last observed state of the agent process.",
    )
    restarts: int = Field(default=0, ge=0, description="Times the operator restarted this agent.")


class AgentsStatus(_Status):
    """Agents wanted and running. ``summary`` is kept in step with the counts for ``kubectl get``."""

    desired: int = Field(default=0, ge=0, description="Agents the spec asks for.")
    ready: int = Field(default=0, ge=0, description="Agents observed running.")
    summary: str = Field(default="0/0", max_length=16, description="ready/desired, for kubectl get.")
    items: list[AgentItem] = Field(
        default_factory=list,
        max_length=100,
        description="Per-agent state.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )

    @model_validator(mode="after")
    def _summarise(self) -> AgentsStatus:
        # Written only here, so the printer column can never disagree with the counts.
        summary = f"{self.ready}/{self.desired}"
        if self.summary != summary:
            object.__setattr__(self, "summary", summary)
        return self


class HealthStatus(_Status):
    """The last health probe."""

    status: Literal["Healthy", "Unhealthy", "Unknown"] = Field(
        default="Unknown", description="Verdict of the last probe."
    )
    last_probe_time: Timestamp | None = Field(default=None, description="When the last probe finished.")
    reason: str | None = Field(default=None, max_length=1024, description="Why, when not Healthy.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed probes in a row.")
    sandbox_faults: int = Field(
        default=0,
        ge=0,
        description="Probes in a row the sandbox itself failed (output past the operator's cap, a "
        "hang to the probe timeout, an unreadable report); probes back off meanwhile, and at the "
        "operator's quarantine threshold the sandbox is killed and the resource Failed with reason "
        "SandboxQuarantined. A failure of E2B itself neither counts nor resets it.",
    )


class MetricsStatus(_Status):
    """Counters of what the operator did for this resource."""

    step_seconds: dict[str, float] = Field(
        default_factory=dict,
        description=f"Seconds spent in each lifecycle step (create, init, init.<setup step>, ...); at "
        f"most {MAX_STEPS} steps.",
    )
    commands_executed: int = Field(default=0, ge=0, description="Commands run in the sandbox.")
    commands_failed: int = Field(default=0, ge=0, description="Commands that failed or timed out.")
    restarts: int = Field(default=0, ge=0, description="Agent restarts, all agents together.")

    @field_validator("step_seconds", mode="before")
    @classmethod
    def _bounded_steps(cls, steps: Any) -> Any:
        """Keep well-named steps with finite, non-negative seconds, at most :data:`MAX_STEPS`: the
        operator's own (no dot) first, then the setup script's. Dropped rather than refused, so a
        sandbox reporting junk can neither fail a status write nor grow the status."""
        if not isinstance(steps, Mapping):
            return steps
        kept = {
            k: v
            for k, v in steps.items()
            if isinstance(k, str)
            and STEP_NAME.match(k)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v >= 0
        }
        chosen = set(sorted(kept, key=lambda k: "." in k)[:MAX_STEPS])  # stable sort: the first in each group
        return {k: v for k, v in kept.items() if k in chosen}  # in the order given: the page shows it so


class WorkspaceStatus(_Status):
    """What the workspace was cloned from and is checked out at."""

    repo: str | None = Field(default=None, max_length=2048, description="Repository URL.")
    ref: str | None = Field(default=None, max_length=255, description="The ref asked for.")
    commit: str | None = Field(default=None, max_length=64, description="Commit checked out (full SHA).")
    path: str | None = Field(default=None, max_length=4096, description="Where it is in the sandbox.")
    push: PushStatus | None = Field(default=None, description="The last push (spec.workspace.push).")


class McpServerStatus(_Status):
    """One MCP entry as seen through the gateway."""

    name: str = Field(max_length=63, description="The spec.mcp entry's name.")
    state: Literal["Ready", "Failed", "Unknown"] = Field(
        default="Unknown",
        description="Ready when the gateway reports the server healthy.",
    )
    message: str = Field(default="", max_length=1024, description="Why, when not Ready.")


class NetworkStatus(_Status):
    """The egress policy the sandbox was created with (spec, operator defaults and the operator's
    forbidden destinations merged), as sent to E2B."""

    allow_internet: bool = Field(default=True, description="Outbound internet traffic allowed.")
    allow_out: list[str] = Field(default_factory=list, max_length=256, description="Destinations allowed.")
    deny_out: list[str] = Field(default_factory=list, max_length=256, description="Destinations denied.")


class SecretsStatus(_Status):
    """What the operator knows about the Secrets the resource uses (never their values)."""

    restart_pending: bool = Field(
        default=False,
        description="A Secret in the agents' environment changed and the agents still run with the "
        "old values (agent.restartOnSecretChange: Never).",
    )
    last_change_time: Timestamp | None = Field(
        default=None,
        description="When the operator last noticed a referenced Secret change.",
    )
    message: str = Field(default="", max_length=1024, description="Which Secrets changed, and what was done.")
    applied: dict[str, Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        description="Per environment variable, a keyed digest (HMAC-SHA256 under the resource's E2B "
        "API key, truncated) of the Secret value the agents run with, never the value: a restarted "
        "operator still tells a rotation that happened while it was down.",
    )
    applied_key: str | None = Field(
        default=None,
        max_length=64,
        description="Which API key keyed the digests (a digest of it): after a key rotation they are "
        "not compared.",
    )


class CostStatus(_Status):
    """The resource's sandbox-compute meter: figures up to ``asOf``, and the rate since then.

    Written at a coarse cadence and on every change of metering state or size, not every second: the
    spend at any later time is ``estimatedUSD + rateUSDPerHour * (now - asOf) / 3600`` (see
    ``swarm_operator.cost``). Sums cover every sandbox the resource has had and survive operator
    restarts: they are read back from here.
    """

    sandbox_seconds: int = Field(
        default=0,
        ge=0,
        description="Seconds a sandbox was running (billed) up to asOf, all sandboxes of the resource summed.",
        json_schema_extra={"format": "int64"},
    )
    paused_seconds: int = Field(
        default=0,
        ge=0,
        description="Seconds a sandbox was paused up to asOf: not billed as compute, counted apart.",
        json_schema_extra={"format": "int64"},
    )
    estimated_usd: float = Field(
        default=0.0,
        ge=0,
        alias="estimatedUSD",
        description="Estimated compute spend in USD up to asOf, from the operator's price table.",
    )
    as_of: Timestamp | None = Field(
        default=None, description="When the figures above were last brought up to date."
    )
    state: Literal["Running", "Paused", "Stopped"] = Field(
        default="Stopped",
        description="What the meter has counted since asOf: Running (billed), Paused (counted apart) "
        "or Stopped (no sandbox).",
    )
    vcpu: int | None = Field(
        default=None, ge=0, le=1024, description="vCPUs of the current sandbox, from E2B."
    )
    memory_mib: int | None = Field(
        default=None,
        ge=0,
        alias="memoryMiB",
        description="Memory of the current sandbox in MiB, from E2B.",
        json_schema_extra={"format": "int64"},
    )
    rate_usd_per_hour: float = Field(
        default=0.0,
        ge=0,
        alias="rateUSDPerHour",
        description="Estimated USD per hour since asOf: the running sandbox's size priced, or 0 when "
        "paused or stopped.",
    )
    summary: str = Field(
        default="$0.0000",
        max_length=32,
        description="estimatedUSD for kubectl get, e.g. $0.0123 or $4.56.",
    )
    day: str | None = Field(
        default=None,
        max_length=10,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="The UTC day dayStartUSD belongs to (for the operator's per-namespace daily cap).",
    )
    day_start_usd: float | None = Field(
        default=None,
        ge=0,
        alias="dayStartUSD",
        description="estimatedUSD when that UTC day began (or when the resource was first metered "
        "that day): spend today is the estimate now minus this.",
    )

    @model_validator(mode="after")
    def _summarise(self) -> CostStatus:
        # Written only here, so the printer column can never disagree with the figure.
        usd = self.estimated_usd
        summary = f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"
        if self.summary != summary:
            object.__setattr__(self, "summary", summary)
        return self


class SwarmSandboxStatus(_Status):
    """Observed state of a SwarmSandbox, written by the operator only."""

    phase: Phase | None = Field(default=None, description="One-word summary, derived from the conditions.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation last acted on.",
        json_schema_extra={"format": "int64"},
    )
    message: str | None = Field(default=None, max_length=32768, description="Human-readable summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Latest observations: SandboxCreated, AgentsReady, Ready (overall), Synced "
        "(last reconcile succeeded), Suspended (paused: spec.suspend, budget, idle or a completed task), "
        "BudgetExceeded, TaskDelivered (spec.task), Completed (spec.task.completion).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    sandbox: SandboxStatus | None = Field(default=None, description="The backing E2B sandbox.")
    agents: AgentsStatus | None = Field(default=None, description="Agent panes.")
    health: HealthStatus | None = Field(default=None, description="Last health probe.")
    metrics: MetricsStatus | None = Field(default=None, description="Operator activity counters.")
    workspace: WorkspaceStatus | None = Field(default=None, description="The cloned workspace.")
    mcp: list[McpServerStatus] | None = Field(
        default=None,
        max_length=16,
        description="MCP servers, as checked through the gateway.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    network: NetworkStatus | None = Field(default=None, description="The sandbox's egress policy.")
    secrets: SecretsStatus | None = Field(default=None, description="Referenced Secrets' changes.")
    cost: CostStatus | None = Field(default=None, description="Sandbox compute used and its estimated cost.")
    task: TaskStatus | None = Field(default=None, description="What of spec.task was delivered.")
    progress: ProgressStatus | None = Field(default=None, description="The agents' progress, as measured.")

    @classmethod
    def from_body(cls, status: Any) -> SwarmSandboxStatus:
        """Read ``status`` as stored on the resource (a kopf Mapping view, a dict, or None)."""
        return cls.model_validate(_plain({} if status is None else status))

    def to_patch(self) -> dict[str, Any]:
        """The JSON-ready dict for a ``status`` merge patch: camelCase, ``None`` left out.

        Only the top-level fields that were set (given, read, or assigned) are included, so a fresh
        ``SwarmSandboxStatus(phase=...)`` patches the phase and cannot wipe the stored conditions with
        the default ``[]``. A top-level field that is included is written whole.
        """
        dumped = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        keep = {type(self).model_fields[name].alias or name for name in self.model_fields_set}
        return {key: value for key, value in dumped.items() if key in keep}
