"""status.progress: the probe measures it for real (bash, tmux, git), the parser is strict, the
cadence decides when it is written, and ``swarm-operator status`` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_bootstrap_run import FIXTURE_BIN, Box, box, make_plan, setup  # noqa: F401

from swarm_operator.bootstrap import (
    BootstrapReportError,
    ProgressReport,
    parse_health,
    render_probe,
)
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END
from swarm_operator.console import read_status
from swarm_operator.lifecycle import progress
from swarm_operator.model import (
    AgentActivity,
    MetricsStatus,
    ProgressStatus,
    SwarmSandboxSpec,
    SwarmSandboxStatus,
    progress_lines,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def _git(work: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "a"}
    env["GIT_COMMITTER_EMAIL"] = "a@x"
    return subprocess.run(
        ["git", "-C", str(work), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _workspace(box: Box) -> tuple[Path, str]:
    work = box.home / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "a.txt").write_text("a\n")
    (work / "b.txt").write_text("b\n")
    _git(work, "add", ".")
    _git(work, "commit", "-qm", "base")
    return work, _git(work, "rev-parse", "HEAD")


def _message(box: Box, work: Path, text: str) -> None:
    r = box.run(
        f"claudeswarm broadcast-message INFO {text!r}",
        login=False,
        CLAUDESWARM_ROOT=str(work),
        SWARM_AGENT_ID="agent-1",
    )
    assert r.returncode == 0, r.stderr


def test_the_probe_counts_messages_commits_and_files_and_stamps_each_agent(box: Box) -> None:
    work, base = _workspace(box)
    plan = make_plan(agents=2, coordinator_enabled=True, coordinator_install="preinstalled", workdir="work")
    setup(box, plan, login=False)
    report = parse_health(box.run(render_probe(plan, base_commit=base), login=False).stdout).progress
    assert report is not None
    assert (report.messages, report.commits, report.files) == (0, 0, 0)  # the registry is not a change
    assert [a.index for a in report.agents] == [0, 1]

    for text in ("one", "two", "three"):
        _message(box, work, text)
    (work / "c.txt").write_text("c\n")
    _git(work, "add", "c.txt")
    _git(work, "commit", "-qm", "add c")
    (work / "a.txt").write_text("changed\n")
    _git(work, "commit", "-qam", "change a")
    (work / "b.txt").write_text("uncommitted\n")
    (work / "new.txt").write_text("untracked\n")
    clock = int(time.time())
    report = parse_health(box.run(render_probe(plan, base_commit=base), login=False).stdout).progress
    assert report is not None
    assert report.messages == 3
    assert report.commits == 2
    assert report.files == 4  # a (committed), b (uncommitted), c (added), new (untracked)
    assert report.message_time is not None and abs(report.message_time - clock) <= 2
    assert all(abs(a.output - clock) <= 120 for a in report.agents)

    # Without a pinned commit (no workspace) there are no git figures; without the coordinator no count.
    plain = parse_health(box.run(render_probe(plan), login=False).stdout).progress
    assert plain is not None and plain.commits is None and plain.files is None and plain.messages == 3
    off = make_plan(agents=2, workdir="work")
    assert (
        parse_health(box.run(render_probe(off, base_commit=base), login=False).stdout).progress.messages
        is None
    )  # type: ignore[union-attr]


def test_a_hostile_workspace_cannot_inflate_break_or_hang_the_probe(box: Box) -> None:
    work, base = _workspace(box)
    plan = make_plan(agents=2, coordinator_enabled=True, coordinator_install="preinstalled", workdir="work")
    setup(box, plan, login=False)
    # A log far past the scan bound, in lines that look like records: counted within 16 MiB only.
    line = b'{"sender":"x"}\n'
    with (work / "agent_messages.log.old").open("wb") as f:
        f.write(line * (40 * 1024 * 1024 // len(line)))
    # A FIFO where the log should be (a reader would block forever), and JSON in message text.
    os.mkfifo(work / "agent_messages.log")
    # A repository that would run commands on every git call, and a forged pane tag.
    marker = box.home / "ran"
    _git(work, "config", "core.fsmonitor", f"touch {marker}; false")
    _git(work, "config", "core.hooksPath", str(box.home))
    box.tmux(plan, "set-option", "-p", "-t", "=swt:0.1", "@swarm_agent", '7"},{"index":1')
    started = time.monotonic()
    r = box.run(render_probe(plan, base_commit=base), login=False, timeout=60)
    assert time.monotonic() - started < 20
    report = parse_health(r.stdout).progress
    assert report is not None
    assert report.messages == 16 * 1024 * 1024 // len(line)  # the bound, not the 40 MiB
    assert report.commits == 0 and report.files == 0  # the logs are the coordinator's, not work
    assert [a.index for a in report.agents] == [0]  # the forged tag is no agent
    assert not marker.exists()
    # The whole report is small whatever the workspace holds.
    assert len(r.stdout[r.stdout.rfind(MARK_BEGIN) :]) < 4096


def _report(progress: dict[str, Any]) -> str:
    body = {
        "kind": "probe",
        "version": 1,
        "session": "s",
        "server": True,
        "agents": {"desired": 1, "alive": 1, "dead": 0},
        "missing": [],
        "extra": 0,
        "panes": [],
        "registry": None,
        "clock": 100,
        "progress": progress,
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


@pytest.mark.parametrize(
    "bad",
    [
        {"messages": "5"},  # text for a number
        {"messages": -1},
        {"commits": 10**10},
        {"files": 1.5},
        {"messages": True},
        {"message_time": 2**41},
        {"agents": [{"index": 100, "output": 1}]},
        {"agents": [{"index": 0, "output": 1, "note": "x"}]},
        {"agents": [{"index": i % 100, "output": 1} for i in range(101)]},
        {"summary": "text from the sandbox"},
    ],
)
def test_the_parser_refuses_anything_but_bounded_numbers(bad: dict[str, Any]) -> None:
    with pytest.raises(BootstrapReportError):
        parse_health(_report(bad))


def test_the_parser_reads_a_good_report() -> None:
    good = {
        "messages": 3,
        "message_time": 90,
        "commits": 2,
        "files": 4,
        "agents": [{"index": 0, "output": 95}],
    }
    assert parse_health(_report(good)).progress == ProgressReport.model_validate(good)
    assert parse_health(_report({})).progress == ProgressReport()


def _spec(agents: int = 2) -> SwarmSandboxSpec:
    return SwarmSandboxSpec.model_validate({"agents": agents})


def test_measured_places_sandbox_times_on_the_operators_clock_and_drops_extra_agents() -> None:
    report = ProgressReport(
        messages=3,
        message_time=1000,
        commits=1,
        files=2,
        agents=[{"index": 1, "output": 1060}, {"index": 0, "output": 2000}, {"index": 5, "output": 1}],  # type: ignore[list-item]
    )
    fresh = progress.measured(_spec(2), report, 1100, NOW + timedelta(microseconds=5))
    assert fresh.last_message_time == NOW - timedelta(seconds=100)
    assert [(a.id, a.last_output_time) for a in fresh.agents] == [
        (0, NOW),  # in the sandbox's future: now
        (1, NOW - timedelta(seconds=40)),
    ]
    assert (fresh.messages, fresh.commits, fresh.files_changed, fresh.updated_at) == (3, 1, 2, NOW)


def _status(messages: int, at: datetime, output: datetime | None = None) -> ProgressStatus:
    agents = [AgentActivity(id=0, last_output_time=output)] if output else []
    return ProgressStatus(messages=messages, commits=0, files_changed=0, agents=agents, updated_at=at)


def test_the_cadence_decides_when_changed_figures_are_written() -> None:
    cadence = 300.0
    first = _status(1, NOW)
    assert progress.due(None, first, cadence, NOW)  # the first figures at once
    busy = _status(2, NOW + timedelta(seconds=10))
    assert not progress.due(first, busy, cadence, NOW + timedelta(seconds=10))  # changed, too soon
    assert not progress.due(first, busy, cadence, NOW + timedelta(seconds=299))
    assert progress.due(first, busy, cadence, NOW + timedelta(seconds=300))  # changed, cadence passed
    quiet = _status(1, NOW + timedelta(hours=5))
    assert not progress.due(first, quiet, cadence, NOW + timedelta(hours=5))  # nothing new: no write
    # A terminal time read again with jitter is the same time; a later output is news.
    out = _status(1, NOW, NOW - timedelta(seconds=30))
    assert progress.same(out, _status(1, NOW, NOW - timedelta(seconds=28)))
    assert not progress.same(out, _status(1, NOW, NOW + timedelta(seconds=30)))
    assert not progress.same(out, _status(1, NOW))


def _read(**status: Any) -> SwarmSandboxStatus:
    """A stored status as the console reads it (per field: an unreadable one is left unset)."""
    return read_status(status).status


def test_status_page_lines() -> None:
    raw = _status(7, NOW - timedelta(seconds=90), NOW - timedelta(seconds=5)).model_dump(
        by_alias=True, mode="json"
    )
    raw.update(commits=3, filesChanged=4, lastMessageTime=(NOW - timedelta(hours=2)).isoformat())
    assert progress_lines(_read(progress=raw).progress, NOW) == [
        "Progress:   7 messages (last 2h ago), 3 commits, 4 files changed (as of 1m ago)",
        "Output:     agent-0 5s ago",
        "",
    ]
    many = ProgressStatus(
        agents=[AgentActivity(id=i, last_output_time=NOW) for i in range(12)], updated_at=NOW
    )
    assert progress_lines(_read(progress=many.model_dump(by_alias=True, mode="json")).progress, NOW)[
        1
    ].endswith("agent-7 0s ago, and 4 more")
    assert progress_lines(None, NOW) == ["Progress:   -", ""]
    unreadable = _read(progress={"messages": "many"})
    assert progress_lines(unreadable.progress, NOW) == ["Progress:   -", ""]


def test_the_status_page_says_what_of_the_task_was_delivered() -> None:
    task = {"generation": 2, "deliveredAt": (NOW - timedelta(seconds=30)).isoformat(), "agents": [0, 1]}
    assert progress_lines(None, NOW, task=_read(task=task).task) == [
        "Task:       generation 2, delivered 30s ago to 2 pane(s)",
        "Progress:   -",
        "",
    ]
    failed = {"generation": 1, "agents": [0], "message": "pane 1 gone"}
    assert progress_lines(None, NOW, task=_read(task=failed).task)[0].endswith(
        "— last delivery failed: pane 1 gone"
    )
    assert progress_lines(None, NOW, task=_read(task={"generation": "x"}).task)[0] == "Progress:   -"


def _health(messages: int) -> Any:
    return parse_health(_report({"messages": messages, "agents": []}))


def test_record_writes_by_the_cadence_and_rides_along_with_a_write_that_happens_anyway() -> None:
    from tests.unit.test_lifecycle import REF, FakeBackend, Recorder, _runtime

    from swarm_operator.conditions import derive_phase, refresh_ready
    from swarm_operator.lifecycle.status import StatusBook
    from swarm_operator.model import SwarmSandboxStatus

    runtime = _runtime(FakeBackend(), Recorder(), SWARM_COST_REFRESH_MINUTES="5")
    conditions = refresh_ready([], observed_generation=REF.generation)
    written = SwarmSandboxStatus(
        conditions=conditions, phase=derive_phase(conditions), progress=_status(1, NOW)
    )
    book = StatusBook(REF, written, runtime)
    assert not book.changed()
    progress.record(book, _spec(), _health(2), NOW + timedelta(seconds=60))
    assert not book.changed() and book.status.progress.messages == 1  # type: ignore[union-attr]
    progress.record(book, _spec(), _health(2), NOW + timedelta(minutes=5))
    assert book.changed() and book.status.progress.messages == 2  # type: ignore[union-attr]
    # Too soon for the cadence, but the status is being written anyway (here: a condition): rides along.
    book = StatusBook(REF, written, runtime)
    book.status.metrics = MetricsStatus(commands_executed=4)
    progress.record(book, _spec(), _health(3), NOW + timedelta(seconds=60))
    assert book.status.progress.messages == 3  # type: ignore[union-attr]
    # No progress in the report (an older probe): the written figures stay.
    book = StatusBook(REF, written, runtime)
    progress.record(book, _spec(), parse_health(_report({}).replace(', "progress": {}', "")), NOW)
    assert not book.changed()
