"""The lease: the dead-man's switch that bounds what a sandbox costs when the operator is gone, and
the clock of the plan's lifetime cap.

Sandboxes are created with a short E2B timeout and renewed by one lease at a time, never past
``ttlSeconds`` nor past the E2B plan's lifetime cap (SWARM_SANDBOX_MAX_LIFETIME_SECONDS, counted
from the sandbox's start); a sandbox that lived its ttl is killed and the resource Failed
(SandboxExpired). A sandbox nearing its cap (within SWARM_SANDBOX_HANDOVER_LEAD_SECONDS) is handed
over to a new one by the reconcile (``replace`` with reason LifetimeHandover), unless its ttl ends
the swarm first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from swarm_operator.backend import SandboxBackend, SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle import bounds, results, spend
from swarm_operator.lifecycle.ownership import disown, owned
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import (
    cap_end,
    kill_and_record,
    lease_seconds,
    lifetime_handover_due,
    lifetime_start,
    record_gone,
    ttl_seconds,
)
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import Phase, SwarmSandboxSpec, SwarmSandboxStatus


async def renew_lease(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
) -> None:
    """Extend the sandbox's E2B timeout by one lease, never past ``ttlSeconds`` nor the plan's
    lifetime cap; start the hand-over when the cap is near.

    Sandboxes are created with a short timeout, so if the operator is gone for good each one costs
    at most one lease. When the ttl is reached the sandbox is killed and the resource is Failed
    with reason SandboxExpired. A sandbox found gone is recorded (SandboxNotFound) and the resource
    reconciled again, which creates a replacement.

    The hand-over is the reconcile a spec change gets (run here, after the lock is released: the
    reconcile takes it): it makes the new sandbox Ready, then kills the old. It is bounded by the
    old sandbox's cap: if it has not succeeded by then, E2B ends the old sandbox and the next
    renewal finds it gone, which recreates the resource from scratch.
    """
    async with runtime.lock(ref.uid):
        handover = await _renew(ref, spec, status, runtime)
    if handover is not None:
        # Imported here, not above: the reconcile uses this module's neighbours, and the hand-over
        # is exactly the replacement a template change gets.
        from swarm_operator.lifecycle.reconcile import reconcile

        await reconcile(ref, spec, handover, runtime)


async def _renew(
    ref: ResourceRef, spec: SwarmSandboxSpec, status: SwarmSandboxStatus, runtime: Runtime
) -> SwarmSandboxStatus | None:
    """One renewal; returns the status to hand over with when the hand-over is due."""
    book = StatusBook(ref, status, runtime)
    sandbox = book.status.sandbox
    api_key = runtime.api_key(ref.uid)
    if sandbox is None or sandbox.id is None or api_key is None:
        return None  # nothing running yet, or not reconciled by this process yet
    if spec.suspend or book.status.phase in (Phase.SUSPENDED, Phase.SUCCEEDED):
        return None  # paused (spec.suspend, budget, idle, task done): E2B keeps it without a lease
    backend = runtime.backends.for_key(api_key)
    settings = runtime.settings
    try:
        if not await owned(runtime, ref, backend, sandbox.id):
            await disown(book, sandbox.id)  # nothing extended, nothing killed
    except SandboxNotFound:
        if book.status.sandbox is not None:  # gone (a disowned one is recorded already)
            await _gone(book, sandbox.id)
        raise
    now = datetime.now(UTC)
    started_at = sandbox.started_at or now
    ttl = ttl_seconds(spec, settings)
    if now >= started_at + timedelta(seconds=ttl - results.ttl_margin(spec, settings)):
        await _expire(book, backend, sandbox.id, spec, ttl)
        return None
    if bounds.spent(book, sandbox.id):
        # Its initialisation budget is spent and the kill has not gone through yet: no new
        # lease, so E2B ends it within the current one whatever the kill call meets.
        return None
    start = lifetime_start(book) or started_at
    lease = lease_seconds(spec, settings, started_at, now, start)
    due = lifetime_handover_due(book, spec, now)
    cap_left = (cap_end(settings, start) - now).total_seconds()
    if due and cap_left >= 1:
        # The hand-over runs in this daemon, which renews nothing meanwhile: the old sandbox gets
        # the rest of its lifetime (at most the lead time plus one renewal interval), so it cannot
        # die of its lease before the new one is Ready. Still never past the cap (nor the ttl:
        # a hand-over is due only when the ttl ends after the cap).
        lease = max(lease, int(cap_left))
    try:
        await backend.set_timeout(sandbox.id, lease)
    except SandboxNotFound:
        await _gone(book, sandbox.id)
        raise
    # The real end: the lease's, which never reaches past the cap or the ttl.
    await _record_end(book, now, now + timedelta(seconds=lease))
    return book.status if due else None


async def _expire(
    book: StatusBook, backend: SandboxBackend, sandbox_id: str, spec: SwarmSandboxSpec, ttl: int
) -> None:
    """The sandbox reached its lifetime (``ttlSeconds``, else the operator's default or maximum):
    pushed and killed through the one kill path, and Synced=False until the spec changes."""
    where = (
        "ttlSeconds"
        if spec.ttl_seconds is not None and ttl == spec.ttl_seconds
        else "the operator's default lifetime"
        if spec.ttl_seconds is None
        else "the operator's maximum lifetime"
    )
    await kill_and_record(
        book,
        backend,
        sandbox_id,
        Reason.SANDBOX_EXPIRED,
        f"sandbox {sandbox_id} reached {where} ({ttl}s) and was killed",
    )
    book.set(
        ConditionType.SYNCED,
        "False",
        Reason.SANDBOX_EXPIRED,
        f"the sandbox lived {where} ({ttl}s); change the spec to start a new one",
    )
    await book.commit()


async def _record_end(book: StatusBook, now: datetime, expires: datetime) -> None:
    """Write ``expiresAt`` when :func:`expiry_due`; the spend figures' coarse refresh rides in the
    same write (restarting their cadence), so a quiet resource costs one status write per lease
    horizon rather than one per renewal plus one per spend refresh."""
    sandbox = book.status.sandbox
    assert sandbox is not None
    if expiry_due(sandbox.expires_at, expires, now, book.runtime.settings.lease_renew_seconds):
        book.status.sandbox = sandbox.model_copy(update={"expires_at": expires})
        ledger = book.status.cost
        spend.meter(book, ledger.state if ledger is not None else "Running", now=now, refresh=True)
        await book.commit()


def expiry_due(written: datetime | None, expires: datetime, now: datetime, renew_s: float) -> bool:
    """Whether a renewal must rewrite ``status.sandbox.expiresAt``.

    A renewal alone moves the lease's end but writes nothing: ``expiresAt`` is the end as last
    written, a lower bound of the real one (E2B keeps the sandbox at least until then). It is
    rewritten only when the next renewal (due within ``renew_s`` + 10 % jitter) might come after
    it, so it never shows a passed end while the operator renews; or when the real end moved
    *earlier* than written (the ttl or the plan's cap shortened the lease), so it never promises
    more than E2B will give. With the defaults (600 s lease, 120 s renewals) that is one write per
    ~530 s instead of one per renewal.
    """
    if written is None or expires < written:
        return True
    return (written - now).total_seconds() <= renew_s * 1.1 + 1


async def _gone(book: StatusBook, sandbox_id: str) -> None:
    record_gone(book, sandbox_id)
    book.status.agents = None
    await book.commit()
