"""spec.task end to end (the real operator process, kubectl, both emulators): a prompt reaches every
pane exactly once, a role prompt its own pane; an operator restart (even one that lost the status
write) types nothing again; a changed task is typed once more; spec.task.completion pauses a
finished swarm (phase Succeeded) or kills the sandbox of one whose agents all exited.

The agents are ``fake-agent --record``: each line typed into its pane is appended, raw (bracketed
paste markers and all), to ``~/fake-agent-input.<index>`` in the sandbox, read here with the e2b SDK.
"""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest
from e2b import Sandbox
from tests.e2e.conftest import GROUP, PLURAL, VERSION, Cluster, swarm, wait_for

pytestmark = pytest.mark.e2e

FAST = {"intervalSeconds": 5}
RECORDING = {"command": "fake-agent", "args": ["--record"]}
PASTE_BEGIN, PASTE_END = "\x1b[200~", "\x1b[201~"


def _heard(e2b: Any, api_key: str, sandbox_id: str, agents: int) -> list[list[str]]:
    """What each agent was told so far, line by line."""
    sandbox = Sandbox.connect(sandbox_id, api_key=api_key, api_url=e2b.url, sandbox_url=e2b.url)
    out = []
    for i in range(agents):
        text = sandbox.commands.run(f"cat ~/fake-agent-input.{i} 2>/dev/null || true", timeout=20).stdout
        out.append(text.splitlines())
    return out


def _pasted(text: str) -> str:
    return PASTE_BEGIN + text + PASTE_END


def _state(e2b: Any, sandbox_id: str) -> str:
    [record] = [s for s in e2b.inspect(include_dead=True) if s["sandboxID"] == sandbox_id]
    return str(record["state"])


def _task_generation(cluster: Cluster, name: str) -> int:
    return int((cluster.status("default", name).get("task") or {}).get("generation") or 0)


def test_a_task_reaches_every_pane_once_a_restart_types_nothing_a_change_is_typed_once_more(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    operator = start_operator()
    task = {"prompt": "build the parser", "agents": [{"index": 1, "prompt": "review the parser"}]}
    cluster.apply(swarm("tasked", agents=3, agent=RECORDING, healthCheck=FAST, task=task))
    cluster.wait_condition("default", "tasked", "Ready")
    cond = cluster.wait_condition("default", "tasked", "TaskDelivered", "True", timeout=30)
    assert cond["reason"] == "TaskDelivered" and "agent(s) 0, 1, 2" in cond["message"]
    status = cluster.status("default", "tasked")
    sandbox_id = status["sandbox"]["id"]
    assert status["task"]["generation"] == 1 and status["task"]["agents"] == [0, 1, 2]
    assert status["task"]["sandboxId"] == sandbox_id and "parser" not in str(status["task"])
    first = [
        [_pasted("build the parser")],
        [_pasted("review the parser")],  # the role prompt, in place of the shared one
        [_pasted("build the parser")],
    ]
    wait_for(lambda: _heard(e2b, e2b_api_key, sandbox_id, 3) == first, 15, message="each pane told once")
    time.sleep(11)  # two more probes: nothing typed again
    assert _heard(e2b, e2b_api_key, sandbox_id, 3) == first

    # The operator dies after typing but before its status write (status.task lost): a new one asks
    # again, the sandbox's marks answer "held", and nothing is typed twice.
    operator.stop()
    cluster.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "tasked", {"status": {"task": None}}
    )
    assert "task" not in cluster.status("default", "tasked")
    start_operator()
    wait_for(lambda: _task_generation(cluster, "tasked") == 1, 30, message="delivery recorded again")
    cond = cluster.wait_condition("default", "tasked", "TaskDelivered", "True")
    assert "every pane had it already" in cond["message"]
    time.sleep(6)
    assert _heard(e2b, e2b_api_key, sandbox_id, 3) == first

    # A changed shared prompt: typed once more into the panes it reaches (not the role's pane).
    cluster.kubectl(
        "patch", "swarm", "tasked", "--type=merge", "-p", '{"spec": {"task": {"prompt": "now fix the bug"}}}'
    )
    wait_for(lambda: _task_generation(cluster, "tasked") == 2, 30, message="the changed task delivered")
    second = [first[0] + [_pasted("now fix the bug")], first[1], first[2] + [_pasted("now fix the bug")]]
    wait_for(lambda: _heard(e2b, e2b_api_key, sandbox_id, 3) == second, 15, message="told once more")
    time.sleep(11)
    assert _heard(e2b, e2b_api_key, sandbox_id, 3) == second
    assert _task_generation(cluster, "tasked") == 2
    assert cluster.status("default", "tasked")["phase"] == "Ready"  # no completion policy: runs on
    reasons = [e.reason for e in cluster.events("default", "tasked")]
    assert reasons.count("TaskDelivered") == 3 and "TaskDeliveryFailed" not in reasons


