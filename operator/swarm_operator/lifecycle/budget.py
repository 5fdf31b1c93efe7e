"""What stops the meter: ``spec.budget`` and ``spec.idle``.

* **Budget.** Checked by every reconcile (before a sandbox is created or resumed) and every health
  probe, against the spend estimated *now* (:func:`cost.check_budget`), and the health daemon
  looks again as soon as the limit will be reached (:func:`next_look`), so a running sandbox goes
  over by at most a few seconds. Reaching it sets ``BudgetExceeded=True`` and posts an Event once;
  ``Suspend`` pauses the sandbox (the meter stops, work is kept: phase Suspended) and ``Delete``
  kills it (the resource stays, Failed with reason BudgetExceeded, to say why). Raising or clearing
  the limit is a spec change: the reconcile finds the budget no longer exceeded and resumes (or
  creates) the sandbox.
* **Idle.** The health probe reports how long every agent has been quiet (no pane output, no
  coordinator registry change, on the sandbox's own clock; no extra call). Past
  ``spec.idle.idleAfterSeconds`` the sandbox is paused (``Suspended`` reason Idle). It stays paused
  through reconciles of the same generation (an operator restart does not wake it); a spec change,
  or :func:`resume_idle` (``swarm-operator resume``), resumes it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from swarm_operator.backend import SandboxBackend
from swarm_operator.bootstrap import HealthReport
from swarm_operator.conditions import ConditionType, Reason, find
from swarm_operator.cost import BudgetVerdict, check_budget, seconds_until_exceeded, spent_today
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.sandbox import pause as pause_sandbox
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import CostStatus, SwarmSandboxSpec, SwarmSandboxStatus

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["enforce", "idle_hold", "lifted", "next_look", "pause", "verdict", "went_idle"]

#: The soonest the health daemon looks again for a budget about to be reached: a floor, so a
#: resource whose probe is skipped (initialising) cannot spin.
MIN_LOOK_SECONDS = 2.0


def verdict(
    ref: ResourceRef, spec: SwarmSandboxSpec, cost: CostStatus | None, runtime: Runtime, now: datetime
) -> tuple[BudgetVerdict, str]:
    """The resource's budget verdict at ``now`` and the action it calls for: its own
    ``spec.budget`` first, then the operator's per-namespace daily cap, which applies to resources
    on the operator's default key and always suspends (the namespace's work is kept; the next UTC
    day, or a raised cap, resumes it)."""
    own = check_budget(spec.budget, cost, now)
    if own.exceeded:
        assert spec.budget is not None  # a verdict of "exceeded" needs a budget
        return own, spec.budget.action
    memory = runtime.remember(ref.uid)
    memory.namespace = ref.namespace
    memory.default_key = spec.e2b is None or spec.e2b.api_key_secret_ref is None
    if cost is not None:
        memory.cost = cost
    cap = runtime.settings.max_usd_per_namespace_per_day
    if cap is None or not memory.default_key:
        return own, "Suspend"
    today = sum(
        spent_today(m.cost, now)
        for m in runtime.memory.values()
        if m.namespace == ref.namespace and m.default_key and m.cost is not None
    )
    if today < cap:
        return own, "Suspend"
    return BudgetVerdict(
        True,
        (
            f"budget exceeded: namespace {ref.namespace} spent an estimated ${today:.4f} today (UTC) on "
            f"the operator's default E2B key, of its daily cap ${cap:g} (SWARM_MAX_USD_PER_NAMESPACE_PER_DAY); "
            f"the sandbox is paused until the next UTC day or a raised cap"
        ),
    ), "Suspend"


def lifted(
    ref: ResourceRef, spec: SwarmSandboxSpec, status: SwarmSandboxStatus, runtime: Runtime, now: datetime
) -> bool:
    """Whether a budget pause no longer holds without a spec change (the namespace's day rolled
    over, or its cap was raised): the health daemon then has the resource reconciled, resuming it."""
    suspended = find(status.conditions, ConditionType.SUSPENDED)
    if (
        spec.suspend
        or suspended is None
        or suspended.status != "True"
        or suspended.reason != Reason.BUDGET_EXCEEDED
    ):
        return False
    return not verdict(ref, spec, status.cost, runtime, now)[0].exceeded


async def enforce(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, now: datetime
) -> str | None:
    """Whether the budget holds the sandbox stopped: if it is reached, act on it (pause or kill)
    and return the action taken (``Suspend``/``Delete``); if not, clear ``BudgetExceeded`` (a
    raised or cleared limit) and return None. Nothing is committed: the caller does."""
    found, action = verdict(book.ref, spec, book.status.cost, book.runtime, now)
    held = find(book.status.conditions, ConditionType.BUDGET_EXCEEDED)
    if not found.exceeded:
        if held is not None and held.status == "True":
            book.set(ConditionType.BUDGET_EXCEEDED, "False", Reason.WITHIN_BUDGET, found.message)
            book.event("Normal", Reason.WITHIN_BUDGET, f"{found.message}; the sandbox is resumed")
        return None
    book.set(ConditionType.BUDGET_EXCEEDED, "True", Reason.BUDGET_EXCEEDED, found.message)
    if held is None or held.status != "True":
        book.event("Warning", Reason.BUDGET_EXCEEDED, found.message)
        logger.warning("%s", found.message, extra=book.ref.log_extra)
    if action == "Suspend":
        await pause(book, backend, Reason.BUDGET_EXCEEDED, found.message)
    else:
        sandbox = book.status.sandbox
        if sandbox is not None and sandbox.id:
            await kill_and_record(
                book,
                backend,
                sandbox.id,
                Reason.BUDGET_EXCEEDED,
                found.message,
                "no agents: " + found.message,
            )
            book.status.network = None
        book.set(
            ConditionType.SYNCED,
            "False",
            Reason.BUDGET_EXCEEDED,
            f"{found.message}; raise or clear spec.budget to start a new sandbox",
        )
    return action


async def pause(book: StatusBook, backend: SandboxBackend, reason: Reason, message: str) -> None:
    """Pause the sandbox for ``reason`` (budget, idleness): :func:`~swarm_operator.lifecycle.sandbox.pause`, the same path
    spec.suspend takes."""
    await pause_sandbox(book, backend, reason, f": {message}", absent=message)


def went_idle(spec: SwarmSandboxSpec, report: HealthReport) -> str | None:
    """Why the swarm counts as idle now (a message), or None: spec.idle is set and every agent has
    been quiet at least ``idleAfterSeconds`` by the probe's report."""
    if spec.idle is None:
        return None
    quiet = report.idle_seconds()
    if quiet is None or quiet < spec.idle.idle_after_seconds:
        return None
    return (
        f"every agent has been idle for {quiet}s (spec.idle.idleAfterSeconds: "
        f"{spec.idle.idle_after_seconds}); change the spec or run `swarm-operator resume` to resume"
    )


def idle_hold(book: StatusBook) -> bool:
    """Whether the sandbox stays paused for idleness: it was paused as Idle under this very
    generation. A later generation (a spec change) resumes it."""
    suspended = find(book.status.conditions, ConditionType.SUSPENDED)
    return (
        suspended is not None
        and suspended.status == "True"
        and suspended.reason == Reason.IDLE
        and suspended.observed_generation == book.ref.generation
    )


def next_look(spec: SwarmSandboxSpec | None, status: SwarmSandboxStatus, interval: float) -> float:
    """Seconds until the health daemon should look again: its interval, or sooner when a running
    sandbox will reach its budget before then (acting "within one health interval" at worst)."""
    if spec is None or spec.budget is None or status.cost is None or status.cost.state != "Running":
        return interval

    wait = seconds_until_exceeded(spec.budget, status.cost, datetime.now(UTC))
    if wait is None:
        return interval
    return max(min(interval, wait + 1.0), MIN_LOOK_SECONDS)
