"""The resource's one sandbox: adopt or create it, its lease and lifetime, pause it, and kill it when
it must go — the rules that keep a resource at exactly one billing sandbox. A hand-over to a new
sandbox is :mod:`.handover`; the check of who a sandbox is, :mod:`.identity`.

* **Never two sandboxes for one resource.** Every sandbox carries tags (uid, namespace, name,
  operator id). Before creating, the operator lists sandboxes by the uid tag and adopts what it
  finds; extras are killed. A create whose outcome is unknown (timeout, dropped connection) is never
  repeated blindly: the next attempt lists first and adopts what that create made.
* **Never an untracked sandbox.** The sandbox id is written to status right after create, before
  initialising, so even a crash mid-initialisation leaves the id on record.
* **Never a secret to a stranger.** Before its first secret, a sandbox must identify from inside as
  the one the control plane returned, for this resource (:mod:`.identity`).
* **Never a leak on failure.** Every failure that ends a sandbox goes through
  :func:`kill_and_record`: killed first, then recorded, so a crash in between leaves nothing billing.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from swarm_operator import network
from swarm_operator.backend import EgressPolicy, SandboxBackend, SandboxInfo, SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle import results, spend
from swarm_operator.lifecycle.runtime import ResourceRef, RetryLater
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SandboxStatus, SwarmSandboxSpec
from swarm_operator.names import TAG_NAME, TAG_NAMESPACE, TAG_OPERATOR, TAG_UID, UID_ENV

logger = logging.getLogger("swarm_operator.lifecycle")


def tags(ref: ResourceRef, settings: Settings) -> dict[str, str]:
    keys = (TAG_UID, TAG_NAMESPACE, TAG_NAME, TAG_OPERATOR)
    return dict(zip(keys, (ref.uid, ref.namespace, ref.name, settings.operator_id), strict=True))


def ttl_seconds(spec: SwarmSandboxSpec, settings: Settings) -> int:
    """The lifetime a sandbox gets: ``spec.ttlSeconds``, else the operator's default, never over
    the operator's maximum. Every sandbox has one, so none bills unbounded."""
    wanted = spec.ttl_seconds if spec.ttl_seconds is not None else settings.default_ttl_seconds
    return min(wanted, settings.max_ttl_seconds)


def lease_seconds(
    spec: SwarmSandboxSpec,
    settings: Settings,
    started_at: datetime,
    now: datetime,
    lifetime_start: datetime | None = None,
) -> int:
    """The E2B timeout to ask for now: one lease, never past the sandbox's lifetime (the spec's
    ttlSeconds, else the operator's default, never over its maximum), and never past the plan's
    lifetime cap counted from ``lifetime_start`` (unset: from now, a create).

    A cap end already past while the sandbox still runs means the sandbox was resumed after its
    start and this process did not see it (a resume restarts the count): the cap is then unknown,
    the plain lease is asked (E2B clamps it), and :func:`handover_due` says hand over now.
    """
    # e2b-dev/infra packages/api/internal/handlers/timeout_helper.go: a create asking more than the
    # team's max instance length is a 400; packages/api/internal/orchestrator/keep_alive.go:
    # set_timeout past it is silently clamped, then answered 400 "Max instance length exceeded".
    left = (started_at + timedelta(seconds=ttl_seconds(spec, settings)) - now).total_seconds()
    lease = min(settings.lease_seconds, max(int(left), 1))
    cap_left = (cap_end(settings, lifetime_start or now) - now).total_seconds()
    if cap_left >= 1:
        lease = min(lease, int(cap_left))
    return lease


def cap_end(settings: Settings, lifetime_start: datetime) -> datetime:
    """When E2B ends a sandbox whose lifetime counts from ``lifetime_start``, whatever its lease."""
    return lifetime_start + timedelta(seconds=settings.sandbox_max_lifetime_seconds)


def lifetime_start(book: StatusBook) -> datetime | None:
    """Where the tracked sandbox's lifetime cap counts from: what this process learnt (create,
    adopt, resume), else the status' start (earlier or equal, so the cap is never overestimated)."""
    sandbox = book.status.sandbox
    if sandbox is None or sandbox.id is None:
        return None
    known = book.runtime.remember(book.ref.uid).lifetime
    if known is not None and known[0] == sandbox.id:
        return known[1]
    return sandbox.started_at


def handover_due(
    spec: SwarmSandboxSpec, settings: Settings, started_at: datetime, lifetime_start: datetime, now: datetime
) -> bool:
    """Whether the sandbox must be handed over now: its lifetime cap is within the lead time, and
    ttlSeconds (counted from ``started_at``, across hand-overs) does not end the swarm first."""
    end = cap_end(settings, lifetime_start)
    if started_at + timedelta(seconds=ttl_seconds(spec, settings)) <= end:
        return False  # the swarm ends by its lifetime at or before the cap: nothing to hand over to
    return now >= end - timedelta(seconds=settings.handover_lead_seconds)


