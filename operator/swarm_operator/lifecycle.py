"""The SwarmSandbox lifecycle as plain async functions: reconcile (create, adopt, initialise, scale)
and delete. Nothing here imports kopf: the handlers translate :class:`RetryLater` and
:class:`GiveUp` into kopf's temporary and permanent errors, and hand in a :class:`Runtime` holding
every outside dependency, so the whole lifecycle runs in tests against fakes or the emulators.

The rules this module keeps (see ARCHITECTURE.md):

* **Never two sandboxes for one resource.** Every sandbox carries tags (uid, namespace, name,
  operator id). Before creating, the operator lists sandboxes by the uid tag and adopts what it
  finds; extras are killed. A create whose outcome is unknown (timeout, dropped connection) is never
  repeated blindly: the next attempt lists first and adopts what that create made.
* **Never an untracked sandbox.** The sandbox id is written to status right after create, before
  initialising, so even a crash mid-initialisation leaves the id on record.
* **Never hang.** Every remote call is bounded by the backend's timeouts; initialisation polls the
  in-sandbox report with a deadline; retries are bounded and back off.
* **Never a leak on failure.** Initialisation is retried on the same sandbox; when the budget is
  spent the sandbox is killed before the resource is marked Failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn, Protocol

import pydantic

from swarm_operator import agentconfig, bootstrap, network
from swarm_operator.backend import (
    NO_RETRY,
    AuthenticationFailed,
    BackendError,
    EgressPolicy,
    QuotaExceeded,
    RateLimited,
    SandboxBackend,
    SandboxInfo,
    SandboxNotFound,
)
from swarm_operator.conditions import (
    TERMINAL_REASONS,
    ConditionType,
    Reason,
    derive_phase,
    refresh_ready,
    set_condition,
)
from swarm_operator.config import Settings
from swarm_operator.metrics import Metrics, new_registry
from swarm_operator.model import (
    AgentItem,
    AgentsStatus,
    HealthStatus,
    InvalidSpecError,
    McpServerStatus,
    MetricsStatus,
    NetworkStatus,
    Phase,
    SandboxStatus,
    SecretsStatus,
    SwarmSandboxSpec,
    SwarmSandboxStatus,
    WorkspaceStatus,
)
from swarm_operator.ratelimit import CreationLimiter
from swarm_operator.secrets import SecretKeyRef, SecretNotFound, SecretReader

logger = logging.getLogger("swarm_operator.lifecycle")

GROUP = "claudeswarm.io"
VERSION = "v1alpha1"
PLURAL = "swarmsandboxes"

#: Metadata tags written on every sandbox. The uid tag is what adopt-or-create searches by.
TAG_UID = "claudeswarm.io/uid"
TAG_NAMESPACE = "claudeswarm.io/namespace"
TAG_NAME = "claudeswarm.io/name"
TAG_OPERATOR = "claudeswarm.io/operator"

#: Written inside a sandbox released by ``deletionPolicy: Orphan`` (E2B metadata is immutable after
#: create, so the mark lives in the sandbox): the orphan sweeper never kills a sandbox that has it.
RELEASED_MARKER = "$HOME/.swarm-released"

# Condition reasons for the SandboxCreated condition's own story (not errors).
CREATED = "Created"
ADOPTED = "Adopted"
#: The sandbox envd answered for is not the one the control plane returned (its own
#: E2B_SANDBOX_ID or the resource uid given to it at create differ): it gets no secret, is killed,
#: and a new one is tried with backoff.
IDENTITY_MISMATCH = "IdentityMismatch"

#: The sandbox's own (non-secret) environment variable holding the resource uid, set at create and
#: read back from inside before any secret is sent.
UID_ENV = "SWARM_RESOURCE_UID"
_IDENTITY_MARK = "swarm-identity"
#: One envd call: the sandbox's id as E2B set it inside, and the uid the operator gave it at create.
IDENTITY_SCRIPT = f'printf \'{_IDENTITY_MARK} %s %s\\n\' "${{E2B_SANDBOX_ID-}}" "${{{UID_ENV}-}}"'


# --------------------------------------------------------------------------------------------------
# What the lifecycle needs from outside
# --------------------------------------------------------------------------------------------------


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


class BackendProvider(Protocol):
    """One backend per API key, reused (``backend.BackendPool`` is the production one)."""

    def for_key(self, api_key: str) -> SandboxBackend: ...


@dataclass
class Runtime:
    """Everything the lifecycle talks to. Built once at operator start-up."""

    settings: Settings
    backends: BackendProvider
    secrets: SecretReader
    status: StatusWriter
    events: EventRecorder
    #: The last API key used per resource uid, so a delete still works after its Secret is gone
    #: (a namespace deletion removes Secrets and resources at the same time). Memory only.
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    #: One lock per resource uid: kopf serialises handlers per object, but the lease daemon runs
    #: beside them, and two concurrent adopt-or-create passes could each create a sandbox.
    locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    metrics: Metrics = field(default_factory=lambda: Metrics(new_registry()), repr=False)
    limiter: CreationLimiter = field(
        default_factory=lambda: CreationLimiter(None, None, None), repr=False
    )
    #: Per resource uid, the sandbox whose identity was verified from inside (secrets may go there
    #: only). Memory only: after a restart every sandbox is verified again before its first secret.
    verified: dict[str, str] = field(default_factory=dict, repr=False)
    #: Per resource uid, sha256 digests of the secret-sourced values the agents were last started
    #: with (by env name, and the E2B key under ``""``). Memory only, never written anywhere: they
    #: tell a rotation from the steady state without keeping a value.
    secret_digests: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    #: The same digests as last read (differs from the above while a restart is pending), so the
    #: Secret watch reacts to a change once, not on every tick.
    secret_seen: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())


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


# --------------------------------------------------------------------------------------------------
# Status bookkeeping
# --------------------------------------------------------------------------------------------------


class _StatusBook:
    """The resource's status as the operator is changing it, written only when it differs.

    Skipping identical writes keeps the API server's write load (and kopf's own reaction to our
    writes) at what a reconcile really changed; a Kubernetes Event is posted on every phase change.
    """

    def __init__(
        self, ref: ResourceRef, status_body: Mapping[str, Any] | None, runtime: Runtime
    ) -> None:
        self.ref = ref
        self.runtime = runtime
        self.status = SwarmSandboxStatus.model_validate(dict(status_body or {}))
        self._written = self.status.to_patch()
        self._phase = self.status.phase

    def set(self, type_: ConditionType, status: str, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message,  # type: ignore[arg-type]
            observed_generation=self.ref.generation,
        )

    def step(self, name: str, seconds: float) -> None:
        metrics = self.status.metrics or MetricsStatus()
        metrics.step_seconds = {**metrics.step_seconds, name: round(seconds, 3)}
        self.status.metrics = metrics
        self.runtime.metrics.step(name, seconds)

    def changed(self) -> bool:
        """Whether the status differs from what was last written (conditions refreshed first)."""
        conditions = refresh_ready(self.status.conditions, observed_generation=self.ref.generation)
        probe = self.status.model_copy(update={
            "conditions": conditions,
            "phase": derive_phase(conditions),
        })
        patch = probe.to_patch()
        patch.pop("message", None)
        written = {k: v for k, v in self._written.items() if k != "message"}
        written.pop("observedGeneration", None)
        patch.pop("observedGeneration", None)
        return patch != written

    async def commit(self, *, deleting: bool = False) -> None:
        conditions = refresh_ready(self.status.conditions, observed_generation=self.ref.generation)
        self.status.conditions = conditions
        self.status.phase = derive_phase(conditions, deleting=deleting)
        ready = next(c for c in conditions if c.type == ConditionType.READY)
        self.status.message = ready.message or None
        self.status.observed_generation = self.ref.generation
        self.runtime.metrics.observe_phase(self.ref.uid, self.ref.namespace, self.status.phase)
        patch = self.status.to_patch()
        if patch == self._written:
            return
        await self.runtime.status.patch_status(self.ref, _with_removals(self._written, patch))
        self._written = patch
        if self.status.phase != self._phase:
            kind = "Warning" if ready.status == "False" and ready.reason in _WARNING_REASONS else "Normal"
            # A resource's first phase is not a transition; when it only says "work started"
            # (Creating, Initializing) the Event would cost an API write per resource for nothing
            # `kubectl get` does not already show. Errors are always posted.
            if self._phase is not None or kind == "Warning" or self.status.phase not in _STARTING:
                self.runtime.events.record(
                    self.ref, kind, ready.reason,
                    f"Phase {self._phase or 'None'} -> {self.status.phase}: {ready.message}"[:1024],
                )
            logger.info(
                "phase %s -> %s (%s)", self._phase, self.status.phase, ready.reason,
                extra=self.ref.log_extra,
            )
            self._phase = self.status.phase


_STARTING = frozenset({Phase.CREATING, Phase.INITIALIZING})

_WARNING_REASONS = frozenset(TERMINAL_REASONS) | {IDENTITY_MISMATCH} | {
    Reason.SECRET_NOT_FOUND, Reason.CONFIG_MAP_NOT_FOUND, Reason.QUOTA_EXCEEDED, Reason.RATE_LIMITED,
    Reason.BACKEND_UNAVAILABLE, Reason.SANDBOX_NOT_FOUND, Reason.AGENTS_DEGRADED,
}


# --------------------------------------------------------------------------------------------------
# Reconcile: create or adopt, then initialise (which also scales in place)
# --------------------------------------------------------------------------------------------------


async def reconcile(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
    *,
    retry: int = 0,
) -> SwarmSandboxStatus:
    """Bring the resource's sandbox to the spec: create or adopt it, then run the setup script.

    Returns the status written. Raises :class:`RetryLater` or :class:`GiveUp` after recording why
    in the status (``Synced=False`` with a stable reason and a message a person can act on).
    """
    async with runtime.lock(ref.uid):
        return await _reconcile(ref, spec_body, status_body, runtime, retry)


async def _reconcile(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
    retry: int,
) -> SwarmSandboxStatus:
    book = _StatusBook(ref, status_body, runtime)
    try:
        spec = SwarmSandboxSpec.from_body(spec_body)
    except InvalidSpecError as exc:
        return await _give_up(book, Reason.INVALID_SPEC, f"invalid spec: {exc}")

    try:
        api_key, envs = await _read_secrets(ref, spec, runtime)
        files = await _agent_files(ref, spec, runtime)
    except SecretNotFound as exc:  # or a ConfigMap: exc.reason says which
        book.set(ConditionType.SYNCED, "False", exc.reason,
                 f"{exc}; the operator retries until it exists")
        await book.commit()
        raise RetryLater(str(exc), delay=_backoff(runtime.settings, retry),
                         reason=exc.reason) from None
    # Everything the sandbox will be given is checked before a sandbox exists, so a spec the
    # setup script cannot take never leaves a half-made sandbox behind.
    problems = _unusable(lambda: _plan(ref, spec, envs, runtime.settings, files), envs)
    problems += network.egress_problems(spec, runtime.settings)
    if problems:
        return await _give_up(book, Reason.INVALID_SPEC, f"invalid spec: {'; '.join(problems)}")
    previous_key = runtime.keys.get(ref.uid)
    if previous_key is not None and previous_key != api_key:
        logger.info("the E2B API key changed; later calls use the new one", extra=ref.log_extra)
        book.runtime.events.record(ref, "Normal", "SecretRotated",
                                   "the E2B API key Secret changed; the operator uses the new key")
    runtime.keys[ref.uid] = api_key
    backend = runtime.backends.for_key(api_key)
    rotated = _rotated(runtime, ref, spec, envs)
    policy = network.egress_policy(spec, runtime.settings)

    try:
        if spec.suspend:
            await _suspend(book, backend)
        else:
            sandbox = await _ensure_sandbox(book, spec, backend, policy)
            await _verify_identity(book, backend, sandbox, retry)
            wanted = spec.template or runtime.settings.default_template
            current = book.status.sandbox.template if book.status.sandbox else None
            shown = network.network_status(policy)
            if (current is not None and current != wanted) or \
                    (book.status.network or NetworkStatus()).model_dump() != shown.model_dump():
                sandbox = await _replace(book, spec, backend, sandbox, envs, files, wanted, policy, retry)
                _secrets_applied(book, spec, envs, rotated, restarted=True)
            else:
                pending = bool(book.status.secrets and book.status.secrets.restart_pending)
                restart = (rotated or pending) and spec.agent.restart_on_secret_change == "Restart"
                if restart:
                    await _stop_agents(book, backend, sandbox.id)
                await _initialise(book, spec, backend, sandbox, envs, files)
                _secrets_applied(book, spec, envs, rotated, restarted=restart)
            if any(c.type == ConditionType.SUSPENDED for c in book.status.conditions):
                book.set(ConditionType.SUSPENDED, "False", Reason.RESUMED,
                         f"sandbox {sandbox.id} resumed and its agents verified")
    except BackendError as exc:
        return await _backend_failed(book, exc, retry)
    book.set(ConditionType.SYNCED, "True", Reason.RECONCILED, "")
    await book.commit()
    return book.status


def _unusable(build_plan: Callable[[], bootstrap.BootstrapPlan], envs: Mapping[str, str]) -> list[str]:
    """What the schema let through but no process can take: NUL bytes, names the script reserves.

    A NUL cannot travel in an environment variable or an argument; the setup script's own names
    (``SWARM_*``) would be shadowed. Each problem names the field, never a secret value.
    """
    problems = [f"spec.agent.env[{name}]: the value holds a NUL byte, which no environment "
                f"variable can carry" for name, value in envs.items() if "\x00" in value]
    if problems:
        return problems
    try:
        build_plan()
    except InvalidSpecError as exc:
        problems.extend(exc.problems)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = _PLAN_FIELDS.get(str(err["loc"][0]) if err["loc"] else "", "spec")
            where = "".join(f"[{p}]" for p in err["loc"][1:])
            message = str(err.get("ctx", {}).get("error") or err["msg"])
            problems.append(f"{field}{where}: {message}")
    return problems


# Which spec field feeds each plan field, so a plan refusal names what the user wrote.
_PLAN_FIELDS = {
    "command": "spec.agent.command", "args": "spec.agent.args", "env_names": "spec.agent.env",
    "coordinator_install": "spec.coordinator.install", "agents": "spec.agents",
}


async def _replace(
    book: _StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    old: SandboxInfo,
    envs: Mapping[str, str],
    files: Mapping[str, str],
    template: str,
    policy: EgressPolicy,
    retry: int,
) -> SandboxInfo:
    """A change only a new sandbox can honour (template, egress policy): make the new one Ready, then kill
    the old, so at most one extra sandbox bills, and only during the switch.

    Status keeps naming the old sandbox until the new one is Ready. A crash meanwhile leaves the new
    one tagged but untracked: the next pass kills it as a duplicate and starts the switch again.
    If the new sandbox cannot be initialised it is killed and the old one keeps running.
    """
    ref, settings = book.ref, book.runtime.settings
    old_status = book.status.sandbox
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    new = await backend.create(template, _tags(ref, settings), {UID_ENV: ref.uid},
                               timeout_s=_lease_seconds(spec, settings, now, now), network=policy)
    book.runtime.metrics.sandbox_created(time.monotonic() - started)
    logger.info("replacing sandbox %s with %s (template %s)", old.id, new.id, template,
                extra={**ref.log_extra, "sandbox_id": new.id, "step": "replace"})
    if not await _identity_ok(book, backend, new):
        # The old sandbox keeps running the agents; the impostor got nothing and is gone.
        book.status.sandbox = old_status
        await _identity_failed(book, new, retry, keep_created=True)
    book.set(ConditionType.AGENTS_READY, "False", Reason.INITIALIZING,
             f"moving to template {template}: starting the agents in sandbox {new.id}")
    await book.commit()
    try:
        await _initialise(book, spec, backend, new, envs, files)
    except GiveUp as exc:
        # _initialise killed the new sandbox; the old one still runs the agents.
        book.status.sandbox = old_status
        book.set(ConditionType.SANDBOX_CREATED, "True", CREATED,
                 f"sandbox {old.id} kept: the replacement failed")
        await _give_up(book, Reason.INIT_FAILED,
                       f"could not move to template {template} ({exc}); sandbox {old.id} keeps running")
    book.status.sandbox = SandboxStatus(id=new.id, template=template, started_at=new.started_at,
                                        expires_at=new.end_at)
    book.status.network = network.network_status(policy)
    book.set(ConditionType.SANDBOX_CREATED, "True", CREATED,
             f"sandbox {new.id} (template {template}) replaced {old.id}")
    await book.commit()  # the new id is on record before the old sandbox dies
    await backend.kill(old.id)
    book.runtime.events.record(ref, "Normal", "Replaced",
                               f"sandbox {old.id} replaced by {new.id} (template {template}, egress policy)")
    return new


async def _suspend(book: _StatusBook, backend: SandboxBackend) -> None:
    """Pause the sandbox (E2B keeps its memory and files; it stops billing compute)."""
    sandbox = book.status.sandbox
    if sandbox is not None and sandbox.id:
        started = time.monotonic()
        try:
            await backend.pause(sandbox.id)
        except SandboxNotFound:
            book.status.sandbox = None
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
                     f"sandbox {sandbox.id} is gone; a new one is created on resume")
        book.step("pause", time.monotonic() - started)
        message = f"sandbox {sandbox.id} is paused (spec.suspend is true)"
    else:
        message = "no sandbox is created while spec.suspend is true"
    book.set(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, message)


def _with_removals(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a JSON merge patch over ``old``: a merge patch only sets keys, so every key we
    dropped, at any depth (``health.reason`` once healthy again), must be sent as null."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = _with_removals(before, value)
        else:
            patch[key] = value
    return patch


async def _give_up(book: _StatusBook, reason: str, message: str) -> NoReturn:
    book.set(ConditionType.SYNCED, "False", reason, message)
    await book.commit()
    logger.warning("%s: %s", reason, message, extra=book.ref.log_extra)
    raise GiveUp(message, reason=reason)


async def _backend_failed(book: _StatusBook, exc: BackendError, retry: int) -> SwarmSandboxStatus:
    """Record a backend failure and decide how soon (if ever) to try again."""
    settings = book.runtime.settings
    message = exc.message
    if isinstance(exc, AuthenticationFailed):
        # Hammering E2B with a revoked key helps nobody; a Secret change is what fixes it.
        delay = settings.max_retry_delay_seconds
        message = f"{message} (retrying every {delay:.0f}s until the key is fixed)"
    elif isinstance(exc, QuotaExceeded):
        # The quota frees only when another sandbox ends: check back slowly.
        delay = max(settings.quota_retry_seconds, _backoff(settings, retry))
    elif isinstance(exc, RateLimited):
        delay = max(exc.retry_after_s or 0.0, _backoff(settings, retry))
    elif exc.reason in TERMINAL_REASONS and not exc.transient:
        return await _give_up(book, exc.reason, message)
    else:
        delay = max(exc.retry_after_s or 0.0, _backoff(settings, retry))
    book.set(ConditionType.SYNCED, "False", exc.reason, message)
    created = next((c for c in book.status.conditions if c.type == ConditionType.SANDBOX_CREATED), None)
    if created is not None and created.status != "True":
        # Not "Creating" any more: waiting on what the error says (quota, rate limit, outage).
        book.set(ConditionType.SANDBOX_CREATED, "False", exc.reason, message)
    await book.commit()
    logger.warning("%s: %s; retrying in %.1fs", exc.reason, message, delay,
                   extra=book.ref.log_extra)
    raise RetryLater(message, delay=delay, reason=exc.reason)


def _backoff(settings: Settings, retry: int) -> float:
    """Exponential backoff with jitter, capped: the reconcile-level retry delay."""
    base = settings.retry_delay_seconds * (2 ** min(retry, 16))
    return min(settings.max_retry_delay_seconds, base) * random.uniform(0.8, 1.2)


async def _read_secrets(
    ref: ResourceRef, spec: SwarmSandboxSpec, runtime: Runtime, *, key_only: bool = False
) -> tuple[str, dict[str, str]]:
    """The E2B API key and the setup script's environment, with every secretKeyRef resolved.

    The environment holds the agents' variables (``agent.env``, ``ANTHROPIC_API_KEY`` from
    ``agent.apiKeySecretRef``) and the script-only ``SWARM_SECRET_*`` values (workspace password,
    MCP tokens), which the script uses and unsets before any agent starts.
    """
    settings = runtime.settings
    if spec.e2b is not None and spec.e2b.api_key_secret_ref is not None:
        key_ref = SecretKeyRef(ref.namespace, spec.e2b.api_key_secret_ref.name,
                               spec.e2b.api_key_secret_ref.key)
    else:
        key_ref = SecretKeyRef(settings.namespace, settings.default_api_key_secret,
                               settings.default_api_key_secret_key)
    env_refs: dict[str, SecretKeyRef] = {}
    envs: dict[str, str] = {}
    for var in spec.agent.env:
        if var.value_from is not None:
            selector = var.value_from.secret_key_ref
            env_refs[var.name] = SecretKeyRef(ref.namespace, selector.name, selector.key)
        else:
            envs[var.name] = var.value or ""
    if key_only:
        env_refs.clear()
        envs.clear()
    else:
        env_refs.update(agentconfig.tool_secret_refs(ref.namespace, spec))
    values = await runtime.secrets.read_many([key_ref, *env_refs.values()])
    envs.update({name: values[sref] for name, sref in env_refs.items()})
    return values[key_ref], envs


async def _agent_files(ref: ResourceRef, spec: SwarmSandboxSpec, runtime: Runtime) -> dict[str, str]:
    """The agent.config ConfigMap's files (key -> text)."""
    config = spec.agent.config
    if config is None:
        return {}
    return await runtime.secrets.read_config_map(ref.namespace, config.config_map_name,
                                                 optional=bool(config.optional))


