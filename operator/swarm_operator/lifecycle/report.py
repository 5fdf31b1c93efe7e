"""What a setup run or a health probe saw, written to status: ``status.agents``,
``status.workspace``, ``status.mcp`` and the command counts in ``status.metrics``.

Everything here that comes from inside the sandbox is sandbox text: redacted with the resource's
secrets (:func:`report_text` before parsing, ``logs.sandbox_text`` before status) and bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swarm_operator import bootstrap, logs
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import (
    AgentItem,
    AgentsStatus,
    McpServerStatus,
    MetricsStatus,
    SwarmSandboxSpec,
    WorkspaceStatus,
)


def count_command(book: StatusBook, *, failed: bool, executed: int = 1) -> None:
    """status.metrics.commandsExecuted/commandsFailed: every command the operator ran in the
    sandbox, timed-out ones (counted as failed) included."""
    metrics = book.status.metrics or MetricsStatus()
    metrics.commands_executed += executed
    if failed:
        metrics.commands_failed += 1
    book.status.metrics = metrics


def registry_shortfall(spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport) -> str | None:
    """With the coordinator enabled, every agent must be registered with it: the message saying
    how many are, or None when all are (or the coordinator is off). A discovery that failed is
    already an error of the run."""
    found = report.coordinator.discovered
    if not (spec.coordinator.enabled and report.coordinator.enabled) or found is None:
        return None
    if found < spec.agents:
        return f"{found}/{spec.agents} agents registered with the coordinator"
    return None


def report_text(stdout: str, uid: str) -> str:
    """A script's stdout, redacted with the resource's (``uid``) secrets before it is parsed.

    Everything read from a report (step errors, gateway messages, workspace fields) and every parse
    error (which quotes cut pieces of the output) then carries no secret value: redacting after a
    cut could miss a secret cut in half.
    """
    return logs.REDACTOR.redact(stdout, uid)


def mcp_down(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None) -> bool:
    """The spec wants MCP servers and the last look found the gateway not answering."""
    return bool(spec.mcp) and gateway is not None and not gateway.gateway


def mcp_items(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None, uid: str) -> list[McpServerStatus]:
    """status.mcp from one look at the gateway (a setup run or a health probe).

    The messages are the gateway's own words (its log lines, a server's error), so sandbox text:
    redacted with the resource's (``uid``) secrets and bounded before they reach status.
    """
    items = []
    for entry in spec.mcp:
        if gateway is None:
            state, message = "Unknown", "the gateway was not checked (see the Ready condition)"
        elif not gateway.gateway:
            state, message = "Failed", gateway.error or "the MCP gateway is not running"
            if gateway.restarts:
                message += f" (gateway restarted {gateway.restarts} time(s))"
        elif gateway.servers is None:
            # The gateway answered MCP but reports no per-server health (E2B's does not).
            state, message = "Ready", ""
        elif (server := gateway.servers.get(entry.server_key)) is None:
            state, message = "Failed", f"the gateway does not report server {entry.server_key}"
        else:
            state, message = ("Ready" if server.ok else "Failed"), server.message
        items.append(
            McpServerStatus(
                name=entry.name, state=state, message=logs.sandbox_text(message, uid, limit=1024, keep="head")
            )
        )
    return items


def record_tools(book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport) -> None:
    """status.workspace and status.mcp from the setup report (what the sandbox really has)."""
    if spec.workspace is None:
        book.status.workspace = None
    elif report.workspace is not None:
        # Echoed by the script from inside the sandbox: redacted, and bounded to what status holds
        # (an overlong value would otherwise fail the status model, not just look odd).
        def text(value: str | None, limit: int) -> str | None:
            return None if value is None else logs.sandbox_text(value, book.ref.uid, limit=limit, keep="head")

        workspace = report.workspace
        book.status.workspace = WorkspaceStatus(
            repo=text(workspace.repo, 2048),
            ref=text(workspace.ref, 255),
            commit=text(workspace.commit, 64),
            path=text(workspace.path, 4096),
            push=book.status.workspace.push if book.status.workspace else None,  # lifecycle.results'
        )
    if not spec.mcp:
        book.status.mcp = None
        return
    book.status.mcp = mcp_items(spec, report.mcp, book.ref.uid)


def record_agents(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    panes: Sequence[bootstrap.PaneReport],
    ready: int,
    restarted: Iterable[int] = (),
) -> None:
    """status.agents from the panes a setup run or a probe saw; restart counts never go down."""
    previous = {item.id: item for item in (book.status.agents.items if book.status.agents else [])}
    restarted = set(restarted)
    items = []
    for pane in sorted(panes, key=lambda p: p.index)[: spec.agents]:
        old = previous.get(pane.index)
        items.append(
            AgentItem(
                id=pane.index,
                pane=pane.pane_id,
                state="Running" if pane.alive else "Dead",
                restarts=max(pane.restarts, (old.restarts if old else 0) + (pane.index in restarted)),
            )
        )
    book.status.agents = AgentsStatus(desired=spec.agents, ready=ready, items=items)
    if restarted:
        book.runtime.metrics.agents_restarted(len(restarted))
        metrics = book.status.metrics or MetricsStatus()
        metrics.restarts += len(restarted)
        book.status.metrics = metrics
