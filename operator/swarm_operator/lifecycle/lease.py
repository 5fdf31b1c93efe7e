"""The lease: the dead-man's switch that bounds what a sandbox costs when the operator is gone.

Sandboxes are created with a short E2B timeout and renewed by one lease at a time, never past
``ttlSeconds``; a sandbox that lived its ttl is killed and the resource Failed (SandboxExpired).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from swarm_operator.backend import SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle import budget
from swarm_operator.lifecycle.ownership import disown, owned
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import kill_and_record, lease_seconds, ttl_seconds
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SwarmSandboxSpec, SwarmSandboxStatus


async def renew_lease(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
) -> None:
    """Extend the sandbox's E2B timeout by one lease, never past ``ttlSeconds``.

    Sandboxes are created with a short timeout, so if the operator is gone for good each one costs
    at most one lease. When the ttl is reached the sandbox is killed and the resource is Failed
    with reason SandboxExpired. A sandbox found gone is recorded (SandboxNotFound) and the resource
    reconciled again, which creates a replacement.
    """
    async with runtime.lock(ref.uid):
        book = StatusBook(ref, status, runtime)
        sandbox = book.status.sandbox
        api_key = runtime.api_key(ref.uid)
        if sandbox is None or sandbox.id is None or api_key is None:
            return  # nothing running yet, or not reconciled by this process yet
        if spec.suspend:
            return
        backend = runtime.backends.for_key(api_key)
        try:
            if not await owned(runtime, ref, backend, sandbox.id):
                await disown(book, sandbox.id)  # nothing extended, nothing killed
        except SandboxNotFound:
            if book.status.sandbox is not None:  # gone (a disowned one is recorded already)
                await _gone(book, sandbox.id)
            raise
        now = datetime.now(timezone.utc)
        started_at = sandbox.started_at or now
        ttl = ttl_seconds(spec, runtime.settings)
        if now >= started_at + timedelta(seconds=ttl):
            where = "ttlSeconds" if spec.ttl_seconds is not None and ttl == spec.ttl_seconds else \
                "the operator's default lifetime" if spec.ttl_seconds is None else \
                "the operator's maximum lifetime"
            await kill_and_record(book, backend, sandbox.id, Reason.SANDBOX_EXPIRED,
                                  f"sandbox {sandbox.id} reached {where} ({ttl}s) and was killed")
            book.set(ConditionType.SYNCED, "False", Reason.SANDBOX_EXPIRED,
                     f"the sandbox lived {where} ({ttl}s); change the spec to start a new one")
            await book.commit()
            return
        if budget.spent(book, sandbox.id):
            # Its initialisation budget is spent and the kill has not gone through yet: no new
            # lease, so E2B ends it within the current one whatever the kill call meets.
            return
        lease = lease_seconds(spec, runtime.settings, started_at, now)
        try:
            await backend.set_timeout(sandbox.id, lease)
        except SandboxNotFound:
            await _gone(book, sandbox.id)
            raise
        expires = now + timedelta(seconds=lease)
        # Written only when it moved noticeably: a renewal is not worth an API write every time.
        if sandbox.expires_at is None or abs((sandbox.expires_at - expires).total_seconds()) > 60:
            book.status.sandbox = sandbox.model_copy(update={"expires_at": expires})
            await book.commit()


async def _gone(book: StatusBook, sandbox_id: str) -> None:
    book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
             f"sandbox {sandbox_id} is gone; a new one will be created")
    book.set(ConditionType.AGENTS_READY, "False", Reason.SANDBOX_NOT_FOUND,
             "the sandbox running the agents is gone")
    book.status.agents = None
    await book.commit()