def _tags(ref: ResourceRef, settings: Settings) -> dict[str, str]:
    return {
        TAG_UID: ref.uid,
        TAG_NAMESPACE: ref.namespace,
        TAG_NAME: ref.name,
        TAG_OPERATOR: settings.operator_id,
    }


def _lease_seconds(spec: SwarmSandboxSpec, settings: Settings, started_at: datetime,
                   now: datetime) -> int:
    """The E2B timeout to ask for now: one lease, never past the resource's ttlSeconds."""
    lease = settings.lease_seconds
    if spec.ttl_seconds is not None:
        left = (started_at + timedelta(seconds=spec.ttl_seconds) - now).total_seconds()
        lease = min(lease, max(int(left), 1))
    return lease


async def _ensure_sandbox(
    book: _StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, policy: EgressPolicy
) -> SandboxInfo:
    """Adopt the resource's sandbox or create one; its id is in status when this returns."""
    ref, settings = book.ref, book.runtime.settings
    known_id = book.status.sandbox.id if book.status.sandbox else None
    started = time.monotonic()
    tagged = await backend.list({TAG_UID: ref.uid})
    keep: SandboxInfo | None = None
    if tagged:
        keep = next((s for s in tagged if s.id == known_id), None)
        keep = keep or min(tagged, key=lambda s: (s.started_at, s.id))
        for extra in tagged:
            if extra.id != keep.id:
                # Two tagged sandboxes means a create raced a crash: keep one, bill for one.
                logger.warning("killing duplicate sandbox %s", extra.id,
                               extra={**ref.log_extra, "sandbox_id": extra.id})
                await backend.kill(extra.id)
                book.runtime.metrics.duplicate_killed()
    if known_id and (keep is None or keep.id != known_id):
        book.runtime.events.record(
            ref, "Warning", Reason.SANDBOX_NOT_FOUND,
            f"sandbox {known_id} is gone; {'adopting ' + keep.id if keep else 'creating a new one'}",
        )
    if keep is not None:
        if keep.state == "paused":
            now = datetime.now(timezone.utc)
            await backend.resume(keep.id, _lease_seconds(spec, settings, keep.started_at, now))
        how = CREATED if keep.id == known_id else ADOPTED
        sandbox = keep
        book.runtime.limiter.track(ref.uid, ref.namespace)
        if how == ADOPTED:
            book.runtime.metrics.adopted()
    else:
        admission = book.runtime.limiter.try_acquire(ref.uid, ref.namespace)
        if not admission:
            # Throttled: the limiter keeps this resource's place in line for when capacity returns.
            book.runtime.metrics.throttled(admission.scope)
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.RATE_LIMITED, admission.message)
            book.set(ConditionType.SYNCED, "False", Reason.RATE_LIMITED, admission.message)
            await book.commit()
            raise RetryLater(admission.message, delay=max(admission.retry_after_s, 0.1),
                             reason=Reason.RATE_LIMITED)
        template = spec.template or settings.default_template
        book.set(ConditionType.SANDBOX_CREATED, "False", Reason.CREATING,
                 f"creating a sandbox from template {template}")
        now = datetime.now(timezone.utc)
        # The uid goes in as the sandbox's own environment too (not secret): read back from inside
        # before any secret is sent, it proves envd is the sandbox this create made.
        sandbox = await backend.create(
            template, _tags(ref, settings), {UID_ENV: ref.uid},
            timeout_s=_lease_seconds(spec, settings, now, now), network=policy,
        )
        how = CREATED
        book.runtime.metrics.sandbox_created(time.monotonic() - started)
        logger.info("created sandbox %s", sandbox.id,
                    extra={**ref.log_extra, "sandbox_id": sandbox.id, "step": "create",
                           "duration": round(time.monotonic() - started, 3)})
    if how == ADOPTED:
        logger.info("adopted sandbox %s", sandbox.id, extra={**ref.log_extra, "sandbox_id": sandbox.id})
    book.step("create", time.monotonic() - started)
    previous = book.status.sandbox
    same = previous is not None and previous.id == sandbox.id
    book.status.sandbox = SandboxStatus(
        id=sandbox.id,
        # The template as the spec named it when the sandbox was made (E2B reports ids, not the
        # alias a user wrote): what a later spec change is compared against.
        template=(previous.template if same and previous.template else
                  spec.template or settings.default_template if how == CREATED else sandbox.template),
        started_at=previous.started_at if same and previous.started_at else sandbox.started_at,
        expires_at=sandbox.end_at,
    )
    if not same or book.status.network is None:
        # What this sandbox was created with: the policy of this spec (an adopted one was created
        # by this operator from the same resource, before a crash).
        book.status.network = network.network_status(policy)
    book.set(ConditionType.SANDBOX_CREATED, "True", how,
             f"sandbox {sandbox.id} ({'adopted' if how == ADOPTED else 'running'})")
    if ConditionType.AGENTS_READY not in {c.type for c in book.status.conditions} or \
            book.status.agents is None or book.status.agents.desired != spec.agents:
        book.set(ConditionType.AGENTS_READY, "False", Reason.INITIALIZING,
                 f"starting {spec.agents} agents")
    await book.commit()  # the id is on record before any initialisation happens
    return sandbox


