"""``status.progress`` from the health probe's report, written at a coarse cadence.

The probe measures progress on every tick (it is the same one call into the sandbox), but a busy
swarm's figures change on nearly every tick: writing each would turn a thousand busy swarms into a
thousand status writes a minute. So a changed figure is written only when the written one is at
least ``SWARM_COST_REFRESH_MINUTES`` old (the spend figures' cadence), or when the status is being
written anyway; the first figures of a sandbox are written at once. Figures that did not change
are never rewritten (``updatedAt`` is when they were last measured *and* written).

Sandbox times (terminal and message-log mtimes) are read as ages on the sandbox's own clock and
placed on the operator's, like the idle check: a sandbox whose clock is off cannot move them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from swarm_operator import bootstrap
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import AgentActivity, ProgressStatus, SwarmSandboxSpec

__all__ = ["due", "measured", "record"]

#: Two readings of one time closer than this are the same time: the kernel stamps a terminal at an
#: 8-second grain, and each reading places it on the operator's clock with a second of jitter.
_SAME_TIME_S = 10.0


def measured(
    spec: SwarmSandboxSpec, report: bootstrap.ProgressReport, clock: int | None, now: datetime
) -> ProgressStatus:
    """The probe's figures as ``status.progress`` at ``now``: agents beyond the spec's count are
    dropped, and a time after the sandbox's clock (or with no clock) is treated as "now"."""
    now = now.replace(microsecond=0)

    def placed(epoch: int | None) -> datetime | None:
        if epoch is None:
            return None
        age = max((clock if clock is not None else epoch) - epoch, 0)
        return now - timedelta(seconds=age)

    agents: dict[int, AgentActivity] = {}
    for item in report.agents:
        when = placed(item.output)
        if item.index < spec.agents and item.index not in agents and when is not None:
            agents[item.index] = AgentActivity(id=item.index, last_output_time=when)
    return ProgressStatus(
        messages=report.messages,
        last_message_time=placed(report.message_time),
        commits=report.commits,
        files_changed=report.files,
        agents=[agents[i] for i in sorted(agents)],
        updated_at=now,
    )


def same(a: ProgressStatus, b: ProgressStatus) -> bool:
    """Whether two measurements say the same: equal counts, agents, and times within a few seconds."""
    if (a.messages, a.commits, a.files_changed) != (b.messages, b.commits, b.files_changed):
        return False
    if [x.id for x in a.agents] != [y.id for y in b.agents]:
        return False
    times = [(a.last_message_time, b.last_message_time)]
    times += [(x.last_output_time, y.last_output_time) for x, y in zip(a.agents, b.agents, strict=True)]
    for x, y in times:
        if (x is None) != (y is None):
            return False
        if x is not None and y is not None and abs((x - y).total_seconds()) >= _SAME_TIME_S:
            return False
    return True


def due(written: ProgressStatus | None, fresh: ProgressStatus, cadence_s: float, now: datetime) -> bool:
    """Whether ``fresh`` should replace the written figures: there are none, or they say something
    else and are at least ``cadence_s`` old."""
    if written is None or written.updated_at is None:
        return True
    if same(written, fresh):
        return False
    return (now - written.updated_at).total_seconds() >= cadence_s


def record(book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.HealthReport, now: datetime) -> None:
    """Put the probe's progress into the draft when :func:`due`, or whenever it changed and the
    draft is to be written anyway (it then costs no extra write). Call it after every other change
    of the draft."""
    if report.progress is None:
        return
    fresh = measured(spec, report.progress, report.clock, now)
    written = book.status.progress
    cadence = book.runtime.settings.cost_refresh_minutes * 60.0
    if due(written, fresh, cadence, now) or (
        book.changed() and written is not None and not same(written, fresh)
    ):
        book.status.progress = fresh
