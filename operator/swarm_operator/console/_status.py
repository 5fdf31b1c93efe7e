"""The ``status`` page: a ``kubectl describe``-like text of one swarm, or its status as JSON.

Pure formatting of what :mod:`swarm_operator.console._kube` read (the resource and its Events): no
call here, so the page is the same whether the operator is up or not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from swarm_operator import model
from swarm_operator.console._swarm import Observed, Swarm

__all__ = ["format_status", "status_json"]


def format_status(swarm: Swarm, recent: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A ``kubectl describe``-like page: summary, sandbox, health, agents, conditions, steps, Events.

    The status is read through the status model (:func:`read_status`), so each field's name and type
    are defined once; a field it cannot read shows as ``-`` and is named on an ``Unreadable:`` line.
    """
    now = now or datetime.now(UTC)
    observed = swarm.observed
    status, bad = observed.status, observed.unreadable
    steps = status.metrics.step_seconds if status.metrics else {}
    lines = [
        *_summary(swarm, observed, now),
        *_unreadable(swarm, bad),
        *model.progress_lines(_given(status.progress), now, task=_given(status.task)),  # + a blank line
        *(["Agents: -"] if "agents" in bad else _agent_table(status.agents.items if status.agents else [])),
        "",
        *(["Conditions: -", ""] if "conditions" in bad else _condition_table(status.conditions, now)),
        "Steps:      " + (", ".join(f"{k} {float(v):.2f}s" for k, v in steps.items()) or "-"),
        "",
        *_event_table(recent, now),
    ]
    return "\n".join(line.rstrip() for line in lines)


def status_json(swarm: Swarm) -> str:
    """The status as stored, unread: what a newer operator wrote is shown whole."""
    return json.dumps(swarm.status, indent=2, sort_keys=True)


_M = TypeVar("_M", bound=BaseModel)


def _given(part: _M | None) -> _M | None:
    """``part`` unless it was stored empty (``{}``), which the page shows as absent."""
    return part if part is not None and part.model_fields_set else None


def _summary(swarm: Swarm, observed: Observed, now: datetime) -> list[str]:
    """The page's head: name, phase, agent count, sandbox and its times, health, cost."""
    status, bad = observed.status, observed.unreadable
    agents = status.agents or model.AgentsStatus()
    sandbox = status.sandbox or model.SandboxStatus()
    return [
        f"Name:       {swarm.namespace}/{swarm.name}",
        f"Phase:      {observed.phase}" + (f" — {status.message}" if status.message else ""),
        "Agents:     " + ("-" if "agents" in bad else f"{agents.ready}/{agents.desired} ready"),
        f"Sandbox:    {sandbox.id or '-'}" + (f"  (template {sandbox.template})" if sandbox.template else ""),
        f"Started:    {_when(sandbox.started_at, now)}",
        f"Expires:    {_when(sandbox.expires_at, now)}",
        "Health:     " + ("-" if "health" in bad else _health(status.health or model.HealthStatus(), now)),
        f"Cost:       {_cost(_given(status.cost), now)}",
    ]


def _unreadable(swarm: Swarm, bad: frozenset[str]) -> list[str]:
    """One line naming the fields shown as ``-`` because the status model could not read them."""
    if not bad:
        return []
    fields = ", ".join("status" if name == "status" else f"status.{name}" for name in sorted(bad))
    return [f"Unreadable: {fields} (see: swarm-operator status {swarm.name} -o json)"]


def _health(health: model.HealthStatus, now: datetime) -> str:
    return (
        health.status
        + (f", last probe {_when(health.last_probe_time, now)}" if health.last_probe_time else "")
        + (f", {health.consecutive_failures} failures in a row" if health.consecutive_failures else "")
        + (f" — {health.reason}" if health.reason else "")
    )


def _agent_table(items: Sequence[model.AgentItem]) -> list[str]:
    if not items:
        return ["Agents: none reported yet"]
    return _table(
        ["AGENT", "PANE", "STATE", "RESTARTS"],
        [[f"agent-{i.id}", i.pane or "-", i.state, str(i.restarts)] for i in items],
    )


def _condition_table(conditions: Sequence[model.Condition], now: datetime) -> list[str]:
    """The conditions and a blank line after them; nothing at all when there are none."""
    if not conditions:
        return []
    rows = [[c.type, c.status, c.reason, _ago(c.last_transition_time, now), c.message] for c in conditions]
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


def _cost(ledger: model.CostStatus | None, now: datetime) -> str:
    """Spend and rate as of ``now``: the written ledger (status.cost) extrapolated at its rate, the
    way the operator's metrics and budget checks see it between two status writes."""
    from swarm_operator.cost import estimate

    if ledger is None:
        return "-"
    try:
        figures = estimate(ledger, now)
    except ValueError:  # pydantic's ValidationError included: a ledger that cannot be carried forward
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
