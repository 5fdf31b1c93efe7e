"""The ``status`` page: a ``kubectl describe``-like text of one swarm, or its status as JSON.

Pure formatting of what :mod:`swarm_operator.console._kube` read (the resource and its Events): no
call here, so the page is the same whether the operator is up or not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from swarm_operator import model
from swarm_operator.console._swarm import Swarm

__all__ = ["format_status", "status_json"]


def format_status(swarm: Swarm, recent: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A ``kubectl describe``-like page: summary, sandbox, health, agents, conditions, steps, Events."""
    now = now or datetime.now(UTC)
    status = swarm.status
    steps = (status.get("metrics") or {}).get("stepSeconds") or {}
    lines = [
        *_summary(swarm, now),
        *model.progress_lines(status.get("progress"), now, task=status.get("task")),  # + a blank line
        *_agent_table((status.get("agents") or {}).get("items") or []),
        "",
        *_condition_table(status.get("conditions") or [], now),
        "Steps:      " + (", ".join(f"{k} {float(v):.2f}s" for k, v in steps.items()) or "-"),
        "",
        *_event_table(recent, now),
    ]
    return "\n".join(line.rstrip() for line in lines)


def status_json(swarm: Swarm) -> str:
    return json.dumps(swarm.status, indent=2, sort_keys=True)


def _summary(swarm: Swarm, now: datetime) -> list[str]:
    """The page's head: name, phase, agent count, sandbox and its times, health, cost."""
    status = swarm.status
    agents = status.get("agents") or {}
    sandbox = status.get("sandbox") or {}
    return [
        f"Name:       {swarm.namespace}/{swarm.name}",
        f"Phase:      {status.get('phase') or 'Pending'}"
        + (f" — {status['message']}" if status.get("message") else ""),
        f"Agents:     {agents.get('ready', 0)}/{agents.get('desired', 0)} ready",
        f"Sandbox:    {sandbox.get('id') or '-'}"
        + (f"  (template {sandbox['template']})" if sandbox.get("template") else ""),
        f"Started:    {_when(sandbox.get('startedAt'), now)}",
        f"Expires:    {_when(sandbox.get('expiresAt'), now)}",
        f"Health:     {_health(status.get('health') or {}, now)}",
        f"Cost:       {_cost(status.get('cost'), now)}",
    ]


def _health(health: Mapping[str, Any], now: datetime) -> str:
    return (
        str(health.get("status", "Unknown"))
        + (f", last probe {_when(health.get('lastProbeTime'), now)}" if health.get("lastProbeTime") else "")
        + (
            f", {health['consecutiveFailures']} failures in a row"
            if health.get("consecutiveFailures")
            else ""
        )
        + (f" — {health['reason']}" if health.get("reason") else "")
    )


def _agent_table(items: Sequence[Mapping[str, Any]]) -> list[str]:
    if not items:
        return ["Agents: none reported yet"]
    return _table(
        ["AGENT", "PANE", "STATE", "RESTARTS"],
        [
            [
                f"agent-{i.get('id')}",
                i.get("pane") or "-",
                i.get("state") or "Unknown",
                str(i.get("restarts", 0)),
            ]
            for i in items
        ],
    )


def _condition_table(conditions: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    """The conditions and a blank line after them; nothing at all when there are none."""
    if not conditions:
        return []
    rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            _ago(c.get("lastTransitionTime"), now),
            c.get("message", ""),
        ]
        for c in conditions
    ]
    return [*_table(["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"], rows), ""]


def _event_table(recent: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    if not recent:
        return ["Events: none"]
    return _table(
        ["AGE", "TYPE", "REASON", "MESSAGE"],
        [
            [
                _ago(e["time"], now),
                e["type"],
                e["reason"],
                e["message"] + (f" (x{e['count']})" if e["count"] > 1 else ""),
            ]
            for e in recent
        ],
    )


def _cost(ledger: Any, now: datetime) -> str:
    """Spend and rate as of ``now``: the written ledger (status.cost) extrapolated at its rate, the
    way the operator's metrics and budget checks see it between two status writes."""
    from pydantic import ValidationError

    from swarm_operator.cost import estimate
    from swarm_operator.model import CostStatus

    if not ledger:
        return "-"
    try:
        figures = estimate(CostStatus.model_validate(ledger), now)
    except (ValidationError, ValueError):
        return "unreadable status.cost"
    size = f", {figures.vcpu} vCPU / {figures.memory_mib} MiB" if figures.vcpu is not None else ""
    return (
        f"${figures.estimated_usd:.4f} so far, ${figures.rate_usd_per_hour:.4f}/hour now "
        f"({figures.state.lower()}{size}); {_span(figures.sandbox_seconds)} running, "
        f"{_span(figures.paused_seconds)} paused"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
        for row in [header, *rows]
    ]


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _ago(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    return "-" if moment is None else _span((now - moment).total_seconds())


def _when(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    relative = f"in {_span(delta)}" if delta >= 0 else f"{_span(delta)} ago"
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} ({relative})"
