"""The top of the spec: health checks, network, budget, idleness, and ``SwarmSandboxSpec`` itself."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field, field_validator, model_validator

from swarm_operator.model._agent import (
    AgentSpec,
    CoordinatorSpec,
    E2BSpec,
    SecretRef,
)
from swarm_operator.model._task import TaskSpec
from swarm_operator.model._vocab import (
    EGRESS_ENTRY,
    MAX_MCP_VALUE_CHARS,
    MAX_SECRET_REFERENCES,
    MAX_SECRETS,
    TEMPLATE,
    InvalidSpecError,
    _cel_mcp_values_size_rule,
    _cel_secret_references_rule,
    _plain,
    _Spec,
    format_validation_error,
    network_entry_problem,
)
from swarm_operator.model._workspace import McpServerSpec, WorkspaceSpec


class HealthCheckSpec(_Spec):
    """How the operator watches the agents once they run."""

    interval_seconds: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="Seconds between health probes of the sandbox and its agent panes.",
    )
    restart_dead_agents: bool = Field(
        default=True,
        description="Restart an agent whose pane process has exited.",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Restarts allowed per agent (and for the MCP gateway) before it is left dead; a dead "
        "agent then leaves the resource Degraded, a dead gateway its health Unhealthy.",
    )


class NetworkSpec(_Spec):
    """Where the sandbox may open connections to, enforced by E2B outside the sandbox.

    Each field left unset takes the operator-wide default. E2B lets ``allowOut`` win over
    ``denyOut`` (and over ``allowInternet: false``), so ``allowInternet: false`` with an
    ``allowOut`` list is "only these". Destinations the operator forbids for every resource are
    always denied, and an ``allowOut`` entry that would reopen one is refused (InvalidSpec).
    """

    allow_internet: bool | None = Field(
        default=None,
        description="Whether outbound internet traffic is allowed at all. Unset: the operator's default.",
    )
    allow_out: list[Annotated[str, Field(min_length=1, max_length=253, pattern=EGRESS_ENTRY)]] | None = Field(
        default=None,
        max_length=64,
        description="Destinations allowed even when the rest is denied: IPv4 addresses, CIDRs or host "
        "names ('*.example.com' matches subdomains). Unset: the operator's default.",
    )
    deny_out: list[Annotated[str, Field(min_length=1, max_length=18, pattern=EGRESS_ENTRY)]] | None = Field(
        default=None,
        max_length=64,
        description="Destinations denied: IPv4 addresses or CIDRs (E2B denies by address only). "
        "Unset: the operator's default.",
    )

    @field_validator("allow_out")
    @classmethod
    def _allow_entries(cls, entries: list[str] | None) -> list[str] | None:
        problems = [p for e in entries or [] if (p := network_entry_problem(e)) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return entries

    @field_validator("deny_out")
    @classmethod
    def _deny_entries(cls, entries: list[str] | None) -> list[str] | None:
        problems = [
            p for e in entries or [] if (p := network_entry_problem(e, hosts_allowed=False)) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return entries


class BudgetSpec(_Spec):
    """A cap on what the resource may spend on sandbox compute, as the operator estimates it.

    The estimate is E2B's billing formula (allocated vCPU and memory times running seconds) with the
    operator's price table; paused time is not counted. A limit left unset does not apply; with
    neither set there is no cap.
    """

    max_usd: float | None = Field(
        default=None,
        alias="maxUSD",
        ge=0,
        le=1_000_000,
        description="Estimated spend in USD (status.cost.estimatedUSD) at which the budget is "
        "exceeded (0: at once).",
    )
    max_hours: float | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Running sandbox time in hours (status.cost.sandboxSeconds / 3600), summed over "
        "every sandbox the resource has had, at which the budget is exceeded. Paused time does not count.",
    )
    action: Literal["Suspend", "Delete"] = Field(
        default="Suspend",
        description="What happens when the budget is exceeded. Suspend: the sandbox is paused (work "
        "kept, the meter stops) until a limit is raised or cleared. Delete: the sandbox is killed "
        "(its work is lost); the resource stays, to say why.",
    )


class IdleSpec(_Spec):
    """When a swarm that does nothing stops costing: its sandbox is paused (work kept)."""

    idle_after_seconds: int = Field(
        ge=10,
        le=604_800,
        description="Pause the sandbox once every agent has been idle this long: no pane printed "
        "anything and the coordinator registry did not change (as the health probe sees them, so "
        "within one health interval after). A spec change or `swarm-operator resume` resumes it.",
    )


class SwarmSandboxSpec(_Spec):
    """Desired state of a SwarmSandbox."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _cel_secret_references_rule(),
                    "message": f"at most {MAX_SECRET_REFERENCES} Secret key references per resource "
                    "(agent.env valueFrom, agent.apiKeySecretRef, e2b.apiKeySecretRef, "
                    "workspace.credentialsSecretRef, mcp tokenSecretRef and fields valueFrom)",
                },
            ]
        }
    )

    agents: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Number of agents (tmux panes). Changing it scales the panes in place.",
    )
    agent: AgentSpec = Field(
        default_factory=AgentSpec,
        description="What every agent runs.",
        json_schema_extra={"default": {}},
    )
    template: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=TEMPLATE,
        description="E2B template id or alias. Unset: the operator's default template. With the "
        "operator's default E2B key, only the templates the operator allows (else reason TemplateNotAllowed).",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="Hard cap on the sandbox's lifetime, in seconds. When reached the sandbox is killed "
        "and the resource is Failed with reason SandboxExpired. Unset: the operator's default "
        "(SWARM_DEFAULT_TTL_SECONDS, 2 h unless set); never more than its maximum "
        "(SWARM_MAX_TTL_SECONDS, 8 h unless set). status.sandbox.ttlSeconds shows the one applied. "
        "With workspace.push, the operator ends the sandbox up to one lease renewal interval + 15 s "
        "early, after pushing: E2B would end it at the ttl before a later push could run.",
    )
    e2b: E2BSpec | None = Field(default=None, alias="e2b", description="E2B account settings.")
    coordinator: CoordinatorSpec = Field(
        default_factory=CoordinatorSpec,
        description="The agent coordinator.",
        json_schema_extra={"default": {}},
    )
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete",
        description="What happens to the sandbox when the resource is deleted: Delete kills it; Orphan "
        "leaves it running and stops tracking it. Orphan needs the resource's own E2B key "
        "(e2b.apiKeySecretRef); with the operator's default key it is refused (reason OrphanNotAllowed).",
    )
    health_check: HealthCheckSpec = Field(
        default_factory=HealthCheckSpec,
        description="Health probing and agent restarts.",
        json_schema_extra={"default": {}},
    )
    suspend: bool = Field(
        default=False,
        description="Pause the sandbox (E2B pause) while true; resume it when set back to false.",
    )
    workspace: WorkspaceSpec | None = Field(
        default=None,
        description="A git repository cloned into the sandbox at a pinned commit; the agents work in it.",
    )
    mcp: list[McpServerSpec] = Field(
        default_factory=list,
        max_length=16,
        description="MCP servers for the agents, run by E2B's MCP gateway in the sandbox; the "
        "agents' configuration points at the gateway. Secrets come from Secret keys.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                {
                    "rule": _cel_mcp_values_size_rule(),
                    "message": f"mcp literal field values may hold at most {MAX_MCP_VALUE_CHARS} "
                    "characters together",
                }
            ],
        },
    )

    network: NetworkSpec | None = Field(
        default=None,
        description="Egress policy: where the sandbox may connect to. Unset: the operator's default "
        "policy. Enforced by E2B at create; changing it moves the agents to a new sandbox.",
    )
    budget: BudgetSpec | None = Field(
        default=None,
        description="A spend or sandbox-time cap and what to do when it is reached. Unset: no cap.",
    )
    idle: IdleSpec | None = Field(
        default=None,
        description="Pause the sandbox when every agent has been idle for a while. Unset: never.",
    )
    task: TaskSpec | None = Field(
        default=None,
        description="A prompt typed into every agent's pane (or a role prompt per pane) once the "
        "swarm is Ready, exactly once per change; and optionally when the task counts as done.",
    )

    @field_validator("mcp")
    @classmethod
    def _one_entry_per_server(cls, mcp: list[McpServerSpec]) -> list[McpServerSpec]:
        total = sum(len(f.value or "") for entry in mcp for f in entry.fields)
        if total > MAX_MCP_VALUE_CHARS:
            raise ValueError(
                f"literal field values hold {total} characters together, over the limit "
                f"of {MAX_MCP_VALUE_CHARS}"
            )
        seen: dict[str, str] = {}
        for entry in mcp:
            if entry.name in seen.values():
                raise ValueError(f"duplicate mcp name {entry.name}")
            if entry.server_key in seen:
                raise ValueError(
                    f"mcp {entry.name} and {seen[entry.server_key]} both configure "
                    f"server {entry.server_key}: the gateway runs each server once"
                )
            seen[entry.server_key] = entry.name
        return mcp

    @model_validator(mode="after")
    def _bounded_secrets(self) -> SwarmSandboxSpec:
        refs = self.secret_references()
        fields = sorted({path.split("[", 1)[0] for path, _ in refs})
        if len(refs) > MAX_SECRET_REFERENCES:
            raise ValueError(
                f"{len(refs)} Secret key references (in {', '.join(fields)}), over the "
                f"limit of {MAX_SECRET_REFERENCES} per resource"
            )
        names = sorted({ref.name for _, ref in refs})
        if len(names) > MAX_SECRETS:
            raise ValueError(
                f"{len(names)} distinct Secrets referenced (in {', '.join(fields)}), over the limit "
                f"of {MAX_SECRETS} per resource: put several keys in one Secret"
            )
        return self

    def secret_references(self) -> list[tuple[str, SecretRef]]:
        """Every Secret key the spec names, with the field that names it (``spec.agent.env[2]``)."""
        refs: list[tuple[str, SecretRef]] = []
        for i, var in enumerate(self.agent.env):
            if var.value_from is not None:
                refs.append((f"spec.agent.env[{i}]", var.value_from.secret_key_ref))
        if self.agent.api_key_secret_ref is not None:
            refs.append(("spec.agent.apiKeySecretRef", self.agent.api_key_secret_ref))
        if self.e2b is not None and self.e2b.api_key_secret_ref is not None:
            refs.append(("spec.e2b.apiKeySecretRef", self.e2b.api_key_secret_ref))
        if self.workspace is not None and self.workspace.credentials_secret_ref is not None:
            refs.append(("spec.workspace.credentialsSecretRef", self.workspace.credentials_secret_ref))
        if self.workspace is not None and self.workspace.push and self.workspace.push.credentials_secret_ref:
            refs.append(
                ("spec.workspace.push.credentialsSecretRef", self.workspace.push.credentials_secret_ref)
            )
        for i, entry in enumerate(self.mcp):
            if entry.token_secret_ref is not None:
                refs.append((f"spec.mcp[{i}].tokenSecretRef", entry.token_secret_ref))
            for j, field_ in enumerate(entry.fields):
                if field_.value_from is not None:
                    refs.append((f"spec.mcp[{i}].fields[{j}]", field_.value_from.secret_key_ref))
        return refs

    @classmethod
    def from_body(cls, spec: Any) -> SwarmSandboxSpec:
        """Validate a resource's ``spec`` as the API server hands it over.

        Raises :class:`InvalidSpecError` whose message names every offending field, ready for an
        ``InvalidSpec`` condition.
        """
        try:
            return cls.model_validate(_plain({} if spec is None else spec))
        except pydantic.ValidationError as exc:
            raise InvalidSpecError(format_validation_error(exc)) from None