#: Where the workspace goes when spec.workspace.path is unset (relative to the home directory).
DEFAULT_WORKSPACE_PATH = "workspace"


def _plan(ref: ResourceRef, spec: SwarmSandboxSpec, envs: Mapping[str, str],
          settings: Settings, files: Mapping[str, str] | None = None) -> bootstrap.BootstrapPlan:
    workspace = spec.workspace
    return bootstrap.BootstrapPlan(
        session=bootstrap.session_name(ref.namespace, ref.name, ref.uid),
        socket=bootstrap.socket_name(ref.namespace, ref.name, ref.uid),
        agents=spec.agents,
        command=spec.agent.command,
        args=list(spec.agent.args),
        env_names=sorted(n for n in envs if not n.startswith(bootstrap.SECRET_ENV_PREFIX)),
        coordinator_enabled=spec.coordinator.enabled,
        coordinator_install=spec.coordinator.install,
        ready_timeout_s=settings.ready_timeout_seconds,
        restart_dead=spec.health_check.restart_dead_agents,
        max_restarts=spec.health_check.max_restarts,
        workdir=(workspace.path or DEFAULT_WORKSPACE_PATH) if workspace else "",
        workspace_repo=workspace.repo if workspace else "",
        workspace_ref=workspace.ref if workspace else "",
        workspace_username=workspace.username if workspace else "x-access-token",
        workspace_allow_floating=workspace.allow_floating_ref if workspace else False,
        agent_config=agentconfig.claude_config_json(spec, files or {}),
        mcp=agentconfig.mcp_config_json(spec),
    )


