"""spec.task: the model's bounds, the pure delivery and completion decisions, and the rendered task
script typing prompts into real tmux panes (real bash, real tmux, the fake agent recording its
stdin) exactly once per prompt."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from test_bootstrap_run import Box, box, make_plan, setup  # noqa: F401  (fixture)
from test_model import committed_schema_problems

from swarm_operator import conditions as cond
from swarm_operator.bootstrap import (
    BootstrapPlan,
    HealthReport,
    TaskReport,
    parse_task,
    render_task,
    task_input,
)
from swarm_operator.conditions import ConditionType as T
from swarm_operator.conditions import Reason as R
from swarm_operator.lifecycle.task import finished, pending
from swarm_operator.model import (
    InvalidSpecError,
    Phase,
    SandboxStatus,
    SwarmSandboxSpec,
    SwarmSandboxStatus,
    TaskStatus,
    prompt_digest,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PASTE_BEGIN, PASTE_END = "\x1b[200~", "\x1b[201~"


def _spec(**task: object) -> SwarmSandboxSpec:
    """A three-agent spec with this task."""
    return SwarmSandboxSpec.from_body({"agents": 3, "task": task})


# -- the model ---------------------------------------------------------------------------------------


def test_a_role_prompt_replaces_the_shared_one_for_its_pane_only() -> None:
    spec = _spec(prompt="build it", agents=[{"index": 1, "prompt": "review it"}, {"index": 7, "prompt": "x"}])
    assert spec.task is not None
    assert spec.task.prompts(spec.agents) == {0: "build it", 1: "review it", 2: "build it"}
    roles_only = _spec(agents=[{"index": 2, "prompt": "only me"}])
    assert roles_only.task is not None and roles_only.task.prompts(3) == {2: "only me"}


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ({}, "a task needs a prompt"),
        ({"prompt": ""}, "spec.task.prompt"),
        ({"prompt": "x" * 32_769}, "spec.task.prompt"),
        ({"prompt": "ends the paste \x1b[201~ early"}, "spec.task.prompt"),
        ({"prompt": "carriage\rreturn"}, "spec.task.prompt"),
        ({"agents": [{"index": 0, "prompt": "y" * 8_193}]}, "spec.task.agents[0].prompt"),
        ({"agents": [{"index": 100, "prompt": "y"}]}, "spec.task.agents[0].index"),
        ({"agents": [{"index": 1, "prompt": "a"}, {"index": 1, "prompt": "b"}]}, "index twice"),
        ({"prompt": "p", "completion": {"idleSeconds": 5}}, "idleSeconds"),
        ({"prompt": "p", "completion": {"idleSeconds": 60, "action": "Stop"}}, "action"),
    ],
)
def test_bad_tasks_are_refused_naming_the_field(task: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidSpecError, match=re.escape(problem)):
        SwarmSandboxSpec.from_body({"task": task})
    # The committed CRD refuses each one too (schema, CEL rule, list-map keys): a 422, not a condition.
    assert committed_schema_problems({"task": task})


def test_newlines_and_tabs_are_allowed() -> None:
    task = {"prompt": "line one\n\tline two", "agents": [{"index": 0, "prompt": "r"}]}
    assert _spec(**task).task is not None
    assert committed_schema_problems({"task": task}) == []


def test_the_digest_changes_exactly_when_some_pane_is_told_something_else() -> None:
    one = _spec(prompt="a", agents=[{"index": 0, "prompt": "r"}]).task
    assert one is not None
    same = _spec(agents=[{"index": 0, "prompt": "r"}], prompt="a").task
    assert same is not None and same.digest(3) == one.digest(3)
    assert _spec(prompt="b", agents=[{"index": 0, "prompt": "r"}]).task.digest(3) != one.digest(3)  # type: ignore[union-attr]
    assert one.digest(4) != one.digest(3)  # a new pane has the task to get
    assert prompt_digest("a") != prompt_digest("b") and len(prompt_digest("a")) == 32


# -- the delivery decision ---------------------------------------------------------------------------


def _delivered(spec: SwarmSandboxSpec, sandbox: str = "sbx-1", at: datetime = NOW) -> SwarmSandboxStatus:
    assert spec.task is not None
    return SwarmSandboxStatus(
        sandbox=SandboxStatus(id=sandbox),
        task=TaskStatus(
            generation=1, hash=spec.task.digest(spec.agents), sandbox_id=sandbox, delivered_at=at
        ),
    )


def test_a_task_is_due_until_recorded_for_this_sandbox_then_never_again() -> None:
    spec = _spec(prompt="go")
    assert pending(SwarmSandboxSpec.from_body({}), SwarmSandboxStatus(), "sbx-1") is None  # no task
    assert pending(spec, SwarmSandboxStatus(), "sbx-1") == {0: "go", 1: "go", 2: "go"}
    done = _delivered(spec)
    assert pending(spec, done, "sbx-1") is None  # an operator restart reads this: nothing to do
    assert pending(spec, done, "sbx-2") == {0: "go", 1: "go", 2: "go"}  # a new sandbox: again
    changed = _spec(prompt="go on")
    assert pending(changed, done, "sbx-1") == {0: "go on", 1: "go on", 2: "go on"}
    failed = done.model_copy(update={"task": TaskStatus(message="could not type")})
    assert pending(spec, failed, "sbx-1") is not None  # a failed delivery stays due


# -- the completion decision -------------------------------------------------------------------------


def _report(*, activity: int, clock: int, dead: tuple[bool, ...] = (False, False, False)) -> HealthReport:
    panes = [
        {
            "index": i,
            "target": f"s:0.{i}",
            "pane_id": f"%{i}",
            "pid": 100 + i,
            "alive": not d,
            "dead": d,
            "exit_status": 0 if d else None,
            "command": "claude",
        }
        for i, d in enumerate(dead)
    ]
    return HealthReport.model_validate(
        {
            "kind": "probe",
            "version": 1,
            "session": "s",
            "server": True,
            "agents": {"desired": 3, "alive": dead.count(False), "dead": dead.count(True)},
            "missing": [],
            "extra": 0,
            "panes": panes,
            "registry": None,
            "activity": activity,
            "clock": clock,
        }
    )


def test_done_when_every_agent_is_quiet_long_enough_after_the_delivery() -> None:
    spec = _spec(prompt="go", completion={"idleSeconds": 60})
    status = _delivered(spec)
    quiet = _report(activity=1000, clock=1061)
    assert finished(spec, status, quiet, NOW + timedelta(seconds=61)) is not None
    assert "idle for 61s" in (finished(spec, status, quiet, NOW + timedelta(seconds=61)) or "")
    # Quiet long enough, but the task went in less than idleSeconds ago: not yet.
    assert finished(spec, status, quiet, NOW + timedelta(seconds=30)) is None
    # Printed something 59 s ago: not yet.
    assert finished(spec, status, _report(activity=1002, clock=1061), NOW + timedelta(seconds=90)) is None
    # Never without completion, or before this sandbox got the current task.
    assert finished(_spec(prompt="go"), status, quiet, NOW + timedelta(hours=1)) is None
    assert finished(spec, SwarmSandboxStatus(sandbox=SandboxStatus(id="sbx-1")), quiet, NOW) is None
    other = _spec(prompt="something else", completion={"idleSeconds": 60})
    assert finished(other, status, quiet, NOW + timedelta(hours=1)) is None
    moved = status.model_copy(update={"sandbox": SandboxStatus(id="sbx-2")})
    assert finished(spec, moved, quiet, NOW + timedelta(hours=1)) is None


def test_done_when_every_agent_has_exited() -> None:
    spec = _spec(prompt="go", completion={"idleSeconds": 600, "action": "Delete"})
    status = _delivered(spec)
    busy = _report(activity=1000, clock=1001, dead=(True, True, True))
    assert "exited" in (finished(spec, status, busy, NOW + timedelta(seconds=1)) or "")
    one_left = _report(activity=1000, clock=1001, dead=(True, False, True))
    assert finished(spec, status, one_left, NOW + timedelta(seconds=1)) is None


def test_completed_is_phase_succeeded_and_not_ready() -> None:
    steps = [
        (T.SANDBOX_CREATED, "True", R.CREATED),
        (T.AGENTS_READY, "True", R.AVAILABLE),
        (T.SYNCED, "True", R.RECONCILED),
        (T.SUSPENDED, "True", R.TASK_COMPLETED),
        (T.COMPLETED, "True", R.TASK_COMPLETED),
    ]
    conditions: list = []  # type: ignore[type-arg]
    for type_, status, reason in steps:
        conditions = cond.set_condition(conditions, type_, status, reason, "m", observed_generation=1)  # type: ignore[arg-type]
    assert cond.derive_phase(conditions) == Phase.SUCCEEDED
    assert cond.ready_condition(conditions)[:2] == ("False", R.TASK_COMPLETED)
    # Resumed by a spec change: Completed=False, the swarm is Ready again.
    conditions = cond.set_condition(conditions, T.COMPLETED, "False", R.RESUMED, observed_generation=2)
    conditions = cond.set_condition(conditions, T.SUSPENDED, "False", R.RESUMED, observed_generation=2)
    assert cond.derive_phase(conditions) == Phase.READY


# -- the script, for real ----------------------------------------------------------------------------


def _deliver(box: Box, plan: BootstrapPlan, prompts: dict[int, str]) -> TaskReport:
    script = render_task(plan, {i: prompt_digest(p) for i, p in prompts.items()})
    for text in prompts.values():
        assert text not in script  # the prompt is never part of the command
    r = subprocess.run(
        ["/bin/bash", "-c", script],
        env=box.env(),
        cwd=box.home,
        input=task_input(prompts),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return parse_task(r.stdout.decode())


def _heard(box: Box, plan: BootstrapPlan, index: int, lines: int) -> list[str]:
    path = box.home / plan.workdir / f"fake-agent-input.{index}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.count("\n") >= lines:
            break
        time.sleep(0.05)
    return path.read_text().splitlines() if path.exists() else []


def _states(report: TaskReport) -> dict[int, str]:
    return {p.index: p.state for p in report.panes}


def test_each_pane_is_typed_its_prompt_once_as_a_bracketed_paste(box: Box) -> None:
    plan = make_plan(agents=2, args=["--record"], workdir="work")
    assert setup(box, plan, login=False).ready
    prompts = {0: "you review: $(touch /tmp/nope) 'quotes' ünï", 1: "you build"}
    assert _states(_deliver(box, plan, prompts)) == {0: "delivered", 1: "delivered"}
    assert _heard(box, plan, 0, 1) == [PASTE_BEGIN + prompts[0] + PASTE_END]
    assert _heard(box, plan, 1, 1) == [PASTE_BEGIN + prompts[1] + PASTE_END]
    # Asked again (an operator that crashed before writing status): the marks hold, nothing typed.
    assert _states(_deliver(box, plan, prompts)) == {0: "held", 1: "held"}
    time.sleep(0.5)
    assert len(_heard(box, plan, 0, 1)) == 1 and len(_heard(box, plan, 1, 1)) == 1
    # Pane 1's prompt changes (two lines now): only pane 1 is typed into, once, as one paste.
    changed = {0: prompts[0], 1: "first\nsecond"}
    assert _states(_deliver(box, plan, changed)) == {0: "held", 1: "delivered"}
    assert _heard(box, plan, 1, 3)[1:] == [PASTE_BEGIN + "first", "second" + PASTE_END]
    assert len(_heard(box, plan, 0, 1)) == 1
    marks = box.home / plan.state_dir / "task"
    assert (marks / "1").read_text() == prompt_digest("first\nsecond")
    assert (marks / "1").stat().st_mode & 0o077 == 0


def test_a_pane_that_is_not_running_is_reported_failed_and_left_unmarked(box: Box) -> None:
    plan = make_plan(agents=1, args=["--record"], workdir="work")
    report = _deliver(box, plan, {0: "hello"})  # no setup: no tmux server, no agent
    assert _states(report) == {0: "failed"} and "no pane" in (report.panes[0].message or "")
    assert not (box.home / plan.state_dir / "task" / "0").exists()