def lifetime_handover_due(book: StatusBook, spec: SwarmSandboxSpec, now: datetime | None = None) -> bool:
    """:func:`handover_due` for the tracked sandbox, unless its hand-over already failed for good
    (then it runs to its cap and the resource is recreated: see
    :func:`~swarm_operator.lifecycle.handover.replace`)."""
    sandbox = book.status.sandbox
    start = lifetime_start(book)
    if sandbox is None or start is None:
        return False
    if book.runtime.remember(book.ref.uid).handover_failed == sandbox.id:
        return False
    return handover_due(
        spec, book.runtime.settings, sandbox.started_at or start, start, now or datetime.now(UTC)
    )


async def kill_and_record(
    book: StatusBook,
    backend: SandboxBackend,
    sandbox_id: str,
    reason: Reason,
    message: str,
    agents_message: str | None = None,
) -> None:
    """The one way a tracked sandbox ends on failure: kill it, free its creation slot, and record
    ``SandboxCreated=False`` (and ``AgentsReady=False`` when ``agents_message`` is given) with
    ``reason``. Nothing is committed here: the caller adds its own Synced verdict and commits, so a
    crash between the kill and the write leaves no billing sandbox, only a stale id the next
    reconcile finds gone. A verified sandbox's workspace is pushed first (lifecycle.results)."""
    await results.push_then_kill(book, backend, sandbox_id, reason)
    book.runtime.limiter.release(book.ref.uid)
    book.status.sandbox = None
    spend.meter(book, "Stopped")
    book.set(ConditionType.SANDBOX_CREATED, "False", reason, message)
    if agents_message is not None:
        book.set(ConditionType.AGENTS_READY, "False", reason, agents_message)


def record_gone(book: StatusBook, sandbox_id: str) -> None:
    """The sandbox was found gone (E2B ended it, or someone killed it): SandboxCreated and
    AgentsReady False with SandboxNotFound; the caller commits, and a reconcile creates a new one."""
    book.set(
        ConditionType.SANDBOX_CREATED,
        "False",
        Reason.SANDBOX_NOT_FOUND,
        f"sandbox {sandbox_id} is gone; a new one will be created",
    )
    book.set(
        ConditionType.AGENTS_READY,
        "False",
        Reason.SANDBOX_NOT_FOUND,
        "the sandbox running the agents is gone",
    )


async def ensure_sandbox(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, policy: EgressPolicy
) -> SandboxInfo:
    """Adopt the resource's sandbox or create one; its id is in status when this returns."""
    known_id = book.status.sandbox.id if book.status.sandbox else None
    started = time.monotonic()
    keep = await _adoptable(book, backend, known_id)
    if keep is not None:
        sandbox = await _adopt(book, spec, backend, keep, known_id)
        how = Reason.CREATED if keep.id == known_id else Reason.ADOPTED
    else:
        sandbox = await _create(book, spec, backend, policy, started)
        how = Reason.CREATED
    book.step("create", time.monotonic() - started)
    _record(book, spec, sandbox, how, policy)
    await book.commit()  # the id is on record before any initialisation happens
    return sandbox


async def _adopt(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, keep: SandboxInfo, known_id: str | None
) -> SandboxInfo:
    """Keep the tagged sandbox found (resumed if paused) and learn where its lifetime cap counts from."""
    ref, settings = book.ref, book.runtime.settings
    memory = book.runtime.remember(ref.uid)
    if keep.state == "paused":
        now = datetime.now(UTC)
        await backend.resume(keep.id, lease_seconds(spec, settings, keep.started_at, now))
        memory.lifetime = (keep.id, now)  # a resumed sandbox is a new instance: its cap restarts
    elif memory.lifetime is None or memory.lifetime[0] != keep.id:
        memory.lifetime = (keep.id, keep.started_at)
    book.runtime.limiter.track(ref.uid, ref.namespace)
    if keep.id != known_id:
        book.runtime.metrics.adopted()
        logger.info("adopted sandbox %s", keep.id, extra={**ref.log_extra, "sandbox_id": keep.id})
    return keep


def _record(
    book: StatusBook, spec: SwarmSandboxSpec, sandbox: SandboxInfo, how: Reason, policy: EgressPolicy
) -> None:
    """Status names ``sandbox`` (created, adopted or resumed), which bills from now on."""
    settings = book.runtime.settings
    previous = book.status.sandbox
    same = previous is not None and previous.id == sandbox.id
    kept = previous if same else None  # this same sandbox's record, if any
    book.status.sandbox = SandboxStatus(
        id=sandbox.id,
        # The template as the spec named it when the sandbox was made (E2B reports ids, not the
        # alias a user wrote): what a later spec change is compared against.
        template=(
            kept.template
            if kept and kept.template
            else spec.template or settings.default_template
            if how == Reason.CREATED
            else sandbox.template
        ),
        started_at=kept.started_at if kept and kept.started_at else sandbox.started_at,
        expires_at=sandbox.end_at,
        ttl_seconds=ttl_seconds(spec, settings),
        # The init budget is the sandbox's: kept while it is the same one (lifecycle.budget).
        init_attempts=previous.init_attempts if same and previous is not None else None,
    )
    spend.meter(book, "Running", spend.size_of(sandbox))  # created, adopted or resumed: billing
    if not same or book.status.network is None:
        # What this sandbox was created with: the policy of this spec (an adopted one was created
        # by this operator from the same resource, before a crash).
        book.status.network = network.network_status(policy)
    book.set(
        ConditionType.SANDBOX_CREATED,
        "True",
        how,
        f"sandbox {sandbox.id} ({'adopted' if how == Reason.ADOPTED else 'running'})",
    )
    if (
        ConditionType.AGENTS_READY not in {c.type for c in book.status.conditions}
        or book.status.agents is None
        or book.status.agents.desired != spec.agents
    ):
        book.set(ConditionType.AGENTS_READY, "False", Reason.INITIALIZING, f"starting {spec.agents} agents")


