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
import time
from datetime import datetime, timezone

from swarm_operator.backend import SandboxBackend, SandboxNotFound
from swarm_operator.bootstrap import HealthReport
from swarm_operator.conditions import ConditionType, Reason, find
from swarm_operator.cost import check_budget, seconds_until_exceeded
from swarm_operator.lifecycle import spend
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SwarmSandboxSpec, SwarmSandboxStatus

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["enforce", "idle_hold", "next_look", "pause", "went_idle"]

#: The soonest the health daemon looks again for a budget about to be reached: a floor, so a
#: resource whose probe is skipped (initialising) cannot spin.
MIN_LOOK_SECONDS = 2.0


async def enforce(book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, now: datetime) -> bool:
    """Whether the budget holds the sandbox stopped: if it is reached, act on it (pause or kill)
    and return True; if not, clear ``BudgetExceeded`` (a raised or cleared limit) and return False.
    Nothing is committed: the caller does."""
    verdict = check_budget(spec.budget, book.status.cost, now)
    held = find(book.status.conditions, ConditionType.BUDGET_EXCEEDED)
    if not verdict.exceeded:
        if held is not None and held.status == "True":
            book.set(ConditionType.BUDGET_EXCEEDED, "False", Reason.WITHIN_BUDGET, verdict.message)
            book.event("Normal", Reason.WITHIN_BUDGET, f"{verdict.message}; the sandbox is resumed")
        return False
    assert spec.budget is not None  # a verdict of "exceeded" needs a budget
    book.set(ConditionType.BUDGET_EXCEEDED, "True", Reason.BUDGET_EXCEEDED, verdict.message)
    if held is None or held.status != "True":
        book.event("Warning", Reason.BUDGET_EXCEEDED, verdict.message)
        logger.warning("%s", verdict.message, extra=book.ref.log_extra)
    if spec.budget.action == "Suspend":
        await pause(book, backend, Reason.BUDGET_EXCEEDED, verdict.message)
    else:
        sandbox = book.status.sandbox
        if sandbox is not None and sandbox.id:
            await kill_and_record(book, backend, sandbox.id, Reason.BUDGET_EXCEEDED, verdict.message,
                                  "no agents: " + verdict.message)
            book.status.network = None
        book.set(ConditionType.SYNCED, "False", Reason.BUDGET_EXCEEDED,
                 f"{verdict.message}; raise or clear spec.budget to start a new sandbox")
    return True


async def pause(book: StatusBook, backend: SandboxBackend, reason: Reason, message: str) -> None:
    """Pause the sandbox for ``reason`` (E2B keeps memory and files; compute billing stops) and
    record ``Suspended=True``: phase Suspended, Ready=False. Already paused is fine; a sandbox found
    gone is forgotten (the resume creates one)."""
    sandbox = book.status.sandbox
    if sandbox is not None and sandbox.id:
        started = time.monotonic()
        try:
            await backend.pause(sandbox.id)
            spend.meter(book, "Paused")
        except SandboxNotFound:
            book.status.sandbox = None
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
                     f"sandbox {sandbox.id} is gone; a new one is created on resume")
            spend.meter(book, "Stopped")
        book.step("pause", time.monotonic() - started)
        message = f"sandbox {sandbox.id} is paused: {message}"
    book.set(ConditionType.SUSPENDED, "True", reason, message)


def went_idle(spec: SwarmSandboxSpec, report: HealthReport) -> str | None:
    """Why the swarm counts as idle now (a message), or None: spec.idle is set and every agent has
    been quiet at least ``idleAfterSeconds`` by the probe's report."""
    if spec.idle is None:
        return None
    quiet = report.idle_seconds()
    if quiet is None or quiet < spec.idle.idle_after_seconds:
        return None
    return (f"every agent has been idle for {quiet}s (spec.idle.idleAfterSeconds: "
            f"{spec.idle.idle_after_seconds}); change the spec or run `swarm-operator resume` to resume")


def idle_hold(book: StatusBook) -> bool:
    """Whether the sandbox stays paused for idleness: it was paused as Idle under this very
    generation. A later generation (a spec change) resumes it."""
    suspended = find(book.status.conditions, ConditionType.SUSPENDED)
    return (suspended is not None and suspended.status == "True" and suspended.reason == Reason.IDLE
            and suspended.observed_generation == book.ref.generation)


def next_look(spec: SwarmSandboxSpec | None, status: SwarmSandboxStatus, interval: float) -> float:
    """Seconds until the health daemon should look again: its interval, or sooner when a running
    sandbox will reach its budget before then (acting "within one health interval" at worst)."""
    if spec is None or spec.budget is None or status.cost is None or status.cost.state != "Running":
        return interval

    wait = seconds_until_exceeded(spec.budget, status.cost, datetime.now(timezone.utc))
    if wait is None:
        return interval
    return max(min(interval, wait + 1.0), MIN_LOOK_SECONDS)
