"""Conditions and the phase derived from them. Plain functions over :class:`model.Condition` lists.

Conditions are the truth; ``status.phase`` is a one-word summary computed from them by
:func:`derive_phase` and never set on its own, so the two cannot disagree. The operator records what it
observed in the component conditions (``SandboxCreated``, ``AgentsReady``, ``Synced``, ``Suspended``),
then calls :func:`refresh_ready` to recompute the overall ``Ready`` that ``kubectl wait
--for=condition=Ready`` waits on.

Phase table (first matching row wins)::

    deleting (deletionTimestamp set)                          -> Terminating
    Ready=False with a terminal reason (TERMINAL_REASONS)     -> Failed
    Completed=True (spec.task.completion)                     -> Succeeded
    Suspended=True                                            -> Suspended
    Ready=True                                                -> Ready
    (Ready as ready_condition() computes it, not as stored.)
    SandboxCreated=True, AgentsReady reason Initializing/none -> Initializing
    SandboxCreated=True, AgentsReady not True otherwise       -> Degraded
    SandboxCreated=False reason Creating                      -> Creating
    anything else (no conditions; waiting on a Secret, quota,
    rate limit or an unavailable backend before a sandbox)    -> Pending

Terminal reasons need a person (fix the spec, the key, the template) or mark an intended end (ttl);
every other failure is retried by the operator, so it does not make the resource Failed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from swarm_operator.model import Condition, Phase

__all__ = [
    "TERMINAL_REASONS",
    "TROUBLESHOOTING_DOC",
    "ConditionType",
    "Reason",
    "derive_phase",
    "find",
    "is_true",
    "ready_condition",
    "refresh_ready",
    "set_condition",
    "troubleshooting_pointer",
]

Status = Literal["True", "False", "Unknown"]


class ConditionType(str, enum.Enum):
    """The condition types this operator writes."""

    SANDBOX_CREATED = "SandboxCreated"  # an E2B sandbox exists for the resource and is tracked.
    AGENTS_READY = "AgentsReady"  # every desired agent pane runs.
    READY = "Ready"  # overall: computed by ready_condition(), never written directly.
    SYNCED = "Synced"  # the last reconcile succeeded; False carries the error's reason.
    SUSPENDED = "Suspended"  # the sandbox is paused: spec.suspend, its budget, or idleness.
    #: spec.budget (or the operator's per-namespace daily cap) is reached; True until a limit is
    #: raised or cleared. Its action shows in Suspended (Suspend) or Synced (Delete).
    BUDGET_EXCEEDED = "BudgetExceeded"
    #: spec.task reached every pane it names in the current sandbox (True), or the last delivery
    #: failed (False, TaskDeliveryFailed: retried every health probe). Never affects Ready.
    TASK_DELIVERED = "TaskDelivered"
    #: spec.task.completion: every agent exited or went quiet after the task was delivered (True:
    #: phase Succeeded, the sandbox paused or killed). A spec change resumes the swarm (False).
    COMPLETED = "Completed"

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Stable, machine-readable reasons. Adding one is fine; renaming one breaks users' alerts.

    Grouped by where they appear (kubernetes-sigs/agent-sandbox ``api/v1alpha1/sandbox_types.go``
    keeps its reasons beside the condition they explain). A reason can explain more than one
    condition: Synced and Ready repeat the reason of whatever blocks them, and every reason here
    may also head a Kubernetes Event.
    """

    # -- SandboxCreated: is there a tracked sandbox, and how did it come to be?
    CREATING = "Creating"  # a create call is under way (False).
    CREATED = "Created"  # this operator created the sandbox in status (True).
    ADOPTED = "Adopted"  # a sandbox tagged with the resource's uid was found and taken over (True).
    #: The sandbox envd answered for is not the one the control plane returned (its own
    #: E2B_SANDBOX_ID or the resource uid given to it at create differ): it gets no secret, is
    #: killed, and a new one is tried with backoff. Also on AgentsReady and Synced.
    IDENTITY_MISMATCH = "IdentityMismatch"
    SANDBOX_NOT_FOUND = "SandboxNotFound"  # the sandbox in status is gone; a new one is made.
    SANDBOX_EXPIRED = "SandboxExpired"  # ttlSeconds reached: killed, resource Failed (terminal).
    INIT_FAILED = "InitFailed"  # the setup budget was spent: killed, resource Failed (terminal).
    #: The sandbox misbehaved on SWARM_QUARANTINE_AFTER probes in a row (output past the cap, a
    #: hang to the probe timeout, an unreadable report): killed, resource Failed (terminal). Also on
    #: AgentsReady and Synced.
    SANDBOX_QUARANTINED = "SandboxQuarantined"

    # -- AgentsReady: do the desired agent panes run?
    INITIALIZING = "Initializing"  # the setup script is starting (or retrying) the agents.
    AVAILABLE = "Available"  # every desired agent runs (also Ready=True).
    AGENTS_DEGRADED = "AgentsDegraded"  # some agents are dead past their restart budget.
    #: The coordinator is enabled and its registry holds fewer agents than the spec asks for: the
    #: panes run but cannot coordinate, so the resource is not Ready.
    AGENTS_NOT_REGISTERED = "AgentsNotRegistered"

    # -- Synced: did the last reconcile succeed? (False carries what stopped it.)
    RECONCILED = "Reconciled"
    INVALID_SPEC = "InvalidSpec"  # the spec (or what it names) cannot be used; fix it (terminal).
    #: The planned hand-over before the plan's lifetime cap could not make a new sandbox Ready: the
    #: old sandbox keeps the agents until E2B ends it at its cap, then the resource is recreated
    #: from scratch (SandboxNotFound). Not terminal: the swarm stays Ready until then.
    HANDOVER_FAILED = "HandoverFailed"
    SECRET_NOT_FOUND = "SecretNotFound"  # a named Secret or key is missing; retried.
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"  # the agent.config ConfigMap is missing; retried.
    #: The Secret values one resource references exceed SWARM_MAX_SECRET_BYTES; retried (a Secret
    #: can shrink), running agents are kept.
    SECRETS_TOO_LARGE = "SecretsTooLarge"
    AUTHENTICATION_FAILED = "AuthenticationFailed"  # E2B refused the API key (terminal).
    TEMPLATE_NOT_FOUND = "TemplateNotFound"  # E2B has no such template (terminal).
    #: E2B answered 403 "no access to template": the key is fine, the template is not this
    #: team's to use (terminal until the spec or the template's sharing changes).
    TEMPLATE_ACCESS_DENIED = "TemplateAccessDenied"
    #: The operator's tenancy policy (lifecycle.tenancy), checked before any Secret is read; each is
    #: terminal until the spec or the operator's settings change.
    #: The resource omits spec.e2b.apiKeySecretRef in a namespace SWARM_DEFAULT_KEY_NAMESPACES
    #: does not list: the operator's default key is not this namespace's to spend.
    DEFAULT_KEY_NOT_ALLOWED = "DefaultKeyNotAllowed"
    #: With the default key, the template is neither SWARM_DEFAULT_TEMPLATE nor in
    #: SWARM_DEFAULT_KEY_TEMPLATES.
    TEMPLATE_NOT_ALLOWED = "TemplateNotAllowed"
    #: deletionPolicy Orphan with the default key: it would leave the platform paying for a sandbox
    #: no resource tracks.
    ORPHAN_NOT_ALLOWED = "OrphanNotAllowed"
    #: The resource lives in the operator's own namespace (SWARM_NAMESPACE), whose Secrets include
    #: the default key: no agent is ever handed those.
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    QUOTA_EXCEEDED = "QuotaExceeded"  # E2B's concurrent-sandbox quota; retried slowly.
    RATE_LIMITED = "RateLimited"  # E2B's or the operator's own creation limit; retried.
    BACKEND_UNAVAILABLE = "BackendUnavailable"  # E2B unreachable or failing; retried with backoff.
    INVALID_REQUEST = "InvalidRequest"  # E2B refused a request as malformed; retried with backoff.
    COMMAND_TIMEOUT = "CommandTimeout"  # a command in the sandbox ran past its timeout; retried.
    BACKEND_ERROR = "BackendError"  # an E2B failure of no known kind; retried with backoff.
    #: A command in the sandbox printed more than SWARM_COMMAND_OUTPUT_LIMIT_BYTES: it was killed
    #: so the operator's memory stays bounded whatever the sandbox prints.
    OUTPUT_LIMIT_EXCEEDED = "OutputLimitExceeded"

    # -- Suspended: is the sandbox paused, and why?
    SUSPENDED = "Suspended"  # spec.suspend is true.
    RESUMED = "Resumed"
    #: Every agent was idle (no pane output, no coordinator change) for spec.idle.idleAfterSeconds;
    #: resumed by a spec change or ``swarm-operator resume``.
    IDLE = "Idle"

    # -- BudgetExceeded (also Suspended's reason for action Suspend, and Synced's for Delete, where
    # it is terminal: the sandbox was killed and only raising or clearing a limit brings one back).
    BUDGET_EXCEEDED = "BudgetExceeded"
    WITHIN_BUDGET = "WithinBudget"

    # -- TaskDelivered / Completed: spec.task.
    #: The task was typed into every pane it names (TaskDelivered=True).
    TASK_DELIVERED = "TaskDelivered"
    #: Typing the task into the panes failed (E2B, or tmux in the sandbox); retried every health
    #: probe while the swarm is Ready, never blocking Ready. Also an Event.
    TASK_DELIVERY_FAILED = "TaskDeliveryFailed"
    #: The task is done (spec.task.completion): Completed=True, also Suspended's reason when the
    #: sandbox was paused for it and SandboxCreated's when it was killed. Ends at a spec change.
    TASK_COMPLETED = "TaskCompleted"

    # -- Ready: only the reasons above, plus the resource going away.
    DELETING = "Deleting"

    # -- status.health.reason: the last probe's verdict.
    #: The MCP gateway stopped answering (health probes); the agents may still run.
    MCP_GATEWAY_UNAVAILABLE = "McpGatewayUnavailable"
    PROBE_FAILED = "ProbeFailed"  # the probe's answer could not be read; the next probe retries.

    # -- Events only: things that happened, not states.
    REPLACED = "Replaced"  # a template or egress change moved the agents to a new sandbox.
    #: The sandbox neared the E2B plan's lifetime cap (SWARM_SANDBOX_MAX_LIFETIME_SECONDS): the
    #: agents were moved to a new sandbox made Ready before the old one's end (Warning: the agents
    #: started afresh: files written in the old sandbox are not carried over, but for what
    #: spec.workspace.push pushed before the switch: the new sandbox clones that commit).
    LIFETIME_HANDOVER = "LifetimeHandover"
    ORPHANED = "Orphaned"  # deletionPolicy Orphan: the sandbox was left running, untracked.
    SECRET_ROTATED = "SecretRotated"  # a Secret the resource uses changed.
    AGENTS_RESTARTED = "AgentsRestarted"  # the agents were restarted with rotated Secret values.
    AGENT_RESTARTED = "AgentRestarted"  # a dead agent was restarted in place by the health check.
    #: The first setup run installed what the template lacks (tmux, the agent CLI, the coordinator).
    PROVISIONED = "Provisioned"
    #: Sharded operator (SWARM_SHARD=i/N): the resource's claudeswarm.io/shard label names no
    #: shard, so no operator process serves it (Warning, from the shard its uid hashes to).
    SHARD_LABEL_INVALID = "ShardLabelInvalid"
    #: Warning: agent.command imitates Claude Code's name (a homoglyph, an invisible character):
    #: it runs as the generic command it is, never treated as Claude Code.
    SPOOFED_COMMAND = "SpoofedCommand"
    #: The workspace was pushed to spec.workspace.push.branch before the operator ended the sandbox.
    RESULTS_PUSHED = "ResultsPushed"
    #: A push of the workspace failed (retried; before a sandbox end, the end went ahead after
    #: SWARM_DELETE_TIMEOUT_SECONDS and the message names what was lost). Also status.workspace.push.error.
    PUSH_FAILED = "PushFailed"

    def __str__(self) -> str:
        return self.value