async def _adoptable(book: StatusBook, backend: SandboxBackend, known_id: str | None) -> SandboxInfo | None:
    """The tagged sandbox to keep (the one in status, else the oldest); every other one is killed."""
    ref = book.ref
    tagged = await backend.list({TAG_UID: ref.uid})
    keep: SandboxInfo | None = None
    if tagged:
        keep = next((s for s in tagged if s.id == known_id), None)
        keep = keep or min(tagged, key=lambda s: (s.started_at, s.id))
        for extra in tagged:
            if extra.id != keep.id:
                # Two tagged sandboxes means a create raced a crash: keep one, bill for one.
                logger.warning(
                    "killing duplicate sandbox %s", extra.id, extra={**ref.log_extra, "sandbox_id": extra.id}
                )
                await backend.kill(extra.id)
                book.runtime.metrics.duplicate_killed()
    if known_id and (keep is None or keep.id != known_id):
        book.event(
            "Warning",
            Reason.SANDBOX_NOT_FOUND,
            f"sandbox {known_id} is gone; {'adopting ' + keep.id if keep else 'creating a new one'}",
        )
    return keep


async def _create(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, policy: EgressPolicy, started: float
) -> SandboxInfo:
    """A new sandbox, within the creation limits (throttled: :class:`RetryLater`)."""
    ref, settings = book.ref, book.runtime.settings
    admission = book.runtime.limiter.try_acquire(ref.uid, ref.namespace)
    if not admission:
        # Throttled: the limiter keeps this resource's place in line for when capacity returns.
        book.runtime.metrics.throttled(admission.scope or "operator")
        book.set(ConditionType.SANDBOX_CREATED, "False", Reason.RATE_LIMITED, admission.message)
        book.set(ConditionType.SYNCED, "False", Reason.RATE_LIMITED, admission.message)
        await book.commit()
        raise RetryLater(
            admission.message, delay=max(admission.retry_after_s, 0.1), reason=Reason.RATE_LIMITED
        )
    template = spec.template or settings.default_template
    book.set(
        ConditionType.SANDBOX_CREATED,
        "False",
        Reason.CREATING,
        f"creating a sandbox from template {template}",
    )
    now = datetime.now(UTC)
    # The uid goes in as the sandbox's own environment too (not secret): read back from inside
    # before any secret is sent, it proves envd is the sandbox this create made.
    sandbox = await backend.create(
        template,
        tags(ref, settings),
        {UID_ENV: ref.uid},
        timeout_s=lease_seconds(spec, settings, now, now),
        network=policy,
    )
    # The cap counts from E2B's start, which is after ``now``: counted from ``now``, never overrun.
    book.runtime.remember(ref.uid).lifetime = (sandbox.id, now)
    book.runtime.metrics.sandbox_created(time.monotonic() - started)
    logger.info(
        "created sandbox %s",
        sandbox.id,
        extra={
            **ref.log_extra,
            "sandbox_id": sandbox.id,
            "step": "create",
            "duration": round(time.monotonic() - started, 3),
        },
    )
    return sandbox


async def pause(book: StatusBook, backend: SandboxBackend, reason: Reason, why: str, *, absent: str) -> None:
    """The one way a sandbox is paused (spec.suspend, a budget, idleness): E2B keeps memory and files,
    compute billing and the meter stop; ``Suspended=True``. A sandbox found gone is forgotten."""
    sandbox = book.status.sandbox
    message = absent
    if sandbox is not None and sandbox.id:
        started = time.monotonic()
        await results.push(book, backend, sandbox.id, why="before the sandbox is paused")
        try:
            await backend.pause(sandbox.id)
            spend.meter(book, "Paused")
        except SandboxNotFound:
            book.status.sandbox = None
            book.set(
                ConditionType.SANDBOX_CREATED,
                "False",
                Reason.SANDBOX_NOT_FOUND,
                f"sandbox {sandbox.id} is gone; a new one is created on resume",
            )
            spend.meter(book, "Stopped")
        book.step("pause", time.monotonic() - started)
        message = f"sandbox {sandbox.id} is paused{why}"
    book.set(ConditionType.SUSPENDED, "True", reason, message)
