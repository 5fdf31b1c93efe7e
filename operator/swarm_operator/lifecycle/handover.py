"""A sandbox's hand-over to a new one: for a change only a new sandbox can honour (template, egress
policy), and before the E2B plan's lifetime cap ends the old one. The new sandbox is made Ready
first, then the old one is killed, so at most one extra sandbox bills, and only during the switch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn

from swarm_operator import network
from swarm_operator.backend import EgressPolicy, SandboxBackend, SandboxInfo
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle import results, spend
from swarm_operator.lifecycle.identity import identity_failed, identity_ok
from swarm_operator.lifecycle.runtime import GiveUp, RetryLater
from swarm_operator.lifecycle.sandbox import cap_end, lease_seconds, tags, ttl_seconds
from swarm_operator.lifecycle.status import StatusBook, give_up
from swarm_operator.model import SandboxStatus, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import UID_ENV

logger = logging.getLogger("swarm_operator.lifecycle")


async def replace(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    old: SandboxInfo,
    template: str,
    policy: EgressPolicy,
    retry: int,
    start_agents: Callable[[SandboxInfo], Awaitable[None]],
    *,
    reason: Reason = Reason.REPLACED,
) -> SandboxInfo:
    """Move the agents to a new sandbox: make the new one Ready (``start_agents``), then kill the
    old, so at most one extra sandbox bills, and only during the switch.

    ``reason`` says why: :attr:`Reason.REPLACED`, a change only a new sandbox can honour (template,
    egress policy); :attr:`Reason.LIFETIME_HANDOVER`, the old sandbox nears the plan's lifetime cap
    (the swarm keeps its ``startedAt``, so ttlSeconds counts across hand-overs).

    Status keeps naming the old sandbox until the new one is Ready. A crash meanwhile leaves the new
    one tagged but untracked: the next pass kills it as a duplicate and starts the switch again.
    If the new sandbox cannot be initialised it is killed and the old one keeps running: for a
    template change the resource is Failed (InitFailed) until the spec changes; for a hand-over the
    swarm stays as it was (Synced=False, HandoverFailed) until E2B ends the old sandbox at its cap,
    when the resource is recreated from scratch (SandboxNotFound).
    """
    handover = reason == Reason.LIFETIME_HANDOVER
    old_status = book.status.sandbox
    await _admit_replacement(book, template)
    before = book.status.model_copy(deep=True)
    memory = book.runtime.remember(book.ref.uid)
    old_lifetime = memory.lifetime
    now = datetime.now(UTC)
    new = await _create_replacement(book, spec, backend, old, template, policy, reason, now)
    if not await identity_ok(book, backend, new):
        # The old sandbox keeps running the agents; the impostor got nothing and is gone.
        book.status.sandbox = old_status
        await identity_failed(book, new, retry, keep_created=True)
    _announce_start(book, old, new, template, handover)
    await book.commit()
    try:
        await _start(book, new, start_agents, handover)
    except GiveUp as exc:
        # start_agents killed the new sandbox; the old one still runs the agents.
        if handover:
            await _handover_failed(
                book, before, old.id, old_lifetime, str(exc).split("; the sandbox was killed")[0]
            )
        await _replacement_failed(book, old_status, old, template, exc)
    memory.lifetime = (new.id, now)  # counted from before the create: the cap is never overrun
    memory.handover_failed = None
    _record_new(book, spec, old, new, template, policy, old_status, handover)
    await book.commit()  # the new id is on record before the old sandbox dies
    await backend.kill(old.id)
    _announce_done(book, old, new, template, handover)
    return new


async def _create_replacement(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    old: SandboxInfo,
    template: str,
    policy: EgressPolicy,
    reason: Reason,
    now: datetime,
) -> SandboxInfo:
    """The new sandbox, tagged as the resource's (a crash leaves it to the next pass's duplicate
    kill), its lease counted from ``now``, before E2B's start."""
    ref, settings = book.ref, book.runtime.settings
    started = time.monotonic()
    new = await backend.create(
        template,
        tags(ref, settings),
        {UID_ENV: ref.uid},
        timeout_s=lease_seconds(spec, settings, now, now),
        network=policy,
    )
    book.runtime.metrics.sandbox_created(time.monotonic() - started)
    logger.info(
        "replacing sandbox %s with %s (template %s, %s)",
        old.id,
        new.id,
        template,
        reason,
        extra={**ref.log_extra, "sandbox_id": new.id, "step": "replace"},
    )
    return new