#: Reasons that make the resource Failed: retrying alone will not fix them.
TERMINAL_REASONS: Final = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.AUTHENTICATION_FAILED,
        Reason.TEMPLATE_NOT_FOUND,
        Reason.TEMPLATE_ACCESS_DENIED,
        Reason.INIT_FAILED,
        Reason.SANDBOX_EXPIRED,
        Reason.SANDBOX_QUARANTINED,
        Reason.DEFAULT_KEY_NOT_ALLOWED,
        Reason.TEMPLATE_NOT_ALLOWED,
        Reason.ORPHAN_NOT_ALLOWED,
        Reason.NAMESPACE_NOT_ALLOWED,
        Reason.BUDGET_EXCEEDED,
    }
)


#: Where every reason is explained: its ``### Reason`` section (tests/unit/test_docs.py keeps the
#: sections and the reasons in step, and checks every pointer's anchor).
TROUBLESHOOTING_DOC = "docs/troubleshooting.md"
_REASON_VALUES: Final = frozenset(r.value for r in Reason)


def troubleshooting_pointer(reason: str) -> str:
    """The sentence that ends a problem's message: where its reason is explained, by the anchor
    GitHub gives the section (``### InvalidSpec`` -> ``#invalidspec``). Empty for a reason the
    operator does not define, which nothing documents."""
    value = str(reason)
    return f"See {TROUBLESHOOTING_DOC}#{value.lower()}." if value in _REASON_VALUES else ""