def _teardown_plan(ref: ResourceRef) -> bootstrap.BootstrapPlan:
    """Enough of a plan to find the resource's tmux server: teardown needs no spec at all."""
    return bootstrap.BootstrapPlan(
        session=bootstrap.session_name(ref.namespace, ref.name, ref.uid),
        socket=bootstrap.socket_name(ref.namespace, ref.name, ref.uid),
        agents=1,
        command="true",
    )


async def _initialise(
    book: _StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox: SandboxInfo,
    envs: Mapping[str, str],
    files: Mapping[str, str] | None = None,
) -> None:
    """Run the setup script until every agent runs, retrying on the same sandbox with backoff.

    The script is idempotent (a rerun keeps healthy agents, restarts dead ones, and converges the
    pane count), so the same call serves first start, retries, adoption after a crash and scaling.
    When the attempts are spent the sandbox is killed: a half-initialised sandbox must not bill.
    """
    ref, settings = book.ref, book.runtime.settings
    try:
        plan = _plan(ref, spec, envs, settings, files)
    except InvalidSpecError as exc:
        await _give_up(book, Reason.INVALID_SPEC, f"invalid spec: {exc}")
    script = bootstrap.render_setup(plan)
    cause = ""
    for attempt in range(1, settings.init_attempts + 1):
        started = time.monotonic()
        try:
            result = await backend.run(
                sandbox.id, script, envs=envs,
                timeout_s=settings.ready_timeout_seconds + settings.command_timeout_seconds,
            )
            metrics = book.status.metrics or MetricsStatus()
            metrics.commands_executed += 1
            if not result.ok:
                metrics.commands_failed += 1
            book.status.metrics = metrics
            report = bootstrap.parse_report(result.stdout)
        except (AuthenticationFailed, SandboxNotFound):
            raise
        except BackendError as exc:
            if not exc.transient:
                raise
            cause = f"step init: {exc.reason}: {exc.message}"
        except ValueError as exc:  # no parsable report: the script could not do its job
            cause = f"step init: setup script failed (exit {result.exit_code}): {exc}; " \
                    f"stderr: {result.stderr.strip()[-500:]}"
        else:
            book.step("init", time.monotonic() - started)
            book.runtime.metrics.sandbox_initialised(time.monotonic() - started)
            for name, seconds in report.steps.items():
                book.step(f"init.{name}", seconds)
            _record_agents(book, spec, report.panes, report.agents.ready, report.restarted)
            _record_tools(book, spec, report)
            if report.workspace is not None and report.workspace.floating:
                # A branch where a pin is required: the spec must change; the sandbox holds no agents.
                await _refuse(book, backend, sandbox, Reason.INVALID_SPEC, "the workspace ref floats",
                              f"invalid spec: spec.workspace.ref: {report.workspace.error}")
            ready = report.agents.ready
            if report.ready and ready >= spec.agents:
                book.set(ConditionType.AGENTS_READY, "True", Reason.AVAILABLE,
                         f"{ready}/{spec.agents} agents running")
                logger.info("%d/%d agents running", ready, spec.agents,
                            extra={**ref.log_extra, "sandbox_id": sandbox.id, "step": "init",
                                   "duration": round(time.monotonic() - started, 3)})
                return
            cause = f"step init: {ready}/{spec.agents} agents running"
            if report.errors:
                cause += ": " + "; ".join(
                    f"{e.step}{'' if e.agent is None else f' agent {e.agent}'}: {e.message}"
                    for e in report.errors
                )[:2000]
        if attempt < settings.init_attempts:
            book.set(ConditionType.AGENTS_READY, "False", Reason.INITIALIZING,
                     f"attempt {attempt}/{settings.init_attempts} failed, retrying: {cause}")
            await book.commit()
            await asyncio.sleep(settings.init_backoff_seconds * 2 ** (attempt - 1))
    # Budget spent: kill first, then report, so a crash in between still leaves no leak behind
    # (the next reconcile sees the id gone and the resource Failed with the same cause).
    await backend.kill(sandbox.id)
    book.runtime.limiter.release(ref.uid)
    book.status.sandbox = None
    book.set(ConditionType.SANDBOX_CREATED, "False", Reason.INIT_FAILED,
             f"sandbox {sandbox.id} killed after {settings.init_attempts} failed initialisations")
    book.set(ConditionType.AGENTS_READY, "False", Reason.INIT_FAILED, cause)
    await _give_up(book, Reason.INIT_FAILED,
                   f"initialisation failed {settings.init_attempts} times, last: {cause}; "
                   f"the sandbox was killed; change the spec to try again")


