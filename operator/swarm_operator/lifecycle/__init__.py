"""The SwarmSandbox lifecycle as plain async functions, one module per handler.

Nothing here imports kopf: the handlers translate :class:`RetryLater` and :class:`GiveUp` into
kopf's temporary and permanent errors, and hand in a :class:`Runtime` holding every outside
dependency, so the whole lifecycle runs in tests against fakes or the emulators.

Entry points take parsed models (:class:`~swarm_operator.model.SwarmSandboxSpec`,
:class:`~swarm_operator.model.SwarmSandboxStatus`): the handlers parse once, at the edge. A spec
the model refuses goes to ``refuse_spec`` (recorded as InvalidSpec) or, on delete, arrives as an
:class:`UnusableSpec`.

Modules (imports flow downwards in this list):

* :mod:`.reconcile` — ``reconcile``: create or adopt, verify, initialise (the kopf create/update/
  resume handlers).
* :mod:`.delete` — ``delete``: teardown, or release for ``deletionPolicy: Orphan``.
* :mod:`.lease` — ``renew_lease``: the dead-man's switch (the lease daemon).
* :mod:`.health` — ``check_health``: probe, report, self-heal (the health daemon).
* :mod:`.rotation` — ``watch_secrets``: Secret rotation (the secrets daemon).
* :mod:`.startup` — ``seed_limiter``: the creation limiter learns E2B's history at start.
* :mod:`.agents` — the spec's Secrets/ConfigMap → one setup run, retried → AgentsReady.
* :mod:`.plan` — spec → setup plan, checked before any sandbox exists.
* :mod:`.report` — a run's or probe's report → ``status.agents/workspace/mcp``.
* :mod:`.budget` — the init budget (``status.sandbox.initAttempts``) and the bound it gives.
* :mod:`.ownership` — ``status.sandbox.id`` is a hint: E2B's uid tag is confirmed before acting.
* :mod:`.handover` — ``replace``: a new sandbox for a template/egress change or before the plan's
  lifetime cap, made Ready before the old one is killed.
* :mod:`.identity` — who a sandbox is, checked from inside before its first secret.
* :mod:`.sandbox` — adopt/create, lease and lifetime, pause, and the one kill-and-record path.
* :mod:`.results` — ``spec.workspace.push``: the workspace pushed periodically and before every
  sandbox end (``results.push`` is what other code calls).
* :mod:`.status` — the status draft (:class:`~.status.StatusBook`).
* :mod:`.runtime` — :class:`ResourceRef`, :class:`Runtime` and its Protocols, the per-resource
  :class:`Memory`, :class:`RetryLater`/:class:`GiveUp`.
"""

from swarm_operator.lifecycle.agents import default_api_key_ref
from swarm_operator.lifecycle.delete import UnusableSpec, delete
from swarm_operator.lifecycle.health import check_health, probe_interval
from swarm_operator.lifecycle.lease import renew_lease
from swarm_operator.lifecycle.reconcile import reconcile, refuse_spec, resume
from swarm_operator.lifecycle.rotation import watch_secrets
from swarm_operator.lifecycle.runtime import (
    BackendProvider,
    EventRecorder,
    GiveUp,
    Memory,
    MemoryReleaseRecord,
    ReleaseRecord,
    ResourceRef,
    RetryLater,
    Runtime,
    StatusWriter,
)

__all__ = [
    "BackendProvider",
    "EventRecorder",
    "GiveUp",
    "Memory",
    "MemoryReleaseRecord",
    "ReleaseRecord",
    "ResourceRef",
    "RetryLater",
    "Runtime",
    "StatusWriter",
    "UnusableSpec",
    "check_health",
    "default_api_key_ref",
    "delete",
    "probe_interval",
    "reconcile",
    "refuse_spec",
    "resume",
    "renew_lease",
    "watch_secrets",
]