def _now() -> datetime:
    return datetime.now(UTC)


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of this type, if any."""
    return next((c for c in conditions if c.type == str(type_)), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    """Whether the condition of this type exists and is True."""
    cond = find(conditions, type_)
    return cond is not None and cond.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    """A new list with the condition of ``type_`` set, the others untouched and in order.

    ``lastTransitionTime`` moves only when ``status`` changes: a reason or message update is not a
    transition (metav1.Condition's contract, which ``kubectl wait`` and alerting rely on).
    """
    old = find(conditions, type_)
    transitioned = old is None or old.status != status
    new = Condition(
        type=str(type_),
        status=status,
        reason=str(reason),
        message=message,
        last_transition_time=(now or _now()) if transitioned or old is None else old.last_transition_time,
        observed_generation=observed_generation,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == new.type else c for c in conditions]


def ready_condition(conditions: Sequence[Condition]) -> tuple[Status, Reason | str, str]:
    """The overall Ready verdict ``(status, reason, message)`` computed from the other conditions.

    Order of precedence: a terminal Synced failure; a completed task; suspension; no sandbox yet
    (with the reason that blocks it); the agents' state. A transient Synced failure (rate limited, backend unavailable) does
    not take a running swarm out of Ready: the agents are still working.
    """
    synced = find(conditions, ConditionType.SYNCED)
    if synced is not None and synced.status == "False" and synced.reason in TERMINAL_REASONS:
        return "False", synced.reason, synced.message
    completed = find(conditions, ConditionType.COMPLETED)
    if completed is not None and completed.status == "True":
        return "False", Reason.TASK_COMPLETED, completed.message or "the task is done"
    suspended = find(conditions, ConditionType.SUSPENDED)
    if suspended is not None and suspended.status == "True":
        # Ready's reason stays Suspended whatever paused it (never a terminal reason: a budget
        # pause is Suspended, not Failed); the Suspended condition's own message says why.
        return "False", Reason.SUSPENDED, suspended.message or "the sandbox is paused (spec.suspend is true)"
    created = find(conditions, ConditionType.SANDBOX_CREATED)
    if created is None or created.status != "True":
        if synced is not None and synced.status == "False":
            return "False", synced.reason, synced.message
        if created is not None:
            return "False", created.reason, created.message
        return "False", Reason.CREATING, "waiting for a sandbox"
    agents = find(conditions, ConditionType.AGENTS_READY)
    if agents is None:
        return "False", Reason.INITIALIZING, "waiting for the agents to start"
    if agents.status == "True":
        return "True", Reason.AVAILABLE, agents.message or "all agents are running"
    return "False", agents.reason, agents.message


def refresh_ready(
    conditions: Sequence[Condition],
    *,
    observed_generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    """``conditions`` with Ready recomputed by :func:`ready_condition` and merged in."""
    status, reason, message = ready_condition(conditions)
    return set_condition(
        conditions,
        ConditionType.READY,
        status,
        reason,
        message,
        observed_generation=observed_generation,
        now=now,
    )


def derive_phase(conditions: Sequence[Condition], deleting: bool = False) -> Phase:
    """The phase for these conditions; see the table in the module docstring."""
    if deleting:
        return Phase.TERMINATING
    # Computed afresh rather than read from the stored Ready, so a caller that forgot refresh_ready()
    # still gets a phase consistent with the component conditions.
    ready, reason, _ = ready_condition(conditions)
    if ready == "False" and reason in TERMINAL_REASONS:
        return Phase.FAILED
    if is_true(conditions, ConditionType.COMPLETED):
        return Phase.SUCCEEDED
    if is_true(conditions, ConditionType.SUSPENDED):
        return Phase.SUSPENDED
    if ready == "True":
        return Phase.READY
    created = find(conditions, ConditionType.SANDBOX_CREATED)
    if created is not None and created.status == "True":
        agents = find(conditions, ConditionType.AGENTS_READY)
        if agents is None or agents.reason == Reason.INITIALIZING:
            return Phase.INITIALIZING
        return Phase.DEGRADED
    if created is not None and created.status == "False" and created.reason == Reason.CREATING:
        return Phase.CREATING
    return Phase.PENDING
