"""Reconcile: bring the resource's sandbox to the spec — create or adopt it, verify it, then run the
setup script (which also scales in place, restarts for rotated Secrets, and resumes).

The order is the safety: inputs (Secrets, ConfigMap) and everything the setup script will take are
checked before a sandbox exists; the sandbox's id is on record before it is initialised; no secret
goes in before the sandbox proved who it is. Every failure is recorded in status (``Synced=False``
with a stable reason and a message a person can act on) before :class:`RetryLater` or
:class:`GiveUp` is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NoReturn

from swarm_operator import agentconfig, network
from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    EgressPolicy,
    QuotaExceeded,
    RateLimited,
    SandboxBackend,
    SandboxInfo,
    SandboxNotFound,
)
from swarm_operator.conditions import TERMINAL_REASONS, ConditionType, Reason, find
from swarm_operator.lifecycle import bounds, budget, results, spend, task
from swarm_operator.lifecycle.agents import agent_files, initialise, read_secrets
from swarm_operator.lifecycle.handover import replace
from swarm_operator.lifecycle.identity import verify_identity
from swarm_operator.lifecycle.plan import plan, unusable
from swarm_operator.lifecycle.rotation import restore, rotated, secrets_applied, stop_agents
from swarm_operator.lifecycle.runtime import GiveUp, ResourceRef, RetryLater, Runtime, backoff
from swarm_operator.lifecycle.sandbox import ensure_sandbox, kill_and_record, lifetime_handover_due, pause
from swarm_operator.lifecycle.status import StatusBook, give_up
from swarm_operator.lifecycle.tenancy import Refusal, refusal
from swarm_operator.model import (
    HealthStatus,
    InvalidSpecError,
    NetworkStatus,
    SwarmSandboxSpec,
    SwarmSandboxStatus,
)
from swarm_operator.secrets import SecretNotFound

logger = logging.getLogger("swarm_operator.lifecycle")


async def reconcile(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    *,
    retry: int = 0,
) -> SwarmSandboxStatus:
    """Bring the resource's sandbox to the spec: create or adopt it, then run the setup script.

    Returns the status written. Raises :class:`RetryLater` or :class:`GiveUp` after recording why
    in the status (``Synced=False`` with a stable reason and a message a person can act on).
    """
    async with runtime.lock(ref.uid):
        book = StatusBook(ref, status, runtime)
        spend.note_applied(book)
        written = await _reconcile(ref, spec, book, retry)
        spend.note_ready(book)
        return written


async def resume(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    *,
    retry: int = 0,
) -> SwarmSandboxStatus:
    """``swarm-operator resume``: lift an idle pause (``Suspended`` reason Idle), then reconcile,
    which resumes the sandbox. Anything else (spec.suspend, a budget) keeps holding: the reconcile
    says why. Raises like :func:`reconcile`."""
    async with runtime.lock(ref.uid):
        book = StatusBook(ref, status, runtime)
        if budget.idle_hold(book):
            book.set(ConditionType.SUSPENDED, "False", Reason.RESUMED, "resume requested")
            book.event("Normal", Reason.RESUMED, "resume requested: the idle sandbox is resumed")
        return await _reconcile(ref, spec, book, retry)


async def refuse_spec(
    ref: ResourceRef, error: InvalidSpecError, status: SwarmSandboxStatus, runtime: Runtime
) -> NoReturn:
    """A spec the model refuses (what the CRD schema cannot express): recorded as InvalidSpec with
    every problem named, then :class:`GiveUp`. Nothing is created for it."""
    async with runtime.lock(ref.uid):
        await give_up(StatusBook(ref, status, runtime), Reason.INVALID_SPEC, f"invalid spec: {error}")


def _remember_key(book: StatusBook, api_key: str) -> None:
    """Keep the resource's E2B key in memory; a changed one is used from now on, and announced."""
    memory = book.runtime.remember(book.ref.uid)
    if memory.api_key is not None and memory.api_key != api_key:
        logger.info("the E2B API key changed; later calls use the new one", extra=book.ref.log_extra)
        book.event(
            "Normal", Reason.SECRET_ROTATED, "the E2B API key Secret changed; the operator uses the new key"
        )
    memory.api_key = api_key