async def _refuse(book: _StatusBook, backend: SandboxBackend, sandbox: SandboxInfo, reason: Reason,
                  why: str, message: str) -> NoReturn:
    """A setup run found something only a spec (or template) change fixes: kill, then give up.

    Killing first means a crash in between leaves no billing sandbox behind; the next reconcile
    finds the id gone and reports the same cause.
    """
    await backend.kill(sandbox.id)
    book.runtime.limiter.release(book.ref.uid)
    book.status.sandbox = None
    book.set(ConditionType.SANDBOX_CREATED, "False", reason, f"sandbox {sandbox.id} killed: {why}")
    book.set(ConditionType.AGENTS_READY, "False", reason, message)
    await _give_up(book, reason, message)


def _verdict(previous: HealthStatus | None, reason: str | None) -> HealthStatus:
    """A probe's verdict, stamped now: Healthy without a reason, else one more failure in a row."""
    now = datetime.now(timezone.utc)
    if reason is None:
        return HealthStatus(status="Healthy", consecutive_failures=0, last_probe_time=now)
    failures = (previous or HealthStatus()).consecutive_failures + 1
    return HealthStatus(status="Unhealthy", reason=reason, consecutive_failures=failures, last_probe_time=now)


def _mcp_down(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None) -> bool:
    """The spec wants MCP servers and the last look found the gateway not answering."""
    return bool(spec.mcp) and gateway is not None and not gateway.gateway


def _mcp_items(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None) -> list[McpServerStatus]:
    """status.mcp from one look at the gateway (a setup run or a health probe)."""
    items = []
    for entry in spec.mcp:
        if gateway is None:
            state, message = "Unknown", "the gateway was not checked (see the Ready condition)"
        elif not gateway.gateway:
            state, message = "Failed", gateway.error or "the MCP gateway is not running"
            if gateway.restarts:
                message += f" (gateway restarted {gateway.restarts} time(s))"
        elif gateway.servers is None:
            # The gateway answered MCP but reports no per-server health (E2B's does not).
            state, message = "Ready", ""
        elif (server := gateway.servers.get(entry.server_key)) is None:
            state, message = "Failed", f"the gateway does not report server {entry.server_key}"
        else:
            state, message = ("Ready" if server.ok else "Failed"), server.message
        items.append(McpServerStatus(name=entry.name, state=state, message=message[:1024]))
    return items


def _record_tools(book: _StatusBook, spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport) -> None:
    """status.workspace and status.mcp from the setup report (what the sandbox really has)."""
    if spec.workspace is None:
        book.status.workspace = None
    elif report.workspace is not None:
        book.status.workspace = WorkspaceStatus(repo=report.workspace.repo, ref=report.workspace.ref,
                                                commit=report.workspace.commit, path=report.workspace.path)
    if not spec.mcp:
        book.status.mcp = None
        return
    book.status.mcp = _mcp_items(spec, report.mcp)


