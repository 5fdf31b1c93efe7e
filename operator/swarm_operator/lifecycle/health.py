"""Health: probe the agents, report, and self-heal.

One call into the sandbox returns its panes (and the coordinator registry and MCP gateway); status
is written only when something a person would care about changed. Dead agents (and a dead MCP
gateway) are restarted in place by re-running the idempotent setup script, within
``healthCheck.maxRestarts`` each.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from swarm_operator import bootstrap
from swarm_operator.backend import BackendError, SandboxBackend, SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle.agents import (
    agent_files,
    mcp_down,
    mcp_items,
    plan,
    read_secrets,
    count_command,
    record_agents,
    record_tools,
    registry_shortfall,
)
from swarm_operator.lifecycle.ownership import disown, owned
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import HealthCheckSpec, HealthStatus, Phase, SwarmSandboxSpec, SwarmSandboxStatus

logger = logging.getLogger("swarm_operator.lifecycle")


def probe_interval(spec: SwarmSandboxSpec | None) -> float:
    """Seconds between two probes: the spec's ``healthCheck.intervalSeconds``, or the model's
    default when there is no usable spec (the reconcile reports why)."""
    return float((spec.health_check if spec is not None else HealthCheckSpec()).interval_seconds)


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
    async with runtime.lock(ref.uid):
        book = StatusBook(ref, status, runtime)
        sandbox = book.status.sandbox
        api_key = runtime.api_key(ref.uid)
        if sandbox is None or sandbox.id is None or api_key is None:
            return
        if spec.suspend or book.status.phase in (Phase.FAILED, Phase.INITIALIZING, Phase.CREATING):
            return
        backend = runtime.backends.for_key(api_key)
        probe_plan = plan(ref, spec, {}, runtime.settings)
        previous = book.status.health or HealthStatus()
        try:
            if not await owned(runtime, ref, backend, sandbox.id):
                await disown(book, sandbox.id)  # probed nothing: the reconcile adopts or creates
            result = await backend.run(sandbox.id, bootstrap.render_probe(probe_plan), timeout_s=60)
            report = bootstrap.parse_health(result.stdout)
        except SandboxNotFound:
            if book.status.sandbox is None:
                raise  # disowned: already recorded
            _count_probes(book, failed=True)
            book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND,
                     f"sandbox {sandbox.id} is gone; a new one will be created")
            book.set(ConditionType.AGENTS_READY, "False", Reason.SANDBOX_NOT_FOUND,
                     "the sandbox running the agents is gone")
            book.status.health = _verdict(previous, Reason.SANDBOX_NOT_FOUND)
            await book.commit()
            raise
        except (BackendError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, BackendError) else Reason.PROBE_FAILED
            _count_probes(book, failed=True)
            book.status.health = _verdict(previous, f"{reason}: {exc}"[:1024])
            await book.commit()
            return
        down = mcp_down(spec, report.mcp)
        # A dead gateway is restarted like a dead agent, within the same per-item budget.
        mcp_healable = down and report.mcp is not None \
            and report.mcp.restarts < spec.health_check.max_restarts
        if spec.mcp and report.mcp is not None:
            book.status.mcp = mcp_items(spec, report.mcp)
        if report.healthy:
            if mcp_healable and spec.health_check.restart_dead_agents:
                await _heal(book, spec, backend, sandbox.id)  # restarts the gateway
                return
            verdict = _verdict(previous, Reason.MCP_GATEWAY_UNAVAILABLE if down else None)
            record_agents(book, spec, report.panes, report.agents.alive)
            registered = _registered(spec, report)
            if registered is not None:
                verdict = _verdict(previous, Reason.AGENTS_NOT_REGISTERED)
                book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_NOT_REGISTERED,
                         f"{report.agents.alive}/{spec.agents} agents running, {registered}")
            else:
                book.set(ConditionType.AGENTS_READY, "True", Reason.AVAILABLE,
                         f"{report.agents.alive}/{spec.agents} agents running")
        else:
            dead = [p for p in report.panes if not p.alive]
            healable = [p for p in dead if p.restarts < spec.health_check.max_restarts]
            if spec.health_check.restart_dead_agents and (healable or report.missing or not report.server
                                                          or mcp_healable):
                await _heal(book, spec, backend, sandbox.id)
                return
            record_agents(book, spec, report.panes, report.agents.alive)
            detail = "; ".join(
                f"agent {p.index} dead (restarts {p.restarts}/{spec.health_check.max_restarts})"
                for p in dead) or f"{len(report.missing)} agent pane(s) missing"
            message = f"{report.agents.alive}/{spec.agents} agents running: {detail}"
            verdict = _verdict(previous, Reason.AGENTS_DEGRADED)
            book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_DEGRADED, message)
        # Compare without the probe time: a quiet tick must not write.
        verdict = verdict.model_copy(update={"last_probe_time": previous.last_probe_time})
        book.status.health = verdict
        runtime.remember(ref.uid).quiet_probes += 1
        if book.changed():
            _count_probes(book, failed=False)
            book.status.health = verdict.model_copy(
                update={"last_probe_time": datetime.now(timezone.utc)})
            await book.commit()


async def _heal(book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, sandbox_id: str) -> None:
    """Re-run the setup script: it restarts dead agents in place (within their budget)."""
    ref, runtime = book.ref, book.runtime
    if runtime.remember(ref.uid).verified != sandbox_id:
        return  # secrets go only into a sandbox verified from inside; the next reconcile does that
    _, envs = await read_secrets(ref, spec, runtime)
    setup_plan = plan(ref, spec, envs, runtime.settings, await agent_files(ref, spec, runtime))
    try:
        result = await backend.run(sandbox_id, bootstrap.render_setup(setup_plan), envs=envs,
                                   timeout_s=runtime.settings.ready_timeout_seconds
                                   + runtime.settings.command_timeout_seconds)
        report = bootstrap.parse_report(result.stdout)
    except (BackendError, ValueError) as exc:
        logger.warning("self-heal failed: %s", exc, extra={**ref.log_extra, "sandbox_id": sandbox_id})
        return
    record_agents(book, spec, report.panes, report.agents.ready, report.restarted)
    record_tools(book, spec, report)
    ready = report.agents.ready
    if report.restarted:
        book.event("Normal", Reason.AGENT_RESTARTED,
                   f"restarted agent(s) {', '.join(map(str, report.restarted))} in place")
    agent_errors = [e for e in report.errors if e.step != "mcp"]
    if ready >= spec.agents and report.agents.ready == report.agents.desired and not agent_errors \
            and registry_shortfall(spec, report) is None:
        book.set(ConditionType.AGENTS_READY, "True", Reason.AVAILABLE,
                 f"{ready}/{spec.agents} agents running")
        # The gateway alone still down: the agents run without their tools.
        book.status.health = _verdict(
            book.status.health, Reason.MCP_GATEWAY_UNAVAILABLE if mcp_down(spec, report.mcp) else None)
    else:
        book.set(ConditionType.AGENTS_READY, "False", Reason.AGENTS_DEGRADED,
                 f"{ready}/{spec.agents} agents running after restarts")
        book.status.health = _verdict(book.status.health, Reason.AGENTS_DEGRADED)
    await book.commit()


def _count_probes(book: StatusBook, *, failed: bool) -> None:
    """Probes are commands too (status.metrics.commandsExecuted/Failed). A quiet probe is not
    worth a status write on its own: its count waits in memory and rides along with the next
    write (a restart loses at most the quiet ones since)."""
    memory = book.runtime.remember(book.ref.uid)
    quiet, memory.quiet_probes = memory.quiet_probes, 0
    count_command(book, failed=failed, executed=quiet + (1 if failed else 0))


def _registered(spec: SwarmSandboxSpec, report: bootstrap.HealthReport) -> str | None:
    """With the coordinator on, the registry must hold every agent: how many it holds, when fewer."""
    registry = report.registry
    if not spec.coordinator.enabled or registry is None or registry.agents is None:
        return None
    if registry.agents < spec.agents:
        return f"{registry.agents}/{spec.agents} registered with the coordinator"
    return None


def _verdict(previous: HealthStatus | None, reason: str | None) -> HealthStatus:
    """A probe's verdict, stamped now: Healthy without a reason, else one more failure in a row."""
    now = datetime.now(timezone.utc)
    if reason is None:
        return HealthStatus(status="Healthy", consecutive_failures=0, last_probe_time=now)
    failures = (previous or HealthStatus()).consecutive_failures + 1
    return HealthStatus(status="Unhealthy", reason=reason, consecutive_failures=failures, last_probe_time=now)