async def _reconcile(
    ref: ResourceRef, spec: SwarmSandboxSpec, book: StatusBook, retry: int
) -> SwarmSandboxStatus:
    runtime = book.runtime
    spoofed = agentconfig.spoofing_report(spec)  # reported on a generation's first pass, run as given
    if spoofed is not None and book.status.observed_generation != ref.generation:
        book.event("Warning", Reason.SPOOFED_COMMAND, spoofed)
    refused = refusal(ref.namespace, spec, runtime.settings)
    if refused is not None:  # before any Secret is read: see lifecycle.tenancy
        return await _refuse_by_policy(book, refused)
    await _stay_ended(book)
    try:
        api_key, envs = await read_secrets(ref, spec, runtime)
        files = await agent_files(ref, spec, runtime)
    except SecretNotFound as exc:  # or a ConfigMap: exc.reason says which
        book.set(ConditionType.SYNCED, "False", exc.reason, f"{exc}; {exc.hint}")
        await book.commit()
        raise RetryLater(str(exc), delay=backoff(runtime.settings, retry), reason=exc.reason) from None
    # Everything the sandbox will be given is checked before a sandbox exists, so a spec the
    # setup script cannot take never leaves a half-made sandbox behind.
    problems = unusable(lambda: plan(ref, spec, envs, runtime.settings, files), envs)
    problems += network.egress_problems(spec, runtime.settings)
    if problems:
        return await give_up(book, Reason.INVALID_SPEC, f"invalid spec: {'; '.join(problems)}")
    _remember_key(book, api_key)
    results.remember(runtime, ref.uid, spec)
    backend = runtime.backends.for_key(api_key)
    restore(runtime, ref, book.status)
    changed = rotated(runtime, ref, spec, envs)
    policy = network.egress_policy(spec, runtime.settings)

    try:
        if spec.suspend:
            await pause(
                book,
                backend,
                Reason.SUSPENDED,
                " (spec.suspend is true)",
                absent="no sandbox is created while spec.suspend is true",
            )
        elif (action := await budget.enforce(book, spec, backend, datetime.now(UTC))) is not None:
            if action == "Delete":  # the sandbox is killed; only a spec change brings one back
                synced = find(book.status.conditions, ConditionType.SYNCED)
                return await give_up(book, Reason.BUDGET_EXCEEDED, synced.message if synced else "")
        elif budget.idle_hold(book) or task.completed_hold(book):
            pass  # paused for idleness (or done) under this generation: a spec change wakes it
        else:
            task.reopen(book)
            await _run(book, spec, backend, policy, envs, files, changed, retry)
    except BackendError as exc:
        return await _backend_failed(book, exc, retry)
    _first_health(book)
    book.set(ConditionType.SYNCED, "True", Reason.RECONCILED, "")
    await book.commit()
    return book.status


def _first_health(book: StatusBook) -> None:
    """The setup run that made the agents Ready verified them running: that is the first probe's
    verdict, written with Ready. Left empty, the first quiet probe would write ``status.health``:
    one more API write per resource for what the Ready condition already says (issue 19)."""
    agents = find(book.status.conditions, ConditionType.AGENTS_READY)
    if book.status.health is None and agents is not None and agents.status == "True":
        book.status.health = HealthStatus(status="Healthy", last_probe_time=datetime.now(UTC))


#: Failures that killed the sandbox and say "change the spec to try again": a resume (operator
#: restart) or a Secret tick on the same generation must not start another sandbox, or a
#: crash-looping operator would re-create (and re-fail, and re-bill) every resource it failed.
_ENDED = frozenset({Reason.INIT_FAILED, Reason.SANDBOX_EXPIRED, Reason.SANDBOX_QUARANTINED})


async def _stay_ended(book: StatusBook) -> None:
    synced = next((c for c in book.status.conditions if c.type == ConditionType.SYNCED), None)
    if synced is None or synced.status != "False" or synced.reason not in _ENDED:
        return
    if book.ref.generation is None or synced.observed_generation != book.ref.generation:
        return  # the spec changed since: try again
    raise GiveUp(synced.message, reason=synced.reason)


async def _refuse_by_policy(book: StatusBook, refused: Refusal) -> NoReturn:
    """The tenancy policy refuses the resource: terminal until its spec or the operator's settings
    change, and no sandbox. One made before the policy changed is killed with the key this process
    used for it; after a restart (no key remembered, and none is read) nobody renews its lease, so
    it stops within one lease (SWARM_LEASE_SECONDS)."""
    memory = book.runtime.remember(book.ref.uid)
    sandbox = book.status.sandbox
    if sandbox is not None and sandbox.id and memory.api_key is not None:
        try:
            await kill_and_record(
                book,
                book.runtime.backends.for_key(memory.api_key),
                sandbox.id,
                refused.reason,
                f"sandbox {sandbox.id} killed: {refused.message}",
                "no agents: the operator's tenancy policy refuses this resource",
            )
        except SandboxNotFound:
            book.status.sandbox = None
        except BackendError as exc:
            await _backend_failed(book, exc, 0)  # records it, then raises RetryLater or GiveUp
            raise
    memory.api_key = None  # the lease and Secret daemons stop acting for it
    memory.verified = None
    book.set(ConditionType.SANDBOX_CREATED, "False", refused.reason, refused.message)
    await give_up(book, refused.reason, refused.message)