def _record_agents(book: _StatusBook, spec: SwarmSandboxSpec, panes: Sequence[bootstrap.PaneReport],
                   ready: int, restarted: Iterable[int] = ()) -> None:
    """status.agents from the panes a setup run or a probe saw; restart counts never go down."""
    previous = {item.id: item for item in (book.status.agents.items if book.status.agents else [])}
    restarted = set(restarted)
    items = []
    for pane in sorted(panes, key=lambda p: p.index)[: spec.agents]:
        old = previous.get(pane.index)
        items.append(AgentItem(
            id=pane.index,
            pane=pane.pane_id,
            state="Running" if pane.alive else "Dead",
            restarts=max(pane.restarts, (old.restarts if old else 0) + (pane.index in restarted)),
        ))
    book.status.agents = AgentsStatus(desired=spec.agents, ready=ready, items=items)
    if restarted:
        book.runtime.metrics.agents_restarted(len(restarted))
        metrics = book.status.metrics or MetricsStatus()
        metrics.restarts += len(restarted)
        book.status.metrics = metrics


# --------------------------------------------------------------------------------------------------
# Identity: is envd the sandbox the control plane returned?
# --------------------------------------------------------------------------------------------------


async def _identity_ok(book: _StatusBook, backend: SandboxBackend, sandbox: SandboxInfo) -> bool:
    """One envd call, with no secret in it: the sandbox's own E2B_SANDBOX_ID and the uid given to it
    at create, as seen from inside, must be the id the control plane returned and this resource's
    uid. Anything else (a misrouted envd, a sandbox of another resource, a stale token) gets no
    secret. Verified sandboxes are remembered, so later reconciles skip the call."""
    ref = book.ref
    if book.runtime.verified.get(ref.uid) == sandbox.id:
        return True
    started = time.monotonic()
    result = await backend.run(sandbox.id, IDENTITY_SCRIPT, timeout_s=30)
    # Prometheus only: status keeps the steps a person reads (create, init).
    book.runtime.metrics.step("identity", time.monotonic() - started)
    seen = next((line.split(" ")[1:] for line in reversed(result.stdout.splitlines())
                 if line.startswith(_IDENTITY_MARK + " ")), None)
    if seen == [sandbox.id, ref.uid]:
        book.runtime.verified[ref.uid] = sandbox.id
        return True
    logger.warning("sandbox %s failed the identity check (inside it answers as %s)", sandbox.id,
                   "a different sandbox" if seen else "nothing parsable",
                   extra={**ref.log_extra, "sandbox_id": sandbox.id, "step": "identity"})
    return False


async def _verify_identity(book: _StatusBook, backend: SandboxBackend, sandbox: SandboxInfo,
                           retry: int) -> None:
    if not await _identity_ok(book, backend, sandbox):
        await _identity_failed(book, sandbox, retry)


async def _identity_failed(book: _StatusBook, sandbox: SandboxInfo, retry: int, *,
                           keep_created: bool = False) -> None:
    """Never Ready, never a secret: kill the sandbox (it bills; it is not trusted), say so, and try
    a new one later with growing backoff (a control plane that keeps answering wrongly is not
    hammered)."""
    ref, runtime = book.ref, book.runtime
    backend = runtime.backends.for_key(runtime.keys[ref.uid])
    await backend.kill(sandbox.id)
    runtime.verified.pop(ref.uid, None)
    message = (f"sandbox {sandbox.id} was killed before any secret was sent: from inside it does not "
               f"identify as {sandbox.id} of this resource; a new one is tried")
    if not keep_created:
        runtime.limiter.release(ref.uid)
        book.status.sandbox = None
        book.status.network = None
        book.set(ConditionType.SANDBOX_CREATED, "False", IDENTITY_MISMATCH, message)
        book.set(ConditionType.AGENTS_READY, "False", IDENTITY_MISMATCH, "no agents: " + message)
    book.set(ConditionType.SYNCED, "False", IDENTITY_MISMATCH, message)
    await book.commit()
    runtime.events.record(ref, "Warning", IDENTITY_MISMATCH, message)
    delay = _backoff(runtime.settings, retry + 2)
    raise RetryLater(message, delay=delay, reason=IDENTITY_MISMATCH)


# --------------------------------------------------------------------------------------------------
# Secret rotation
# --------------------------------------------------------------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_env_names(ref: ResourceRef, spec: SwarmSandboxSpec) -> set[str]:
    names = {v.name for v in spec.agent.env if v.value_from is not None}
    return names | set(agentconfig.tool_secret_refs(ref.namespace, spec))


def _rotated(runtime: Runtime, ref: ResourceRef, spec: SwarmSandboxSpec, envs: Mapping[str, str],
             *, since_seen: bool = False) -> list[str]:
    """Env names whose Secret-sourced value differs from what the agents were last started with
    (``since_seen``: from what was last read). Nothing is known on first sight (a fresh operator
    process): that is not a rotation."""
    known = (runtime.secret_seen if since_seen else runtime.secret_digests).get(ref.uid)
    if known is None:
        return []
    return sorted(name for name in _secret_env_names(ref, spec)
                  if name in envs and known.get(name) not in (None, _digest(envs[name])))


def _secrets_applied(book: _StatusBook, spec: SwarmSandboxSpec, envs: Mapping[str, str],
                     rotated: list[str], *, restarted: bool) -> None:
    """Record what the agents now run with, and whether a restart is still pending."""
    ref, runtime = book.ref, book.runtime
    names = _secret_env_names(ref, spec)
    current = {n: _digest(envs[n]) for n in names if n in envs}
    runtime.secret_seen[ref.uid] = current
    previous = book.status.secrets
    now = datetime.now(timezone.utc)
    if rotated and not restarted:
        if previous and previous.restart_pending and all(n in previous.message for n in rotated):
            return  # already reported
        book.status.secrets = SecretsStatus(
            restart_pending=True, last_change_time=now,
            message=f"Secret values of {', '.join(rotated)} changed; the agents keep the old ones "
                    f"until restarted (agent.restartOnSecretChange: Never)"[:1024])
        runtime.events.record(ref, "Normal", "SecretRotated", book.status.secrets.message)
        return  # the applied digests stay those of the values the running agents have
    if restarted and (rotated or (previous and previous.restart_pending)):
        book.status.secrets = SecretsStatus(
            restart_pending=False, last_change_time=now,
            message=f"agents restarted with the new values of {', '.join(rotated) or 'their Secrets'}"[:1024])
        runtime.events.record(ref, "Normal", "AgentsRestarted", book.status.secrets.message)
    if not (previous and previous.restart_pending) or restarted:
        runtime.secret_digests[ref.uid] = current


async def _stop_agents(book: _StatusBook, backend: SandboxBackend, sandbox_id: str) -> None:
    """End every agent (Ctrl-C, a bounded grace, the tmux server closed, the env file removed), so
    the setup run that follows starts them with the new values."""
    settings = book.runtime.settings
    started = time.monotonic()
    await backend.run(sandbox_id, bootstrap.render_teardown(_teardown_plan(book.ref),
                                                           grace_s=settings.delete_grace_seconds),
                      timeout_s=settings.delete_grace_seconds + 30)
    book.runtime.metrics.step("restart", time.monotonic() - started)


