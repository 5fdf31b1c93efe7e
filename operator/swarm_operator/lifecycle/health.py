"""Health: probe the agents, report, and self-heal.

One call into the sandbox returns its panes (and the coordinator registry and MCP gateway); status
is written only when something a person would care about changed. Dead agents (and a dead MCP
gateway) are restarted in place by re-running the idempotent setup script, within
``healthCheck.maxRestarts`` each.

A circuit breaker keeps one misbehaving sandbox from costing the operator (or its other tenants)
anything: a probe the *sandbox* failed — output past the backend's cap, a hang to the probe
timeout, a report that cannot be read — is a fault. Faults in a row are counted in
``status.health.sandboxFaults`` (so a restarted operator carries on counting), make the resource
Degraded with the fault's reason, and double the wait before the next probe; at
``SWARM_QUARANTINE_AFTER`` the sandbox is killed and the resource Failed with reason
SandboxQuarantined. A failure of E2B itself (unreachable, rate limited) is not the sandbox's doing:
it neither counts nor resets the streak.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from swarm_operator import bootstrap
from swarm_operator.backend import (
    BackendError,
    SandboxBackend,
    SandboxNotFound,
)
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle import budget, progress, results, spend, task
from swarm_operator.lifecycle.agents import agent_files, read_secrets
from swarm_operator.lifecycle.breaker import FAULTS, health_after, probe_failed, quarantine
from swarm_operator.lifecycle.ownership import disown, owned
from swarm_operator.lifecycle.plan import plan
from swarm_operator.lifecycle.report import (
    count_command,
    mcp_down,
    mcp_items,
    record_agents,
    record_tools,
    registry_shortfall,
    report_text,
)
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import record_gone
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import HealthCheckSpec, HealthStatus, Phase, SwarmSandboxSpec, SwarmSandboxStatus

logger = logging.getLogger("swarm_operator.lifecycle")


#: What the longest backed-off wait between two probes may be (or the spec's interval, if longer).
MAX_PROBE_BACKOFF_S = 900.0
#: Phases in which no probe runs.
_NOT_PROBED = frozenset({Phase.FAILED, Phase.INITIALIZING, Phase.CREATING, Phase.SUSPENDED, Phase.SUCCEEDED})


def probe_interval(spec: SwarmSandboxSpec | None, status: SwarmSandboxStatus | None = None) -> float:
    """Seconds until the next probe: the spec's ``healthCheck.intervalSeconds`` (or the model's
    default when there is no usable spec: the reconcile reports why), doubled for every fault in a
    row of the sandbox so a misbehaving one costs less and less until it is quarantined; sooner
    when the running sandbox will reach its budget before then."""
    base = float((spec.health_check if spec is not None else HealthCheckSpec()).interval_seconds)
    faults = status.health.sandbox_faults if status is not None and status.health is not None else 0
    interval = min(base * 2 ** min(faults, 16), max(base, MAX_PROBE_BACKOFF_S))
    return budget.next_look(spec, status, interval) if status is not None else interval


async def check_health(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
) -> None:
    """One health probe: one call into the sandbox returns its panes (and coordinator registry).

    Status is written only when something a person would care about changed (health verdict,
    agent states, restart counts): a quiet tick costs the API server nothing. Dead agents are
    restarted in place when ``healthCheck.restartDeadAgents`` is on, up to ``maxRestarts`` each, by
    re-running the idempotent setup script; past that the resource stays Degraded with the counts.
    Raises :class:`SandboxNotFound` when the sandbox is gone, so the caller can reconcile.
    """
    if budget.lifted(ref, spec, status, runtime, datetime.now(UTC)):
        # A budget pause that ends without a spec change (the namespace's day rolled over):
        # resumed by exactly the reconcile a spec change gets (imported here: it imports us).
        from swarm_operator.lifecycle.reconcile import reconcile

        await reconcile(ref, spec, status, runtime)
        return
    async with runtime.lock(ref.uid):
        book = StatusBook(ref, status, runtime)
        target = await _target(book, spec)
        if target is None:
            return
        backend, sandbox_id = target
        previous = book.status.health or HealthStatus()
        report = await _probe(book, spec, backend, sandbox_id, previous)
        if report is None:
            return
        if await _stopped(book, spec, backend, sandbox_id, report):
            await book.commit()
            return
        verdict = await _judge(book, spec, backend, sandbox_id, report, previous)
        if verdict is None:
            return  # healed: the setup re-run recorded what it found
        await _record(book, spec, report, previous, verdict)
        await results.push_due(book, spec, backend, sandbox_id)  # spec.workspace.push's cadence


async def _target(book: StatusBook, spec: SwarmSandboxSpec) -> tuple[SandboxBackend, str] | None:
    """The backend and sandbox to probe, or None when this tick probes nothing: no sandbox or key
    yet, a phase that is not probed, a budget that paused or killed it, a sandbox counted out."""
    runtime = book.runtime
    sandbox = book.status.sandbox
    api_key = runtime.api_key(book.ref.uid)
    if sandbox is None or sandbox.id is None or api_key is None:
        return None
    if spec.suspend or book.status.phase in _NOT_PROBED:
        return None  # (a probe would resume a paused sandbox: E2B's connect does)
    backend = runtime.backends.for_key(api_key)
    if await budget.enforce(book, spec, backend, datetime.now(UTC)) is not None:
        await book.commit()
        return None
    previous = book.status.health or HealthStatus()
    if previous.sandbox_faults >= runtime.settings.quarantine_after:
        # Counted out already (the kill failed, or the operator restarted before it): no probe.
        await quarantine(book, backend, sandbox.id)
        return None
    return backend, sandbox.id


async def _probe(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, sandbox_id: str, previous: HealthStatus
) -> bootstrap.HealthReport | None:
    """The probe's report, or None when the probe failed (recorded by the circuit breaker).
    A sandbox found gone is recorded and :class:`SandboxNotFound` raised."""
    ref, runtime = book.ref, book.runtime
    probe_plan = plan(ref, spec, {}, runtime.settings)
    try:
        if not await owned(runtime, ref, backend, sandbox_id):
            await disown(book, sandbox_id)  # probed nothing: the reconcile adopts or creates
        result = await backend.run(
            sandbox_id,
            bootstrap.render_probe(probe_plan, base_commit=_pinned(book.status)),
            timeout_s=runtime.settings.probe_timeout_seconds,
        )
        return bootstrap.parse_health(report_text(result.stdout, ref.uid))
    except SandboxNotFound:
        if book.status.sandbox is None:
            raise  # disowned: already recorded
        _count_probes(book, failed=True)
        record_gone(book, sandbox_id)
        book.status.health = health_after(previous, Reason.SANDBOX_NOT_FOUND)
        spend.meter(book, "Stopped")
        await book.commit()
        raise
    except (BackendError, ValueError) as exc:
        _count_probes(book, failed=True)
        await probe_failed(book, backend, sandbox_id, previous, exc)
        return None


async def _judge(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox_id: str,
    report: bootstrap.HealthReport,
    previous: HealthStatus,
) -> HealthStatus | None:
    """The probe's verdict, with AgentsReady set to match; None when something dead was restarted
    instead (``healthCheck.restartDeadAgents``, within ``maxRestarts`` each)."""
    down = mcp_down(spec, report.mcp)
    # A dead gateway is restarted like a dead agent, within the same per-item budget.
    mcp_healable = down and report.mcp is not None and report.mcp.restarts < spec.health_check.max_restarts
    if spec.mcp and report.mcp is not None:
        book.status.mcp = mcp_items(spec, report.mcp, book.ref.uid)
    if spec.health_check.restart_dead_agents and _healable(spec, report, mcp_healable):
        await _heal(book, spec, backend, sandbox_id)  # restarts the agents (or the gateway)
        return None
    record_agents(book, spec, report.panes, report.agents.alive)
    if not report.healthy:
        return _degraded(book, spec, report, previous)
    registered = _registered(spec, report)
    if registered is not None:
        book.set(
            ConditionType.AGENTS_READY,
            "False",
            Reason.AGENTS_NOT_REGISTERED,
            f"{report.agents.alive}/{spec.agents} agents running, {registered}",
        )
        return health_after(previous, Reason.AGENTS_NOT_REGISTERED)
    book.set(
        ConditionType.AGENTS_READY,
        "True",
        Reason.AVAILABLE,
        f"{report.agents.alive}/{spec.agents} agents running",
    )
    await task.deliver(book, spec, backend, sandbox_id)  # spec.task, once per change
    return health_after(previous, Reason.MCP_GATEWAY_UNAVAILABLE if down else None)


def _healable(spec: SwarmSandboxSpec, report: bootstrap.HealthReport, mcp_healable: bool) -> bool:
    """Whether a setup re-run has something to restart: in a healthy swarm only the MCP gateway;
    else a dead agent within its restarts, a missing pane, the tmux server, or the gateway."""
    if report.healthy:
        return mcp_healable
    healable = [p for p in report.panes if not p.alive and p.restarts < spec.health_check.max_restarts]
    return bool(healable or report.missing or not report.server or mcp_healable)


def _degraded(
    book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.HealthReport, previous: HealthStatus
) -> HealthStatus:
    """Agents dead past their restarts (or not restarted): Degraded, saying which and how often."""
    dead = [p for p in report.panes if not p.alive]
    detail = (
        "; ".join(
            f"agent {p.index} dead (restarts {p.restarts}/{spec.health_check.max_restarts})" for p in dead
        )
        or f"{len(report.missing)} agent pane(s) missing"
    )
    message = f"{report.agents.alive}/{spec.agents} agents running: {detail}"
    book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_DEGRADED, message)
    return health_after(previous, Reason.AGENTS_DEGRADED)


async def _record(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    report: bootstrap.HealthReport,
    previous: HealthStatus,
    verdict: HealthStatus,
) -> None:
    """Write the verdict and the figures, only when something a person would care about changed."""
    # Compare without the probe time: a quiet tick must not write.
    verdict = verdict.model_copy(update={"last_probe_time": previous.last_probe_time})
    book.status.health = verdict
    book.runtime.remember(book.ref.uid).quiet_probes += 1
    _figures(book, spec, report)
    if book.changed():
        _count_probes(book, failed=False)
        book.status.health = verdict.model_copy(update={"last_probe_time": datetime.now(UTC)})
        await book.commit()


async def _stopped(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox_id: str,
    report: bootstrap.HealthReport,
) -> bool:
    """Stop the meter if the probe says the swarm is done (spec.task.completion; checked before any
    self-heal could revive agents that exited) or idle (spec.idle); whether it was stopped."""
    done = task.finished(spec, book.status, report, datetime.now(UTC))
    if done is not None:
        await task.complete(book, spec, backend, done)
        return True
    idle = budget.went_idle(spec, report)
    if idle is not None:
        await budget.pause(book, backend, Reason.IDLE, idle)
        book.event("Normal", Reason.IDLE, f"sandbox {sandbox_id} paused: {idle}")
        return True
    return False


async def _heal(book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, sandbox_id: str) -> None:
    """Re-run the setup script: it restarts dead agents in place (within their budget)."""
    ref, runtime = book.ref, book.runtime
    if runtime.remember(ref.uid).verified != sandbox_id:
        return  # secrets go only into a sandbox verified from inside; the next reconcile does that
    _, envs = await read_secrets(ref, spec, runtime)
    files = await agent_files(ref, spec, runtime)
    setup_plan = results.with_start(plan(ref, spec, envs, runtime.settings, files), book)
    try:
        result = await backend.run(
            sandbox_id,
            bootstrap.render_setup(setup_plan),
            stdin=bootstrap.secret_input(envs),
            timeout_s=runtime.settings.ready_timeout_seconds + runtime.settings.command_timeout_seconds,
        )
        report = bootstrap.parse_report(report_text(result.stdout, ref.uid))
    except (BackendError, ValueError) as exc:
        logger.warning("self-heal failed: %s", exc, extra={**ref.log_extra, "sandbox_id": sandbox_id})
        if isinstance(exc, FAULTS):  # the setup run misbehaved just like a probe can
            await probe_failed(book, backend, sandbox_id, book.status.health, exc)
        return
    record_agents(book, spec, report.panes, report.agents.ready, report.restarted)
    record_tools(book, spec, report)
    ready = report.agents.ready
    if report.restarted:
        book.event(
            "Normal",
            Reason.AGENT_RESTARTED,
            f"restarted agent(s) {', '.join(map(str, report.restarted))} in place",
        )
    agent_errors = [e for e in report.errors if e.step != "mcp"]
    if (
        ready >= spec.agents
        and report.agents.ready == report.agents.desired
        and not agent_errors
        and registry_shortfall(spec, report) is None
    ):
        book.set(
            ConditionType.AGENTS_READY, "True", Reason.AVAILABLE, f"{ready}/{spec.agents} agents running"
        )
        # The gateway alone still down: the agents run without their tools.
        book.status.health = health_after(
            book.status.health, Reason.MCP_GATEWAY_UNAVAILABLE if mcp_down(spec, report.mcp) else None
        )
    else:
        book.set(
            ConditionType.AGENTS_READY,
            "False",
            Reason.AGENTS_DEGRADED,
            f"{ready}/{spec.agents} agents running after restarts",
        )
        book.status.health = health_after(book.status.health, Reason.AGENTS_DEGRADED)
    await book.commit()


def _count_probes(book: StatusBook, *, failed: bool) -> None:
    """Probes are commands too (status.metrics.commandsExecuted/Failed). A quiet probe is not
    worth a status write on its own: its count waits in memory and rides along with the next
    write (a restart loses at most the quiet ones since)."""
    memory = book.runtime.remember(book.ref.uid)
    quiet, memory.quiet_probes = memory.quiet_probes, 0
    count_command(book, failed=failed, executed=quiet + (1 if failed else 0))


def _figures(book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.HealthReport) -> None:
    """The coarse figures of a probe that answered, last (they look at what else changed):
    ``status.cost`` and ``status.progress``, each rewritten only once SWARM_COST_REFRESH_MINUTES
    passed (progress also rides along, free, with a write that happens anyway)."""
    spend.meter(book, "Running")
    progress.record(book, spec, report, datetime.now(UTC))


def _pinned(status: SwarmSandboxStatus) -> str | None:
    """The workspace commit the agents started from, which progress is measured against."""
    return status.workspace.commit if status.workspace is not None else None


def _registered(spec: SwarmSandboxSpec, report: bootstrap.HealthReport) -> str | None:
    """With the coordinator on, the registry must hold every agent: how many it holds, when fewer."""
    registry = report.registry
    if not spec.coordinator.enabled or registry is None or registry.agents is None:
        return None
    if registry.agents < spec.agents:
        return f"{registry.agents}/{spec.agents} registered with the coordinator"
    return None