def test_a_finished_swarm_is_paused_succeeded_and_stays_so_across_a_restart(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    operator = start_operator()
    task = {"prompt": "write the report", "completion": {"idleSeconds": 10}}
    cluster.apply(swarm("finisher", agents=2, agent=RECORDING, healthCheck=FAST, task=task))
    cluster.wait_condition("default", "finisher", "TaskDelivered", "True", timeout=60)
    sandbox_id = cluster.status("default", "finisher")["sandbox"]["id"]
    assert _heard(e2b, e2b_api_key, sandbox_id, 2) == [[_pasted("write the report")]] * 2
    # Quiet for 10 s after the delivery: done within a probe interval after that.
    cond = cluster.wait_condition("default", "finisher", "Completed", "True", timeout=40)
    assert cond["reason"] == "TaskCompleted" and "idle for" in cond["message"]
    status = cluster.status("default", "finisher")
    assert status["phase"] == "Succeeded"
    suspended = cluster.condition("default", "finisher", "Suspended")
    assert suspended is not None and suspended["status"] == "True" and suspended["reason"] == "TaskCompleted"
    ready = cluster.condition("default", "finisher", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "TaskCompleted")
    assert _state(e2b, sandbox_id) == "paused" and status["cost"]["state"] == "Paused"
    # An operator restart neither resumes it nor types the task again.
    operator.stop()
    start_operator()
    time.sleep(8)
    assert _state(e2b, sandbox_id) == "paused"
    assert cluster.status("default", "finisher")["phase"] == "Succeeded"
    # A new task is a spec change: the same sandbox resumes, is told once, and is done again.
    cluster.kubectl(
        "patch",
        "swarm",
        "finisher",
        "--type=merge",
        "-p",
        '{"spec": {"task": {"prompt": "and the summary"}}}',
    )
    cluster.wait_condition("default", "finisher", "Completed", "False", reason="Resumed", timeout=30)
    wait_for(lambda: _task_generation(cluster, "finisher") == 2, 30, message="the new task delivered")
    assert cluster.status("default", "finisher")["sandbox"]["id"] == sandbox_id
    heard = _heard(e2b, e2b_api_key, sandbox_id, 2)
    assert heard == [[_pasted("write the report"), _pasted("and the summary")]] * 2
    cluster.wait_condition("default", "finisher", "Completed", "True", timeout=40)
    assert _state(e2b, sandbox_id) == "paused"


def test_a_swarm_whose_agents_all_exited_is_done_and_its_sandbox_killed(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    # Each agent takes one line (the task) and exits, as `claude -p` would once it has answered.
    one_shot = {"command": "bash", "args": ["-c", "read -r line; echo done; exit 0"]}
    task = {"prompt": "answer once", "completion": {"idleSeconds": 600, "action": "Delete"}}
    cluster.apply(swarm("oneshot", agents=2, agent=one_shot, healthCheck=FAST, task=task))
    cluster.wait_condition("default", "oneshot", "TaskDelivered", "True", timeout=60)
    sandbox_id = cluster.status("default", "oneshot")["sandbox"]["id"]
    cond = cluster.wait_condition("default", "oneshot", "Completed", "True", timeout=30)
    assert "every agent has exited" in cond["message"] and "killed" in cond["message"]
    status = cluster.status("default", "oneshot")
    assert status["phase"] == "Succeeded" and "sandbox" not in status
    assert _state(e2b, sandbox_id) == "killed"
    time.sleep(6)  # a reconcile or probe of the same generation makes no new sandbox
    assert [s for s in e2b.inspect() if s["alive"]] == []


@pytest.mark.parametrize(
    ("task", "says"),
    [
        ({}, "a task needs a prompt"),
        ({"prompt": "ends the paste \x1b[201~ early"}, "spec.task.prompt"),
        ({"agents": [{"index": 1, "prompt": "a"}, {"index": 1, "prompt": "b"}]}, "Duplicate value"),
        ({"prompt": "p", "completion": {"idleSeconds": 60, "action": "Stop"}}, "spec.task.completion.action"),
    ],
    ids=["empty", "escape", "index-twice", "action"],
)
def test_the_api_server_refuses_a_bad_task(cluster: Cluster, task: dict[str, Any], says: str) -> None:
    """A 422 from the CRD schema: nothing is stored, so no operator ever sees it."""
    with pytest.raises(kubernetes.client.ApiException) as refused:
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, swarm("bad-task", task=task)
        )
    assert refused.value.status == 422 and says in str(refused.value.body)
    assert cluster.get("default", "bad-task") is None