def _announce_start(
    book: StatusBook, old: SandboxInfo, new: SandboxInfo, template: str, handover: bool
) -> None:
    """What status says while the new sandbox starts: a hand-over keeps the resource Ready (the old
    sandbox still runs every agent); a template change says the agents start anew."""
    if handover:
        book.set(
            ConditionType.SANDBOX_CREATED,
            "True",
            Reason.CREATED,
            f"sandbox {old.id} nears the plan's lifetime cap: handing over to sandbox {new.id}",
        )
    else:
        book.set(
            ConditionType.AGENTS_READY,
            "False",
            Reason.INITIALIZING,
            f"moving to template {template}: starting the agents in sandbox {new.id}",
        )


async def _start(
    book: StatusBook,
    new: SandboxInfo,
    start_agents: Callable[[SandboxInfo], Awaitable[None]],
    handover: bool,
) -> None:
    if handover:
        # The old sandbox runs every agent meanwhile: the new one's setup attempts (and, if it
        # fails, its kill) are not the resource's state, so none of it is written or announced.
        with book.unannounced():
            await start_agents(new)
    else:
        await start_agents(new)


async def _replacement_failed(
    book: StatusBook, old_status: SandboxStatus | None, old: SandboxInfo, template: str, exc: GiveUp
) -> NoReturn:
    """The new sandbox could not be made Ready (and was killed): the old one keeps the agents and
    the resource is Failed (InitFailed) until the spec changes."""
    book.status.sandbox = old_status
    book.set(
        ConditionType.SANDBOX_CREATED,
        "True",
        Reason.CREATED,
        f"sandbox {old.id} kept: the replacement failed",
    )
    await give_up(
        book,
        Reason.INIT_FAILED,
        f"could not move to template {template} ({exc}); sandbox {old.id} keeps running",
    )


def _record_new(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    old: SandboxInfo,
    new: SandboxInfo,
    template: str,
    policy: EgressPolicy,
    old_status: SandboxStatus | None,
    handover: bool,
) -> None:
    """Status names the new sandbox; a hand-over keeps the old record's ``startedAt`` (ttlSeconds
    counts across hand-overs)."""
    book.status.sandbox = SandboxStatus(
        id=new.id,
        template=template,
        started_at=(
            old_status.started_at if handover and old_status and old_status.started_at else new.started_at
        ),
        expires_at=new.end_at,
        ttl_seconds=ttl_seconds(spec, book.runtime.settings),
    )
    # The hand-over: the sums carry on at the new sandbox's size (the switch's overlap, when both
    # bill, is not counted twice: a slight under-estimate of seconds, never of the rate).
    spend.meter(book, "Running", spend.size_of(new))
    book.status.network = network.network_status(policy)
    book.set(
        ConditionType.SANDBOX_CREATED,
        "True",
        Reason.CREATED,
        f"sandbox {new.id} (template {template}) {'took over from' if handover else 'replaced'} {old.id}",
    )


def _announce_done(
    book: StatusBook, old: SandboxInfo, new: SandboxInfo, template: str, handover: bool
) -> None:
    if handover:
        book.event(
            "Warning",
            Reason.LIFETIME_HANDOVER,
            f"sandbox {old.id} neared the E2B plan's lifetime cap "
            f"({book.runtime.settings.sandbox_max_lifetime_seconds}s): the agents now run in sandbox "
            f"{new.id}, started afresh (files in {old.id} are gone, but for a workspace.push)",
        )
    else:
        book.event(
            "Normal",
            Reason.REPLACED,
            f"sandbox {old.id} replaced by {new.id} (template {template}, egress policy)",
        )


