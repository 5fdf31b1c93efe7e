"""What the lifecycle needs from outside, and what it remembers between handler calls.

Nothing in the lifecycle imports kopf: the handlers translate :class:`RetryLater` and
:class:`GiveUp` into kopf's temporary and permanent errors, and hand in a :class:`Runtime` holding
every outside dependency, so the whole lifecycle runs in tests against fakes or the emulators.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from swarm_operator.backend import SandboxBackend
from swarm_operator.config import Settings
from swarm_operator.metrics import Metrics, new_registry
from swarm_operator.model import CostStatus, WorkspaceSpec
from swarm_operator.ratelimit import CreationLimiter
from swarm_operator.secrets import SecretReader

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
    "backoff",
]


@dataclass(frozen=True)
class ResourceRef:
    """The identity of one SwarmSandbox, as of the event being handled."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ResourceRef:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation"),
        )

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"k8s_ref": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}


class StatusWriter(Protocol):
    """Writes a merge patch to the resource's ``status`` subresource."""

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> None: ...


class EventRecorder(Protocol):
    """Posts a Kubernetes Event about the resource. Must not raise or block."""

    def record(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None: ...


class ReleaseRecord(Protocol):
    """The operator's own record of sandboxes released by ``deletionPolicy: Orphan``: what the orphan
    sweeper spares. Kept outside every sandbox (``released.ConfigMapReleaseRecord`` in production),
    since anything inside one is the agents' to forge."""

    async def record(self, sandbox_id: str, ref: ResourceRef, until: float) -> None: ...

    async def ids(self) -> set[str]: ...


@dataclass
class MemoryReleaseRecord:
    """A :class:`ReleaseRecord` in this process's memory only (tests, and runs without a cluster)."""

    entries: dict[str, float] = field(default_factory=dict)

    async def record(self, sandbox_id: str, ref: ResourceRef, until: float) -> None:
        self.entries[sandbox_id] = until

    async def ids(self) -> set[str]:
        return {sid for sid, until in self.entries.items() if until > time.time()}


class BackendProvider(Protocol):
    """One backend per API key, reused (``backend.BackendPool`` is the production one)."""

    def for_key(self, api_key: str) -> SandboxBackend: ...


@dataclass
class Memory:
    """What this process remembers about one resource between handler calls. Memory only, never
    written anywhere: after a restart each field starts empty and is learnt again, safely (see each).
    Dropped as a whole when the resource is deleted (:meth:`Runtime.forget`)."""

    #: kopf serialises handlers per object, but the daemons run beside them, and two concurrent
    #: adopt-or-create passes could each create a sandbox: every entry point holds this lock.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The last E2B API key used, so a delete still works after its Secret is gone (a namespace
    #: deletion removes Secrets and resources at the same time).
    api_key: str | None = field(default=None, repr=False)
    #: The sandbox whose identity was verified from inside (secrets may go there only). After a
    #: restart every sandbox is verified again before its first secret.
    verified: str | None = None
    #: The sandbox whose uid tag E2B confirmed (``lifecycle.ownership``): status names it, and it
    #: is this resource's. After a restart it is confirmed again before it is acted on.
    confirmed: str | None = None
    #: Successful health probes not yet added to status.metrics (they ride along with the next
    #: status write instead of costing one each).
    quiet_probes: int = 0
    #: sha256 digests of the secret-sourced values the agents were last started with (by env
    #: name): they tell a rotation from the steady state without keeping a value.
    secret_digests: dict[str, str] | None = field(default=None, repr=False)
    #: The same digests as last read (differs from the above while a restart is pending), so the
    #: Secret watch reacts to a change once, not on every tick.
    secret_seen: dict[str, str] | None = field(default=None, repr=False)
    #: (generation, wall-clock time this process first saw it, whether its Ready was reported) for
    #: the apply-to-Ready histogram. After a restart a generation already Ready is not reported again.
    applied: tuple[int | None, float, bool] | None = None
    #: The resource's namespace, last cost ledger and whether it uses the operator's default key:
    #: what the per-namespace daily cap (SWARM_MAX_USD_PER_NAMESPACE_PER_DAY) sums. Learnt again
    #: after a restart as each resource is reconciled (the ledgers themselves live in status).
    namespace: str | None = None
    cost: CostStatus | None = None
    default_key: bool = False
    #: (sandbox id, when its E2B lifetime cap started counting): the sandbox's start as E2B reports
    #: it, or the moment before this process resumed it (a resume is a new instance). Learnt again
    #: on the adopt every reconcile does first, so a restart loses nothing the cap needs.
    lifetime: tuple[str, datetime] | None = None
    #: The sandbox whose lifetime hand-over failed for good (its new sandbox could not be made
    #: Ready): not tried again for it; it runs to its cap and the resource is then recreated.
    handover_failed: str | None = None
    #: The spec's workspace as last reconciled or probed: where the kill and pause paths, which get
    #: no spec, find spec.workspace.push (lifecycle.results). Learnt again by the first reconcile.
    workspace: WorkspaceSpec | None = None


@dataclass
class Runtime:
    """Everything the lifecycle talks to. Built once at operator start-up."""

    settings: Settings
    backends: BackendProvider
    secrets: SecretReader
    status: StatusWriter
    events: EventRecorder
    metrics: Metrics = field(default_factory=lambda: Metrics(new_registry()), repr=False)
    limiter: CreationLimiter = field(default_factory=lambda: CreationLimiter(None, None, None), repr=False)
    released: ReleaseRecord = field(default_factory=MemoryReleaseRecord, repr=False)
    #: One :class:`Memory` per resource uid.
    memory: dict[str, Memory] = field(default_factory=dict, repr=False)

    def remember(self, uid: str) -> Memory:
        """The resource's memory record, made empty on first use."""
        return self.memory.setdefault(uid, Memory())

    def lock(self, uid: str) -> asyncio.Lock:
        return self.remember(uid).lock

    def api_key(self, uid: str) -> str | None:
        """The API key last used for this resource, if this process used one (creates nothing)."""
        record = self.memory.get(uid)
        return record.api_key if record is not None else None

    def keys_in_use(self) -> set[str]:
        """Every API key some live resource was last reconciled with (what the sweeper scans)."""
        return {m.api_key for m in self.memory.values() if m.api_key is not None}

    def tracked(self) -> int:
        """How many resources this process has reconciled (and so holds an API key for)."""
        return sum(1 for m in self.memory.values() if m.api_key is not None)

    def forget(self, uid: str) -> None:
        """Drop everything remembered about a resource that is gone."""
        self.memory.pop(uid, None)


class RetryLater(Exception):
    """The reconcile did not finish and should run again after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float, reason: str) -> None:
        super().__init__(message)
        self.delay = delay
        self.reason = reason


class GiveUp(Exception):
    """The reconcile cannot succeed until the spec (or a referenced object) changes."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def backoff(settings: Settings, retry: int) -> float:
    """Exponential backoff with jitter, capped: the reconcile-level retry delay."""
    base = settings.retry_delay_seconds * (2.0 ** min(retry, 16))
    return min(settings.max_retry_delay_seconds, base) * random.uniform(0.8, 1.2)
