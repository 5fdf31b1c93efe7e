"""``status.progress``: what the agents did, as counts and times the health probe measured.

Only numbers and timestamps, each bounded: the agents own everything the probe reads (the message
log, the workspace, their terminals), so nothing they write can reach status as text or make it
grow. The figures are written at a coarse cadence (``SWARM_COST_REFRESH_MINUTES``, the spend
figures' own), so busy swarms do not turn into a status write per probe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from swarm_operator.model._task import TaskStatus
from swarm_operator.model._vocab import Timestamp

__all__ = ["AgentActivity", "ProgressStatus", "progress_lines"]

#: Far above anything real; a bound, not a target.
_MAX_COUNT = 1_000_000_000
#: Agents named on the status page's output line.
_SHOWN_AGENTS = 8


class _Status(BaseModel):
    # The status models' configuration (model/_status.py, which imports this module).
    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, alias_generator=to_camel, validate_assignment=True
    )


class AgentActivity(_Status):
    """When one agent last printed to its terminal."""

    id: int = Field(ge=0, le=99, description="Agent index, 0-based.")
    last_output_time: Timestamp = Field(
        description="When the agent last wrote to its pane's terminal (the kernel stamps a terminal "
        "when a program writes to it, at an 8-second grain)."
    )


class ProgressStatus(_Status):
    """The agents' progress, refreshed by the health probe at a coarse cadence."""

    messages: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_COUNT,
        description="Coordinator messages exchanged: lines of claudeswarm's agent_messages.log (and "
        "its rotated agent_messages.log.old) in the workspace, counted within the first 16 MiB of "
        "each. Unset without the coordinator.",
    )
    last_message_time: Timestamp | None = Field(
        default=None, description="When the message log was last written."
    )
    commits: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_COUNT,
        description="Commits on the workspace's HEAD since the pinned commit (counted up to 100000). "
        "Unset without a workspace.",
    )
    files_changed: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_COUNT,
        description="Files that differ from the pinned commit (committed or not), plus untracked "
        "files; the coordinator's own files are not counted. Unset without a workspace.",
    )
    agents: list[AgentActivity] = Field(
        default_factory=list,
        max_length=100,
        description="Last output time per agent, by agent index.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    updated_at: Timestamp | None = Field(default=None, description="When these figures were measured.")

    def figures(self) -> dict[str, Any]:
        """Everything but ``updatedAt``: what decides whether there is anything new to write."""
        return self.model_dump(exclude={"updated_at"})


def _task_line(task: TaskStatus | None, now: datetime) -> list[str]:
    """``Task:`` with the delivered generation, when, and to how many panes; a failure's reason."""
    if task is None:
        return []
    when = (
        "-" if task.delivered_at is None else f"{max(int((now - task.delivered_at).total_seconds()), 0)}s ago"
    )
    line = f"Task:       generation {task.generation}, delivered {when} to {len(task.agents)} pane(s)"
    return [line + (f" — last delivery failed: {task.message}" if task.message else "")]


def progress_lines(
    progress: ProgressStatus | None, now: datetime, *, task: TaskStatus | None = None
) -> list[str]:
    """``swarm-operator status``'s progress lines, then the blank line that ends its summary.

    Kept beside the fields it shows, so a new figure is shown where it is defined (the status page
    itself is on a size ratchet). ``progress`` is ``status.progress`` as the status model read it;
    ``None`` (absent, or unreadable) is "-". ``task`` (``status.task``), when given, adds what of
    ``spec.task`` was delivered."""
    head = _task_line(task, now)
    if progress is None:
        return [*head, "Progress:   -", ""]

    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    def ago(when: datetime | None) -> str:
        if when is None:
            return "-"
        seconds = max(int((now - when).total_seconds()), 0)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit} ago"
        return f"{seconds}s ago"

    lines = [
        *head,
        f"Progress:   {count(progress.messages)} messages (last {ago(progress.last_message_time)}), "
        f"{count(progress.commits)} commits, {count(progress.files_changed)} files changed"
        f" (as of {ago(progress.updated_at)})",
    ]
    if progress.agents:  # a hundred agents would make one unreadable line: the first few, and a count
        shown = [f"agent-{a.id} {ago(a.last_output_time)}" for a in progress.agents[:_SHOWN_AGENTS]]
        more = len(progress.agents) - _SHOWN_AGENTS
        lines.append("Output:     " + ", ".join(shown) + (f", and {more} more" if more > 0 else ""))
    return [*lines, ""]