async def _admit_replacement(book: StatusBook, template: str) -> None:
    """A replacement is a create like any other: debounced (the current sandbox must be at least
    ``SWARM_REPLACE_DEBOUNCE_SECONDS`` old, read from status so a restart keeps it) and within the
    creation limiter's rate. Refused: ``Synced=False`` RateLimited and :class:`RetryLater`; the
    current sandbox keeps running the agents meanwhile. The namespace cap does not apply: the
    resource already holds its slot, and the hand-over frees it again (admitted: results pushed)."""
    ref, runtime = book.ref, book.runtime
    settings = runtime.settings
    current = book.status.sandbox
    message, delay = "", 0.0
    if current is not None and current.started_at is not None:
        age = (datetime.now(UTC) - current.started_at).total_seconds()
        if age < settings.replace_debounce_seconds:
            delay = settings.replace_debounce_seconds - age
            message = (
                f"moving to template {template} in {delay:.0f}s: a sandbox is replaced at most "
                f"once every {settings.replace_debounce_seconds:g}s"
            )
    if not message:
        admission = runtime.limiter.try_acquire(ref.uid, ref.namespace)
        if admission:
            return await results.before_replace(book)
        runtime.metrics.throttled(admission.scope or "operator")
        message = f"moving to template {template} waits for a creation slot: {admission.message}"
        delay = admission.retry_after_s
    book.set(ConditionType.SYNCED, "False", Reason.RATE_LIMITED, message)
    await book.commit()
    raise RetryLater(message, delay=max(delay, 0.1), reason=Reason.RATE_LIMITED)


async def _handover_failed(
    book: StatusBook,
    before: SwarmSandboxStatus,
    old_id: str,
    old_lifetime: tuple[str, datetime] | None,
    cause: str,
) -> NoReturn:
    """The hand-over's new sandbox could not be made Ready (and was killed): put the status back as
    it was (the old sandbox still runs every agent), say when the old one ends and what follows,
    and do not try again for it. Ends at the cap: E2B ends the old sandbox, the lease daemon finds
    it gone (SandboxNotFound) and the reconcile creates a new one from scratch."""
    ref, runtime = book.ref, book.runtime
    memory = runtime.remember(ref.uid)
    memory.lifetime = old_lifetime
    memory.handover_failed = old_id
    runtime.limiter.track(ref.uid, ref.namespace)  # the failed init released the resource's slot
    metrics = book.status.metrics
    book.status = before.model_copy(update={"metrics": metrics})
    now = datetime.now(UTC)
    if old_lifetime is not None and old_lifetime[0] == old_id:
        end = cap_end(runtime.settings, old_lifetime[1])
    else:  # not learnt by this process (cannot happen after an adopt): the last lease's end
        end = before.sandbox.expires_at if before.sandbox and before.sandbox.expires_at else now
    message = (
        f"the hand-over before the plan's lifetime cap failed ({cause}); sandbox {old_id} "
        f"keeps the agents until E2B ends it at {end.isoformat(timespec='seconds')}, then a "
        f"new sandbox is created from scratch"
    )
    book.set(ConditionType.SYNCED, "False", Reason.HANDOVER_FAILED, message)
    agents = next((c for c in book.status.conditions if c.type == ConditionType.AGENTS_READY), None)
    if agents is not None and agents.status == "True":
        # What `kubectl get` and status.message show: the swarm runs, and until when.
        book.set(
            ConditionType.AGENTS_READY,
            "True",
            agents.reason,
            f"{agents.message}; hand-over failed: sandbox {old_id} ends at "
            f"{end.isoformat(timespec='seconds')} (lifetime cap), then a new one is created",
        )
    await book.commit()
    book.event("Warning", Reason.HANDOVER_FAILED, message)
    logger.warning("%s", message, extra={**ref.log_extra, "sandbox_id": old_id, "step": "replace"})
    raise RetryLater(
        message, delay=max((end - now).total_seconds(), 0.0) + 1.0, reason=Reason.HANDOVER_FAILED
    )