async def watch_secrets(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
) -> bool:
    """Read the resource's Secrets again (one GET per Secret it names, nothing cluster-wide) and,
    when the E2B key or an agent value changed, reconcile: later E2B calls use the new key, and the
    agents are restarted or a pending restart is reported, per agent.restartOnSecretChange.
    Returns whether anything changed."""
    if ref.uid not in runtime.keys:
        return False  # not reconciled by this process yet: the reconcile reads them anyway
    try:
        spec = SwarmSandboxSpec.from_body(spec_body)
        api_key, envs = await _read_secrets(ref, spec, runtime)
    except (InvalidSpecError, SecretNotFound):
        return False  # the reconcile reports those
    if spec.suspend:
        return False
    if api_key == runtime.keys.get(ref.uid) and not _rotated(runtime, ref, spec, envs, since_seen=True):
        return False
    await reconcile(ref, spec_body, status_body, runtime)
    return True


# --------------------------------------------------------------------------------------------------
# Delete
# --------------------------------------------------------------------------------------------------


async def delete(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
    *,
    retry: int = 0,
) -> None:
    """Tear the sandbox down (Ctrl-C to the agents, a bounded grace, kill), or release it (Orphan).

    Every sandbox tagged with the resource's uid is killed, not only the one in status, so a
    sandbox created just before a crash cannot outlive its resource. A sandbox already gone is
    success. Raises :class:`RetryLater` while the backend cannot be reached; the lease bounds what
    a sandbox costs meanwhile.
    """
    async with runtime.lock(ref.uid):
        await _delete(ref, spec_body, status_body, runtime, retry)
    runtime.locks.pop(ref.uid, None)
    runtime.verified.pop(ref.uid, None)
    runtime.secret_digests.pop(ref.uid, None)
    runtime.secret_seen.pop(ref.uid, None)
    runtime.limiter.release(ref.uid)
    runtime.metrics.forget(ref.uid)


async def _delete(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
    retry: int,
) -> None:
    policy = (spec_body or {}).get("deletionPolicy", "Delete")
    known_id = ((status_body or {}).get("sandbox") or {}).get("id")
    api_key = await _key_for_delete(ref, spec_body, runtime, retry)
    if api_key is None:
        return
    backend = runtime.backends.for_key(api_key)
    if policy == "Orphan":
        await _release(ref, backend, known_id, runtime)
        return
    started = time.monotonic()
    try:
        tagged = await backend.list({TAG_UID: ref.uid})
        ids = sorted({s.id for s in tagged} | ({known_id} if known_id else set()))
        await asyncio.gather(*(_teardown(ref, backend, sid, runtime.settings) for sid in ids))
    except BackendError as exc:
        delay = max(exc.retry_after_s or 0.0, _backoff(runtime.settings, retry))
        logger.warning("teardown failed (%s: %s); retrying in %.1fs", exc.reason, exc.message, delay,
                       extra=ref.log_extra)
        raise RetryLater(exc.message, delay=delay, reason=exc.reason) from None
    runtime.keys.pop(ref.uid, None)
    logger.info("deleted %d sandbox(es)", len(ids),
                extra={**ref.log_extra, "step": "delete", "duration": round(time.monotonic() - started, 3)})


async def _release(
    ref: ResourceRef, backend: SandboxBackend, sandbox_id: str | None, runtime: Runtime
) -> None:
    """Leave the sandbox running, untracked: mark it released and give it a long timeout.

    Without a new timeout the short lease (the dead-man's switch) would kill a sandbox the user
    asked to keep. The mark tells the orphan sweeper to leave it alone.
    """
    if sandbox_id:
        try:
            await backend.run(sandbox_id, f"printf '%s\\n' {shlex.quote(ref.uid)} > {RELEASED_MARKER}",
                              timeout_s=30)
            await backend.set_timeout(sandbox_id, runtime.settings.orphan_timeout_seconds)
        except SandboxNotFound:
            pass
        except BackendError as exc:
            raise RetryLater(f"cannot release sandbox {sandbox_id} yet: {exc.message}",
                             delay=_backoff(runtime.settings, 0), reason=exc.reason) from None
    runtime.events.record(ref, "Normal", "Orphaned",
                          f"sandbox {sandbox_id} left running (deletionPolicy: Orphan)")
    logger.info("released sandbox %s (deletionPolicy Orphan)", sandbox_id,
                extra={**ref.log_extra, "sandbox_id": sandbox_id})
    runtime.keys.pop(ref.uid, None)


async def _key_for_delete(
    ref: ResourceRef, spec_body: Mapping[str, Any] | None, runtime: Runtime, retry: int
) -> str | None:
    """The API key to delete with: the Secret's, else the one last used, else give up after a while.

    Giving up is safe only because of the lease: the sandbox dies by itself within one lease.
    """
    try:
        spec = SwarmSandboxSpec.from_body(spec_body)
        key, _ = await _read_secrets(ref, spec, runtime, key_only=True)
        return key
    except (InvalidSpecError, SecretNotFound) as exc:
        cached = runtime.keys.get(ref.uid)
        if cached is not None:
            return cached
        if retry < 3:
            raise RetryLater(f"cannot delete the sandbox yet: {exc}", delay=_backoff(runtime.settings, retry),
                             reason=Reason.SECRET_NOT_FOUND) from None
        runtime.events.record(
            ref, "Warning", Reason.SECRET_NOT_FOUND,
            f"no API key to kill the sandbox with ({exc}); it stops by itself when its lease "
            f"expires (at most {runtime.settings.lease_seconds}s)",
        )
        return None


async def _teardown(ref: ResourceRef, backend: SandboxBackend, sandbox_id: str, settings: Settings) -> None:
    """Ctrl-C to every pane and a bounded grace, then kill. Only the kill must succeed."""
    if settings.delete_grace_seconds > 0:
        try:
            await backend.run(
                sandbox_id,
                bootstrap.render_teardown(_teardown_plan(ref), grace_s=settings.delete_grace_seconds),
                timeout_s=settings.delete_grace_seconds + 10,
                retry=NO_RETRY,
            )
        except BackendError as exc:
            if isinstance(exc, AuthenticationFailed):
                raise
            logger.info("graceful stop skipped (%s)", exc.reason,
                        extra={**ref.log_extra, "sandbox_id": sandbox_id})
    await backend.kill(sandbox_id)


# --------------------------------------------------------------------------------------------------
# Lease: the dead-man's switch
# --------------------------------------------------------------------------------------------------


async def renew_lease(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
) -> None:
    """Extend the sandbox's E2B timeout by one lease, never past ``ttlSeconds``.

    Sandboxes are created with a short timeout, so if the operator is gone for good each one costs
    at most one lease. When the ttl is reached the sandbox is killed and the resource is Failed
    with reason SandboxExpired. A sandbox found gone is recorded (SandboxNotFound) and the resource
    reconciled again, which creates a replacement.
    """
    async with runtime.lock(ref.uid):
        book = _StatusBook(ref, status_body, runtime)
        sandbox = book.status.sandbox
        api_key = runtime.keys.get(ref.uid)
        if sandbox is None or sandbox.id is None or api_key is None:
            return  # nothing running yet, or not reconciled by this process yet
        try:
            spec = SwarmSandboxSpec.from_body(spec_body)
        except InvalidSpecError:
            return
        if spec.suspend:
            return
        backend = runtime.backends.for_key(api_key)
        now = datetime.now(timezone.utc)
        started_at = sandbox.started_at or now
        if spec.ttl_seconds is not None and now >= started_at + timedelta(seconds=spec.ttl_seconds):
            await backend.kill(sandbox.id)
            runtime.limiter.release(ref.uid)
            book.status.sandbox = None
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_EXPIRED,
                     f"sandbox {sandbox.id} reached ttlSeconds={spec.ttl_seconds} and was killed")
            book.set(ConditionType.SYNCED, "False", Reason.SANDBOX_EXPIRED,
                     f"the sandbox lived its ttlSeconds ({spec.ttl_seconds}s); "
                     f"change the spec to start a new one")
            await book.commit()
            return
        lease = _lease_seconds(spec, runtime.settings, started_at, now)
        try:
            await backend.set_timeout(sandbox.id, lease)
        except SandboxNotFound:
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
                     f"sandbox {sandbox.id} is gone; a new one will be created")
            book.set(ConditionType.AGENTS_READY, "False", Reason.SANDBOX_NOT_FOUND,
                     "the sandbox running the agents is gone")
            book.status.agents = None
            await book.commit()
            raise
        expires = now + timedelta(seconds=lease)
        # Written only when it moved noticeably: a renewal is not worth an API write every time.
        if sandbox.expires_at is None or abs((sandbox.expires_at - expires).total_seconds()) > 60:
            book.status.sandbox = sandbox.model_copy(update={"expires_at": expires})
            await book.commit()


