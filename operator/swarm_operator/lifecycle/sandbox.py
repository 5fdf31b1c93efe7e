"""The resource's one sandbox: adopt or create it, replace it, suspend it, verify who it is, and
kill it when it must go — the rules that keep a resource at exactly one billing sandbox.

* **Never two sandboxes for one resource.** Every sandbox carries tags (uid, namespace, name,
  operator id). Before creating, the operator lists sandboxes by the uid tag and adopts what it
  finds; extras are killed. A create whose outcome is unknown (timeout, dropped connection) is never
  repeated blindly: the next attempt lists first and adopts what that create made.
* **Never an untracked sandbox.** The sandbox id is written to status right after create, before
  initialising, so even a crash mid-initialisation leaves the id on record.
* **Never a secret to a stranger.** Before its first secret, a sandbox must identify from inside as
  the one the control plane returned, for this resource (:func:`verify_identity`).
* **Never a leak on failure.** Every failure that ends a sandbox goes through
  :func:`kill_and_record`: killed first, then recorded, so a crash in between leaves nothing billing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from swarm_operator import network
from swarm_operator.backend import EgressPolicy, SandboxBackend, SandboxInfo, SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle import results, spend
from swarm_operator.lifecycle.runtime import GiveUp, ResourceRef, RetryLater, backoff
from swarm_operator.lifecycle.status import StatusBook, give_up
from swarm_operator.model import SandboxStatus, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import TAG_NAME, TAG_NAMESPACE, TAG_OPERATOR, TAG_UID, UID_ENV

logger = logging.getLogger("swarm_operator.lifecycle")

_IDENTITY_MARK = "swarm-identity"
#: The identity check asks up to this many times (0.25 s, then doubling between looks), within
#: IDENTITY_WAIT_S in all, before it calls a sandbox an impostor.
IDENTITY_ATTEMPTS = 5
IDENTITY_FIRST_DELAY_S = 0.25
IDENTITY_WAIT_S = 5.0
#: One envd call: the sandbox's id as E2B set it inside, and the uid the operator gave it at create.
IDENTITY_SCRIPT = f'printf \'{_IDENTITY_MARK} %s %s\\n\' "${{E2B_SANDBOX_ID-}}" "${{{UID_ENV}-}}"'


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
    (then it runs to its cap and the resource is recreated: see :func:`replace`)."""
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


