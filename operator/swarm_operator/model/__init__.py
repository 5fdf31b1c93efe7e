"""The SwarmSandbox resource as pydantic models: the one place a field is defined.

Every spec and status field lives here once, with its description, bounds and defaults. The CRD's
``openAPIV3Schema`` is generated from these models (``python -m swarm_operator._crd``), so ``kubectl
explain``, the API server's validation and the operator's own validation cannot drift apart.

Two layers refuse bad specs, on purpose:

- The API server (schema + CEL rules) refuses what is malformed — wrong types, out-of-range numbers,
  reserved env names — with a 422, before anything is stored.
- The operator re-validates every spec with :class:`SwarmSandboxSpec`, which refuses everything the
  schema refuses *and* a few things the schema deliberately lets through. The chief one is an unpinned
  ``coordinator.install``: the schema only bounds its length, so such a resource is stored and the
  operator reports ``Ready=False, reason=InvalidSpec`` naming the field. A 422 would be invisible to
  anyone reading the resource later (GitOps tools retry it silently); a condition is not.

Spec models are strict (no "4" for 4, no 1 for true) and forbid unknown keys, because the schema does.
Status models are lenient readers (the operator wrote what they read) and strict writers.
"""

from __future__ import annotations

from swarm_operator.model._agent import (
    AgentConfigSpec,
    AgentSpec,
    CoordinatorSpec,
    E2BSpec,
    EnvVar,
    EnvVarSource,
    SecretKeySelector,
    SecretRef,
)
from swarm_operator.model._progress import AgentActivity, ProgressStatus, progress_lines
from swarm_operator.model._push import PUSH_BRANCH_RULE, PushSpec, PushStatus, push_branch_ok
from swarm_operator.model._spec import BudgetSpec, HealthCheckSpec, IdleSpec, NetworkSpec, SwarmSandboxSpec
from swarm_operator.model._status import (
    AgentItem,
    AgentsStatus,
    Condition,
    CostStatus,
    HealthStatus,
    McpServerStatus,
    MetricsStatus,
    NetworkStatus,
    Phase,
    SandboxStatus,
    SecretsStatus,
    SwarmSandboxStatus,
    WorkspaceStatus,
)
from swarm_operator.model._task import (
    TASK_RULE,
    TaskAgentPrompt,
    TaskCompletionSpec,
    TaskSpec,
    TaskStatus,
    prompt_digest,
)
from swarm_operator.model._vocab import (
    ANTHROPIC_API_KEY,
    COORDINATOR_PIN,
    MAX_ARGS_CHARS,
    MAX_MCP_VALUE_CHARS,
    MAX_SECRET_REFERENCES,
    MAX_SECRETS,
    MAX_STEPS,
    PREINSTALLED,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    STEP_NAME,
    InvalidSpecError,
    Timestamp,
    format_validation_error,
    is_pinned_install,
    network_entry_problem,
)
from swarm_operator.model._vocab import _cel_args_size_rule as _cel_args_size_rule
from swarm_operator.model._vocab import _cel_mcp_values_size_rule as _cel_mcp_values_size_rule
from swarm_operator.model._vocab import _cel_reserved_env_rule as _cel_reserved_env_rule
from swarm_operator.model._vocab import _cel_secret_references_rule as _cel_secret_references_rule
from swarm_operator.model._workspace import MCP_TOKEN_FIELDS, McpField, McpServerSpec, WorkspaceSpec

__all__ = [
    "ANTHROPIC_API_KEY",
    "AgentActivity",
    "AgentConfigSpec",
    "AgentItem",
    "AgentSpec",
    "AgentsStatus",
    "BudgetSpec",
    "COORDINATOR_PIN",
    "Condition",
    "CoordinatorSpec",
    "CostStatus",
    "E2BSpec",
    "EnvVar",
    "EnvVarSource",
    "HealthCheckSpec",
    "HealthStatus",
    "IdleSpec",
    "InvalidSpecError",
    "MAX_ARGS_CHARS",
    "MAX_MCP_VALUE_CHARS",
    "MAX_SECRETS",
    "MAX_SECRET_REFERENCES",
    "MAX_STEPS",
    "MCP_TOKEN_FIELDS",
    "McpField",
    "McpServerSpec",
    "McpServerStatus",
    "MetricsStatus",
    "NetworkSpec",
    "NetworkStatus",
    "PREINSTALLED",
    "Phase",
    "ProgressStatus",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "STEP_NAME",
    "TASK_RULE",
    "SandboxStatus",
    "SecretKeySelector",
    "SecretRef",
    "SecretsStatus",
    "SwarmSandboxSpec",
    "SwarmSandboxStatus",
    "TaskAgentPrompt",
    "TaskCompletionSpec",
    "TaskSpec",
    "TaskStatus",
    "Timestamp",
    "PUSH_BRANCH_RULE",
    "PushSpec",
    "push_branch_ok",
    "PushStatus",
    "WorkspaceSpec",
    "WorkspaceStatus",
    "format_validation_error",
    "is_pinned_install",
    "network_entry_problem",
    "prompt_digest",
    "progress_lines",
]
