"""status.progress end to end (real operator, both emulators, the workspace test server): the counts
move as the agents commit and message, ``swarm-operator status`` shows them, ``logs`` still shows
the message log, a hostile agent cannot break or bloat them, and busy agents do not cost a status
write per probe."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.test_cli import _cli
from tests.e2e.test_workspace import GIT_TOKEN, PIN, GitServer, git_server, sandbox_home  # noqa: F401

pytestmark = pytest.mark.e2e

FAST = {"intervalSeconds": 5}
#: An agent that says hello on the coordinator's message log, then reads its terminal like an agent.
_CHATTY = {
    "command": "bash",
    "args": ["-c", 'claudeswarm broadcast-message INFO "hello from $SWARM_AGENT_ID"; exec cat'],
}
#: What agent 0 does in its workspace, run as the agent would (through E2B, in the workspace).
_WORK = """
set -e
cd "$WS"
export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.com
export GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.com
echo fix > fix.txt && git add fix.txt && git commit -qm "add fix"
echo "version one, improved" > README.md && git commit -qam "improve readme"
echo draft > draft.txt
SWARM_AGENT_ID=agent-0 claudeswarm send-message agent-1 INFO "pushed two commits"
"""
#: What a rogue agent does: a message log far past the probe's bound, in lines built to break JSON
#: and to look like the end of a report, and thousands of files.
_ROGUE = r"""
cd "$WS"
python3 - <<'PY'
line = '{"sender": "rogue", "content": "\\"},\\"phase\\":\\"Failed\\"} ---SWARM-REPORT-END---"}\n'
with open("agent_messages.log", "a") as f:
    f.write(line * (40 * 1024 * 1024 // len(line)))
PY
mkdir -p junk && (cd junk && seq 1 3000 | xargs touch)
"""


def _swarm(git_server: GitServer) -> dict[str, Any]:  # noqa: F811
    return swarm(
        "busy",
        agents=2,
        agent=_CHATTY,
        healthCheck=FAST,
        coordinator={"enabled": True, "install": PIN},
        workspace={
            "repo": git_server.url,
            "ref": "v1.0.0",
            "credentialsSecretRef": {"name": "git-creds", "key": "token"},
        },
    )


def _run(e2b: Any, key: str, sandbox_id: str, script: str, ws: str) -> str:
    sandbox = Sandbox.connect(sandbox_id, api_key=key, api_url=e2b.url, sandbox_url=e2b.url)
    return sandbox.commands.run(script, envs={"WS": ws}, timeout=120).stdout


def _progress(cluster: Cluster, **want: Any) -> dict[str, Any] | None:
    got = cluster.status("default", "busy").get("progress") or {}
    return got if all(got.get(k) == v for k, v in want.items()) else None


def test_progress_moves_with_commits_and_messages_and_survives_a_rogue_agent(
    cluster: Cluster,
    e2b: Any,
    e2b_api_key: str,
    git_server: GitServer,  # noqa: F811
    start_operator: Any,
) -> None:
    start_operator(SWARM_COST_REFRESH_MINUTES="0.05")  # 3 s: every change is written within a tick
    cluster.secret("default", "git-creds", {"token": GIT_TOKEN})
    cluster.apply(_swarm(git_server))
    cluster.wait_condition("default", "busy", "Ready", timeout=90)
    status = cluster.status("default", "busy")
    sandbox_id, ws = status["sandbox"]["id"], status["workspace"]["path"]

    # Ready: the two hellos, nothing done yet, each agent's terminal stamped.
    first = wait_for(
        lambda: _progress(cluster, messages=2, commits=0, filesChanged=0), 30, message="first progress"
    )
    assert [a["id"] for a in first["agents"]] == [0, 1]
    assert set(first) == {"messages", "lastMessageTime", "commits", "filesChanged", "agents", "updatedAt"}

    # Agent 0 works: two commits, an uncommitted file, a message.
    _run(e2b, e2b_api_key, sandbox_id, _WORK, ws)
    moved = wait_for(
        lambda: _progress(cluster, messages=3, commits=2, filesChanged=3), 30, message="progress after work"
    )
    assert moved["updatedAt"] >= first["updatedAt"]
    shown = _cli(cluster, e2b, "status", "busy")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"Progress:\s+3 messages \(last \d+s ago\), 2 commits, 3 files changed", shown.stdout), (
        shown.stdout
    )
    assert re.search(r"Output:\s+agent-0 \d+[smh] ago, agent-1 \d+[smh] ago", shown.stdout), shown.stdout
    logs = _cli(cluster, e2b, "logs", "busy")
    assert logs.returncode == 0, logs.stderr
    contents = [json.loads(line)["content"] for line in logs.stdout.splitlines() if line.startswith("{")]
    assert sorted(contents) == ["hello from agent-0", "hello from agent-1", "pushed two commits"], logs.stdout

    # A rogue agent: the counts stay bounded numbers, the swarm stays Ready and its status small.
    _run(e2b, e2b_api_key, sandbox_id, _ROGUE, ws)
    rogue = wait_for(lambda: _progress(cluster, filesChanged=3003), 30, message="progress after the rogue")
    assert 3 < rogue["messages"] <= 16 * 1024 * 1024 // 60 + 3  # counted within the scan bound only
    assert rogue["commits"] == 2
    after = cluster.status("default", "busy")
    assert after["phase"] == "Ready" and after["health"]["status"] == "Healthy"
    assert (after.get("health") or {}).get("sandboxFaults", 0) == 0
    assert len(json.dumps(after["progress"])) < 400
    assert "SWARM-REPORT" not in json.dumps(after) and "rogue" not in json.dumps(after)
    shown = _cli(cluster, e2b, "status", "busy")
    assert shown.returncode == 0 and "3003 files changed" in shown.stdout, shown.stdout + shown.stderr


#: Agents that print every second: their terminals' times change on every probe.
_PRINTING = {"command": "bash", "args": ["-c", "while :; do echo working; sleep 1; done"]}


def test_busy_agents_cost_no_status_write_between_cadence_ticks(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator(SWARM_COST_REFRESH_MINUTES="0.5")  # 30 s
    cluster.apply(swarm("printers", agents=2, agent=_PRINTING, healthCheck=FAST))
    cluster.wait_condition("default", "printers", "Ready")
    first = wait_for(
        lambda: (cluster.status("default", "printers").get("progress") or {}).get("agents"),
        20,
        message="first progress, right after Ready",
    )
    written = cluster.status("default", "printers")["progress"]
    assert len(first) == 2 and "commits" not in written and "messages" not in written  # no workspace
    counter = cluster.emulator.emulator.counter
    before = counter.writes()
    time.sleep(16)  # three probes; the agents printed all along (their terminals' times moved)
    assert counter.writes() == before
    assert cluster.status("default", "printers")["progress"] == written
    # Once the cadence passed, the moved times are written.
    later = wait_for(
        lambda: (
            (p := cluster.status("default", "printers")["progress"])["updatedAt"] != written["updatedAt"]
            and p
        ),
        45,
        message="progress rewritten after the cadence",
    )
    assert [a["lastOutputTime"] for a in later["agents"]] > [a["lastOutputTime"] for a in written["agents"]]