async def ensure_sandbox(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, policy: EgressPolicy
) -> SandboxInfo:
    """Adopt the resource's sandbox or create one; its id is in status when this returns."""
    ref, settings = book.ref, book.runtime.settings
    known_id = book.status.sandbox.id if book.status.sandbox else None
    started = time.monotonic()
    keep = await _adoptable(book, backend, known_id)
    if keep is not None:
        memory = book.runtime.remember(ref.uid)
        if keep.state == "paused":
            now = datetime.now(UTC)
            await backend.resume(keep.id, lease_seconds(spec, settings, keep.started_at, now))
            memory.lifetime = (keep.id, now)  # a resumed sandbox is a new instance: its cap restarts
        elif memory.lifetime is None or memory.lifetime[0] != keep.id:
            memory.lifetime = (keep.id, keep.started_at)
        how = Reason.CREATED if keep.id == known_id else Reason.ADOPTED
        sandbox = keep
        book.runtime.limiter.track(ref.uid, ref.namespace)
        if how == Reason.ADOPTED:
            book.runtime.metrics.adopted()
            logger.info("adopted sandbox %s", sandbox.id, extra={**ref.log_extra, "sandbox_id": sandbox.id})
    else:
        sandbox = await _create(book, spec, backend, policy, started)
        how = Reason.CREATED
    book.step("create", time.monotonic() - started)
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
    await book.commit()  # the id is on record before any initialisation happens
    return sandbox


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
    ref, settings = book.ref, book.runtime.settings
    handover = reason == Reason.LIFETIME_HANDOVER
    old_status = book.status.sandbox
    await _admit_replacement(book, template)
    before = book.status.model_copy(deep=True)
    memory = book.runtime.remember(ref.uid)
    old_lifetime = memory.lifetime
    started = time.monotonic()
    now = datetime.now(UTC)
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
    if not await identity_ok(book, backend, new):
        # The old sandbox keeps running the agents; the impostor got nothing and is gone.
        book.status.sandbox = old_status
        await identity_failed(book, new, retry, keep_created=True)
    if handover:
        # The old sandbox still runs every agent: the resource stays Ready while the new one starts.
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
    await book.commit()
    try:
        if handover:
            # The old sandbox runs every agent meanwhile: the new one's setup attempts (and, if it
            # fails, its kill) are not the resource's state, so none of it is written or announced.
            with book.unannounced():
                await start_agents(new)
        else:
            await start_agents(new)
    except GiveUp as exc:
        # start_agents killed the new sandbox; the old one still runs the agents.
        if handover:
            await _handover_failed(
                book, before, old.id, old_lifetime, str(exc).split("; the sandbox was killed")[0]
            )
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
    memory.lifetime = (new.id, now)  # counted from before the create: the cap is never overrun
    memory.handover_failed = None
    book.status.sandbox = SandboxStatus(
        id=new.id,
        template=template,
        started_at=(
            old_status.started_at if handover and old_status and old_status.started_at else new.started_at
        ),
        expires_at=new.end_at,
        ttl_seconds=ttl_seconds(spec, settings),
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
    await book.commit()  # the new id is on record before the old sandbox dies
    await backend.kill(old.id)
    if handover:
        book.event(
            "Warning",
            Reason.LIFETIME_HANDOVER,
            f"sandbox {old.id} neared the E2B plan's lifetime cap "
            f"({settings.sandbox_max_lifetime_seconds}s): the agents now run in sandbox "
            f"{new.id}, started afresh (files in {old.id} are gone, but for a workspace.push)",
        )
    else:
        book.event(
            "Normal",
            Reason.REPLACED,
            f"sandbox {old.id} replaced by {new.id} (template {template}, egress policy)",
        )
    return new


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


async def identity_ok(book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo) -> bool:
    """One envd call, with no secret in it: the sandbox's own E2B_SANDBOX_ID and the uid given to it
    at create, as seen from inside, must be the id the control plane returned and this resource's
    uid. Anything else (a misrouted envd, a sandbox of another resource, a stale token) gets no
    secret. Verified sandboxes are remembered, so later reconciles skip the call."""
    ref = book.ref
    memory = book.runtime.remember(ref.uid)
    if memory.verified == sandbox.id:
        return True
    started = time.monotonic()
    seen: list[str] | None = None
    # envd fills E2B_SANDBOX_ID from MMDS asynchronously after start (e2b-dev/infra
    # packages/envd/internal/host/mmds.go), so a look right after create may see nothing, or a
    # template's stale value: ask again a few times, within IDENTITY_WAIT_S, before calling it a
    # mismatch. A sandbox that never answers rightly still gets no secret.
    for attempt in range(IDENTITY_ATTEMPTS):
        if attempt:
            await asyncio.sleep(
                min(
                    IDENTITY_FIRST_DELAY_S * 2 ** (attempt - 1),
                    max(0.0, started + IDENTITY_WAIT_S - time.monotonic()),
                )
            )
        result = await backend.run(sandbox.id, IDENTITY_SCRIPT, timeout_s=30)
        seen = next(
            (
                line.split(" ")[1:]
                for line in reversed(result.stdout.splitlines())
                if line.startswith(_IDENTITY_MARK + " ")
            ),
            None,
        )
        if seen == [sandbox.id, ref.uid]:
            # Prometheus only: status keeps the steps a person reads (create, init).
            book.runtime.metrics.step("identity", time.monotonic() - started)
            memory.verified = sandbox.id
            return True
        if time.monotonic() - started >= IDENTITY_WAIT_S:
            break
    book.runtime.metrics.step("identity", time.monotonic() - started)
    logger.warning(
        "sandbox %s failed the identity check (inside it answers as %s)",
        sandbox.id,
        "a different sandbox" if seen else "nothing parsable",
        extra={**ref.log_extra, "sandbox_id": sandbox.id, "step": "identity"},
    )
    return False


async def verify_identity(
    book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo, retry: int
) -> None:
    if not await identity_ok(book, backend, sandbox):
        await identity_failed(book, sandbox, retry)


async def identity_failed(
    book: StatusBook, sandbox: SandboxInfo, retry: int, *, keep_created: bool = False
) -> None:
    """Never Ready, never a secret: kill the sandbox (it bills; it is not trusted), say so, and try
    a new one later with growing backoff (a control plane that keeps answering wrongly is not
    hammered). ``keep_created``: the sandbox was a replacement; the tracked one keeps running."""
    ref, runtime = book.ref, book.runtime
    memory = runtime.remember(ref.uid)
    assert memory.api_key is not None  # set by the reconcile before any sandbox call
    backend = runtime.backends.for_key(memory.api_key)
    message = (
        f"sandbox {sandbox.id} was killed before any secret was sent: from inside it does not "
        f"identify as {sandbox.id} of this resource; a new one is tried"
    )
    if keep_created:
        await backend.kill(sandbox.id)
    else:
        await kill_and_record(
            book, backend, sandbox.id, Reason.IDENTITY_MISMATCH, message, "no agents: " + message
        )
        book.status.network = None
    memory.verified = None
    book.set(ConditionType.SYNCED, "False", Reason.IDENTITY_MISMATCH, message)
    await book.commit()
    book.event("Warning", Reason.IDENTITY_MISMATCH, message)
    delay = backoff(runtime.settings, retry + 2)
    raise RetryLater(message, delay=delay, reason=Reason.IDENTITY_MISMATCH)