async def _run(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    policy: EgressPolicy,
    envs: Mapping[str, str],
    files: Mapping[str, str],
    changed: list[str],
    retry: int,
) -> None:
    """The resource is not suspended: have its verified sandbox run the spec's agents."""
    sandbox: SandboxInfo = await ensure_sandbox(book, spec, backend, policy)
    try:
        await verify_identity(book, backend, sandbox, retry)
    except BackendError as exc:
        await bounds.charge_failure(book, backend, sandbox.id, exc)
        raise
    wanted = spec.template or book.runtime.settings.default_template
    why = _replacement(book, spec, policy, wanted)
    if why is not None:
        sandbox = await replace(
            book,
            spec,
            backend,
            sandbox,
            wanted,
            policy,
            retry,
            lambda new: initialise(book, spec, backend, new, envs, files),
            reason=why,
        )
        secrets_applied(book, spec, envs, changed, restarted=True)
    else:
        pending = bool(book.status.secrets and book.status.secrets.restart_pending)
        restart = (bool(changed) or pending) and spec.agent.restart_on_secret_change == "Restart"
        if restart:
            await stop_agents(book, backend, sandbox.id)
        await initialise(book, spec, backend, sandbox, envs, files)
        secrets_applied(book, spec, envs, changed, restarted=restart)
    if any(c.type == ConditionType.SUSPENDED for c in book.status.conditions):
        book.set(
            ConditionType.SUSPENDED,
            "False",
            Reason.RESUMED,
            f"sandbox {sandbox.id} resumed and its agents verified",
        )


def _replacement(
    book: StatusBook, spec: SwarmSandboxSpec, policy: EgressPolicy, wanted: str
) -> Reason | None:
    """Why the sandbox must be replaced now, if it must: a template or egress policy only a new
    sandbox can honour (Replaced), or the plan's lifetime cap ahead (LifetimeHandover)."""
    current = book.status.sandbox.template if book.status.sandbox else None
    shown = network.network_status(policy)
    if (current is not None and current != wanted) or (
        book.status.network or NetworkStatus()
    ).model_dump() != shown.model_dump():
        return Reason.REPLACED
    if lifetime_handover_due(book, spec):
        return Reason.LIFETIME_HANDOVER
    return None


async def _backend_failed(book: StatusBook, exc: BackendError, retry: int) -> SwarmSandboxStatus:
    """Record a backend failure and decide how soon (if ever) to try again."""
    settings = book.runtime.settings
    message = exc.message
    if isinstance(exc, AuthenticationFailed):
        # Hammering E2B with a revoked key helps nobody; a Secret change is what fixes it.
        delay = settings.max_retry_delay_seconds
        message = f"{message} (retrying every {delay:.0f}s until the key is fixed)"
    elif isinstance(exc, QuotaExceeded):
        # The quota frees only when another sandbox ends: check back slowly.
        delay = max(settings.quota_retry_seconds, backoff(settings, retry))
    elif isinstance(exc, RateLimited):
        delay = max(exc.retry_after_s or 0.0, backoff(settings, retry))
    elif exc.reason in TERMINAL_REASONS and not exc.transient:
        return await give_up(book, exc.reason, message)
    else:
        delay = max(exc.retry_after_s or 0.0, backoff(settings, retry))
    book.set(ConditionType.SYNCED, "False", exc.reason, message)
    created = next((c for c in book.status.conditions if c.type == ConditionType.SANDBOX_CREATED), None)
    if created is not None and created.status != "True":
        # Not "Creating" any more: waiting on what the error says (quota, rate limit, outage).
        book.set(ConditionType.SANDBOX_CREATED, "False", exc.reason, message)
    await book.commit()
    logger.warning("%s: %s; retrying in %.1fs", exc.reason, message, delay, extra=book.ref.log_extra)
    raise RetryLater(message, delay=delay, reason=exc.reason)