# --------------------------------------------------------------------------------------------------
# Health: probe, report, self-heal
# --------------------------------------------------------------------------------------------------


async def check_health(
    ref: ResourceRef,
    spec_body: Mapping[str, Any] | None,
    status_body: Mapping[str, Any] | None,
    runtime: Runtime,
) -> None:
    """One health probe: one call into the sandbox returns its panes (and coordinator registry).

    Status is written only when something a person would care about changed (health verdict,
    agent states, restart counts): a quiet tick costs the API server nothing. Dead agents are
    restarted in place when ``healthCheck.restartDeadAgents`` is on, up to ``maxRestarts`` each, by
    re-running the idempotent setup script; past that the resource stays Degraded with the counts.
    Raises :class:`SandboxNotFound` when the sandbox is gone, so the caller can reconcile.
    """
    async with runtime.lock(ref.uid):
        book = _StatusBook(ref, status_body, runtime)
        sandbox = book.status.sandbox
        api_key = runtime.keys.get(ref.uid)
        if sandbox is None or sandbox.id is None or api_key is None:
            return
        try:
            spec = SwarmSandboxSpec.from_body(spec_body)
        except InvalidSpecError:
            return
        if spec.suspend or book.status.phase in (Phase.FAILED, Phase.INITIALIZING, Phase.CREATING):
            return
        backend = runtime.backends.for_key(api_key)
        plan = _plan(ref, spec, {}, runtime.settings)
        previous = book.status.health or HealthStatus()
        try:
            result = await backend.run(sandbox.id, bootstrap.render_probe(plan), timeout_s=60)
            report = bootstrap.parse_health(result.stdout)
        except SandboxNotFound:
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
                     f"sandbox {sandbox.id} is gone; a new one will be created")
            book.set(ConditionType.AGENTS_READY, "False", Reason.SANDBOX_NOT_FOUND,
                     "the sandbox running the agents is gone")
            book.status.health = _verdict(previous, Reason.SANDBOX_NOT_FOUND)
            await book.commit()
            raise
        except (BackendError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, BackendError) else "ProbeFailed"
            book.status.health = _verdict(previous, f"{reason}: {exc}"[:1024])
            await book.commit()
            return
        mcp_down = _mcp_down(spec, report.mcp)
        # A dead gateway is restarted like a dead agent, within the same per-item budget.
        mcp_healable = mcp_down and report.mcp is not None \
            and report.mcp.restarts < spec.health_check.max_restarts
        if spec.mcp and report.mcp is not None:
            book.status.mcp = _mcp_items(spec, report.mcp)
        if report.healthy:
            if mcp_healable and spec.health_check.restart_dead_agents:
                await _heal(book, spec, backend, sandbox.id, plan, runtime)  # restarts the gateway
                return
            verdict = _verdict(previous, Reason.MCP_GATEWAY_UNAVAILABLE if mcp_down else None)
            _record_agents(book, spec, report.panes, report.agents.alive)
            book.set(ConditionType.AGENTS_READY, "True", Reason.AVAILABLE,
                     f"{report.agents.alive}/{spec.agents} agents running")
        else:
            dead = [p for p in report.panes if not p.alive]
            healable = [p for p in dead if p.restarts < spec.health_check.max_restarts]
            if spec.health_check.restart_dead_agents and (healable or report.missing or not report.server
                                                          or mcp_healable):
                await _heal(book, spec, backend, sandbox.id, plan, runtime)
                return
            _record_agents(book, spec, report.panes, report.agents.alive)
            detail = "; ".join(
                f"agent {p.index} dead (restarts {p.restarts}/{spec.health_check.max_restarts})"
                for p in dead) or f"{len(report.missing)} agent pane(s) missing"
            message = f"{report.agents.alive}/{spec.agents} agents running: {detail}"
            verdict = _verdict(previous, Reason.AGENTS_DEGRADED)
            book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_DEGRADED, message)
        # Compare without the probe time: a quiet tick must not write.
        verdict = verdict.model_copy(update={"last_probe_time": previous.last_probe_time})
        book.status.health = verdict
        if book.changed():
            book.status.health = verdict.model_copy(
                update={"last_probe_time": datetime.now(timezone.utc)})
            await book.commit()


async def _heal(
    book: _StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox_id: str,
    plan: bootstrap.BootstrapPlan,
    runtime: Runtime,
) -> None:
    """Re-run the setup script: it restarts dead agents in place (within their budget)."""
    ref = book.ref
    if runtime.verified.get(ref.uid) != sandbox_id:
        return  # secrets go only into a sandbox verified from inside; the next reconcile does that
    _, envs = await _read_secrets(ref, spec, runtime)
    plan = _plan(ref, spec, envs, runtime.settings, await _agent_files(ref, spec, runtime))
    try:
        result = await backend.run(sandbox_id, bootstrap.render_setup(plan), envs=envs,
                                   timeout_s=runtime.settings.ready_timeout_seconds
                                   + runtime.settings.command_timeout_seconds)
        report = bootstrap.parse_report(result.stdout)
    except (BackendError, ValueError) as exc:
        logger.warning("self-heal failed: %s", exc, extra={**ref.log_extra, "sandbox_id": sandbox_id})
        return
    _record_agents(book, spec, report.panes, report.agents.ready, report.restarted)
    _record_tools(book, spec, report)
    ready = report.agents.ready
    if report.restarted:
        book.runtime.events.record(
            ref, "Normal", "AgentRestarted",
            f"restarted agent(s) {', '.join(map(str, report.restarted))} in place")
    agent_errors = [e for e in report.errors if e.step != "mcp"]
    if ready >= spec.agents and report.agents.ready == report.agents.desired and not agent_errors:
        book.set(ConditionType.AGENTS_READY, "True", Reason.AVAILABLE,
                 f"{ready}/{spec.agents} agents running")
        # The gateway alone still down: the agents run without their tools.
        book.status.health = _verdict(
            book.status.health, Reason.MCP_GATEWAY_UNAVAILABLE if _mcp_down(spec, report.mcp) else None)
    else:
        book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_DEGRADED,
                 f"{ready}/{spec.agents} agents running after restarts")
        book.status.health = _verdict(book.status.health, Reason.AGENTS_DEGRADED)
    await book.commit()
