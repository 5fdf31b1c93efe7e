"""``spec.task``: a prompt typed into the agents once the swarm is Ready, and when it counts as done.

* **Delivery, exactly once per change.** The health probe that finds every agent running (Ready)
  asks :func:`pending` whether this sandbox still lacks the current task; only then is one more
  call made: the rendered task script, with the prompts on its stdin, types each pane's prompt into
  it (tmux buffer, bracketed paste, Enter). Twice guarded: ``status.task`` records the hash and
  sandbox delivered to (no call at all once recorded), and the script keeps a mark per pane in the
  sandbox, written the moment it typed, so an operator that crashes between the typing and the
  status write types nothing twice when it asks again. A changed prompt has a new hash: its panes
  are typed into once more. A new sandbox (hand-over, template change) has no marks: it gets the
  task again. A failed delivery is ``TaskDelivered=False`` (TaskDeliveryFailed, and an Event once)
  and retried by every health probe while Ready (one call per ``healthCheck.intervalSeconds``);
  it never touches Ready, and it ends when the delivery succeeds, the task or the sandbox changes,
  or the swarm stops.
* **Completion.** With ``spec.task.completion``, the same probe's report (no extra call) tells
  whether every agent exited or has printed nothing for ``idleSeconds`` since the delivery; then
  ``Completed=True`` (phase Succeeded) and the sandbox is paused (the one pause path, as
  spec.suspend) or killed. That happens within one health interval of the agents going quiet. It
  holds through reconciles of the same generation (an operator restart does not resume it); it
  ends when the spec changes (the swarm runs again: resumed, or recreated, and the task counted
  afresh) or the resource is deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from swarm_operator import bootstrap
from swarm_operator.backend import BackendError, SandboxBackend
from swarm_operator.conditions import ConditionType, Reason, find
from swarm_operator.lifecycle.plan import plan
from swarm_operator.lifecycle.report import count_command, report_text
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.sandbox import pause as pause_sandbox
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SwarmSandboxSpec, SwarmSandboxStatus, TaskStatus, prompt_digest

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["complete", "completed_hold", "deliver", "finished", "pending", "reopen"]


def pending(spec: SwarmSandboxSpec, status: SwarmSandboxStatus, sandbox_id: str) -> dict[int, str] | None:
    """The prompts (by pane index) that sandbox ``sandbox_id`` still has to be given, or None when
    it holds the current task already (or there is none). Pure: decided from the spec and status."""
    if spec.task is None:
        return None
    prompts = spec.task.prompts(spec.agents)
    held = status.task
    if not prompts or (
        held is not None and held.hash == spec.task.digest(spec.agents) and held.sandbox_id == sandbox_id
    ):
        return None
    return prompts


async def deliver(book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, sandbox_id: str) -> None:
    """Type the task into the panes that lack it, in one call; record the outcome (not committed:
    the caller does). Only call it with every agent running."""
    prompts = pending(spec, book.status, sandbox_id)
    if prompts is None:
        return
    ref, runtime = book.ref, book.runtime
    marks = {i: prompt_digest(p) for i, p in prompts.items()}
    try:
        result = await backend.run(
            sandbox_id,
            bootstrap.render_task(plan(ref, spec, {}, runtime.settings), marks),
            stdin=bootstrap.task_input(prompts),
            timeout_s=runtime.settings.command_timeout_seconds,
        )
        report = bootstrap.parse_task(report_text(result.stdout, ref.uid))
    except (BackendError, ValueError) as exc:
        count_command(book, failed=True)
        _failed(book, str(exc))
        return
    count_command(book, failed=False)
    failed = [p for p in report.panes if p.state == "failed"]
    if failed or {p.index for p in report.panes} != set(prompts):
        _failed(book, "; ".join(p.message or f"agent {p.index} failed" for p in failed) or "short report")
        return
    _record(book, spec, sandbox_id, sorted(p.index for p in report.panes if p.state == "delivered"))


def _record(book: StatusBook, spec: SwarmSandboxSpec, sandbox_id: str, typed: list[int]) -> None:
    assert spec.task is not None
    digest = spec.task.digest(spec.agents)
    before = book.status.task or TaskStatus()
    generation = before.generation + (1 if before.hash != digest else 0)
    book.status.task = TaskStatus(
        generation=generation,
        hash=digest,
        sandbox_id=sandbox_id,
        delivered_at=datetime.now(UTC),
        agents=sorted(spec.task.prompts(spec.agents)),
    )
    where = f"agent(s) {', '.join(map(str, typed))}" if typed else "no agent (every pane had it already)"
    message = f"task {generation} typed into {where} of sandbox {sandbox_id}"
    book.set(ConditionType.TASK_DELIVERED, "True", Reason.TASK_DELIVERED, message)
    book.event("Normal", Reason.TASK_DELIVERED, message)


def _failed(book: StatusBook, why: str) -> None:
    """A delivery that did not reach every pane: said once (condition, Event), retried next probe."""
    message = f"the task could not be typed into the agents ({why[:600]}); retried every health probe"
    before = find(book.status.conditions, ConditionType.TASK_DELIVERED)
    book.status.task = (book.status.task or TaskStatus()).model_copy(update={"message": message[:1024]})
    book.set(ConditionType.TASK_DELIVERED, "False", Reason.TASK_DELIVERY_FAILED, message)
    if before is None or before.reason != Reason.TASK_DELIVERY_FAILED:
        book.event("Warning", Reason.TASK_DELIVERY_FAILED, message)
        logger.warning("%s: %s", Reason.TASK_DELIVERY_FAILED, message, extra=book.ref.log_extra)


def finished(
    spec: SwarmSandboxSpec, status: SwarmSandboxStatus, report: bootstrap.HealthReport, now: datetime
) -> str | None:
    """Why the task counts as done now (a message), or None. Pure: from the spec, status and the
    health probe's report. Done means the current task was delivered to this sandbox, and since
    then every agent exited, or every agent has printed nothing for ``completion.idleSeconds``."""
    task = spec.task
    held, sandbox = status.task, status.sandbox
    if task is None or task.completion is None or held is None or held.delivered_at is None:
        return None
    if sandbox is None or held.sandbox_id != sandbox.id or held.hash != task.digest(spec.agents):
        return None
    panes = [p for p in report.panes if p.index < spec.agents]
    if panes and not report.missing and all(p.dead for p in panes):
        return f"every agent has exited since task {held.generation} was delivered"
    wait = task.completion.idle_seconds
    quiet = report.idle_seconds()
    if quiet is None or quiet < wait or (now - held.delivered_at).total_seconds() < wait:
        return None
    return (
        f"every agent has been idle for {quiet}s since task {held.generation} was delivered "
        f"(spec.task.completion.idleSeconds: {wait})"
    )


async def complete(book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, why: str) -> None:
    """The task is done: pause (Suspend) or kill (Delete) the sandbox and set ``Completed=True``
    (phase Succeeded). Not committed: the caller does. Killed first, recorded after, as any kill."""
    assert spec.task is not None and spec.task.completion is not None
    sandbox = book.status.sandbox
    if spec.task.completion.action == "Delete" and sandbox is not None and sandbox.id:
        await kill_and_record(
            book,
            backend,
            sandbox.id,
            Reason.TASK_COMPLETED,
            f"sandbox {sandbox.id} killed: the task is done",
            "no agents: the task is done",
        )
        book.status.network = None
        done = f"{why}; the sandbox was killed"
    else:
        await pause_sandbox(book, backend, Reason.TASK_COMPLETED, f": {why}", absent=why)
        done = f"{why}; the sandbox is paused"
    message = f"{done}. Change the spec to run the swarm again."
    book.set(ConditionType.COMPLETED, "True", Reason.TASK_COMPLETED, message)
    book.event("Normal", Reason.TASK_COMPLETED, message)


def completed_hold(book: StatusBook) -> bool:
    """Whether the swarm stays stopped as done: it completed under this very generation. A later
    generation (a spec change) runs it again."""
    completed = find(book.status.conditions, ConditionType.COMPLETED)
    return (
        completed is not None
        and completed.status == "True"
        and completed.observed_generation == book.ref.generation
    )


def reopen(book: StatusBook) -> None:
    """A spec change after completion: the swarm runs again (the reconcile resumes or recreates
    its sandbox), so it is no longer Completed; completion counts afresh from now (or from the
    changed task's delivery)."""
    completed = find(book.status.conditions, ConditionType.COMPLETED)
    if completed is None or completed.status != "True":
        return
    book.set(ConditionType.COMPLETED, "False", Reason.RESUMED, "the spec changed: the swarm runs again")
    if book.status.task is not None:  # idleness counts from now, not from before the pause
        book.status.task = book.status.task.model_copy(update={"delivered_at": datetime.now(UTC)})
