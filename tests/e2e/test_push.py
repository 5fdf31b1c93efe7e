"""Results out, never lost (issue 20): ``spec.workspace.push`` end to end.

The real operator process against both emulators; the workspace is a bare repository served over
HTTPS on 127.0.0.1 by git's smart-HTTP backend (tests/e2e/gitserver.py), which the sandbox trusts
through its home template's ``~/.gitconfig``. The "agents' work" is made inside the sandbox through
the official ``e2b`` SDK, as the sandbox's user: a commit, then uncommitted changes (a modified
file and an untracked one). Every test reads the result from the server's own repository.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.gitserver import SmartGitServer, git, serve, trust

from swarm_operator import bootstrap

pytestmark = pytest.mark.e2e

TOKEN = "push-token-5c1e8d2b7a"  # distinctive: any copy of it is found
BRANCH = "swarm/results"


@pytest.fixture()
def git_server(tmp_path: Path) -> Iterator[SmartGitServer]:
    server = serve(tmp_path, TOKEN)
    yield server
    server.stop()


@pytest.fixture()
def sandbox_home(sandbox_home: Path, git_server: SmartGitServer) -> Path:
    """The harness's home template, trusting the git server's CA."""
    trust(sandbox_home, git_server.ca)
    return sandbox_home


def _pushing_swarm(name: str, server: SmartGitServer, **spec: Any) -> dict[str, Any]:
    workspace = {
        "repo": server.url,
        "ref": server.base_commit,
        "credentialsSecretRef": {"name": "git-creds", "key": "token"},
        "push": {"branch": BRANCH, "intervalSeconds": 3600},
    }
    workspace.update(spec.pop("workspace", {}))
    return swarm(name, agents=1, workspace=workspace, **spec)


def _shell(e2b: Any, api_key: str, sandbox_id: str, command: str) -> str:
    sandbox = Sandbox.connect(sandbox_id, api_key=api_key, api_url=e2b.url, sandbox_url=e2b.url)
    return sandbox.commands.run(command, timeout=30).stdout.strip()


#: What an agent does in its workspace: a commit of its own, then work it has not committed.
_AGENT_WORK = (
    "cd ~/workspace && printf 'agent v1\\n' > agent.txt && git add agent.txt"
    " && git -c user.name=agent -c user.email=agent@example.com commit -qm 'agent: first step'"
    " && printf 'edited, not committed\\n' > README.md && printf 'untracked\\n' > notes.txt"
    " && git rev-parse HEAD"
)


def _agent_works(e2b: Any, api_key: str, sandbox_id: str) -> str:
    """The agent's commit (its HEAD), with uncommitted changes left on top."""
    head = _shell(e2b, api_key, sandbox_id, _AGENT_WORK).splitlines()[-1]
    assert len(head) == 40, head
    return head


def _assert_wip_on(server: SmartGitServer, pushed: str, agent_head: str) -> None:
    """``pushed`` is a WIP commit by swarm-operator on top of the agent's commit, holding the
    uncommitted edit and the untracked file."""
    assert git("rev-parse", f"{pushed}^", cwd=server.bare) == agent_head
    assert git("log", "-1", "--format=%an|%s", pushed, cwd=server.bare).startswith(
        f"{bootstrap.PUSH_AUTHOR}|WIP: uncommitted work saved by swarm-operator"
    )
    assert server.show(pushed, "agent.txt") == "agent v1"
    assert server.show(pushed, "README.md") == "edited, not committed"
    assert server.show(pushed, "notes.txt") == "untracked"


def _no_secret_anywhere(e2b: Any, operator: Any, cluster: Cluster, name: str) -> None:
    assert TOKEN not in operator.log()
    for sandbox in e2b.inspect(include_dead=True):
        for command in sandbox["commands"]:
            assert TOKEN not in " ".join(command["argv"]) and TOKEN not in json.dumps(command["envs"])
    assert all(TOKEN not in (e.message or "") for e in cluster.events("default", name))


def test_delete_pushes_the_agents_commits_and_uncommitted_work_before_the_kill(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    operator = start_operator()
    cluster.secret("default", "git-creds", {"token": TOKEN})
    cluster.apply(_pushing_swarm("keeper", git_server))
    cluster.wait_condition("default", "keeper", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "keeper")["sandbox"]["id"]
    agent_head = _agent_works(e2b, e2b_api_key, sandbox_id)
    assert git_server.head(BRANCH) is None

    cluster.kubectl("delete", "swarm", "keeper", "--wait=false")
    wait_for(lambda: cluster.get("default", "keeper") is None, 60, message="the resource gone")
    assert not [s for s in e2b.inspect() if s["alive"]], "the sandbox was killed"

    pushed = git_server.head(BRANCH)
    assert pushed is not None, "nothing was pushed before the sandbox was killed"
    _assert_wip_on(git_server, pushed, agent_head)
    # The push ran in the sandbox (its only copy of the uncommitted files), so before the kill.
    [event] = [e for e in cluster.events("default", "keeper") if e.reason == "ResultsPushed"]
    assert pushed in event.message and "before the sandbox is deleted" in event.message
    assert ("POST", "/repo.git/git-receive-pack") in git_server.requests
    _no_secret_anywhere(e2b, operator, cluster, "keeper")


def test_a_ttl_expiry_pushes_before_the_kill(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    start_operator(SWARM_LEASE_RENEW_SECONDS="2")
    cluster.secret("default", "git-creds", {"token": TOKEN})
    cluster.apply(_pushing_swarm("mortal", git_server, ttlSeconds=60))
    cluster.wait_condition("default", "mortal", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "mortal")["sandbox"]["id"]
    agent_head = _agent_works(e2b, e2b_api_key, sandbox_id)

    cluster.wait_condition("default", "mortal", "Synced", "False", reason="SandboxExpired", timeout=90)
    assert not [s for s in e2b.inspect() if s["alive"]]
    pushed = git_server.head(BRANCH)
    assert pushed is not None
    _assert_wip_on(git_server, pushed, agent_head)
    record = cluster.status("default", "mortal")["workspace"]["push"]
    assert record["commit"] == pushed and record["branch"] == BRANCH and record["wip"] is True
    assert record["sandbox"] == sandbox_id and not record.get("error")
    assert any(
        e.reason == "ResultsPushed" and "ttlSeconds" in e.message for e in cluster.events("default", "mortal")
    )


def test_a_template_hand_over_starts_the_new_sandbox_from_the_pushed_commit(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    start_operator(SWARM_REPLACE_DEBOUNCE_SECONDS="0")
    cluster.secret("default", "git-creds", {"token": TOKEN})
    cluster.apply(_pushing_swarm("mover", git_server, template="base", healthCheck={"intervalSeconds": 5}))
    cluster.wait_condition("default", "mover", "Ready", timeout=60)
    old_id = cluster.status("default", "mover")["sandbox"]["id"]
    agent_head = _agent_works(e2b, e2b_api_key, old_id)

    cluster.kubectl("patch", "swarm", "mover", "--type=merge", "-p", '{"spec": {"template": "other"}}')

    def moved() -> dict[str, Any] | None:
        status = cluster.status("default", "mover")
        ready = cluster.condition("default", "mover", "Ready") or {}
        sandbox = status.get("sandbox") or {}
        return status if sandbox.get("id") not in (None, old_id) and ready.get("status") == "True" else None

    status = wait_for(moved, 90, message="moved to the new template")
    pushed = git_server.head(BRANCH)
    assert pushed is not None
    _assert_wip_on(git_server, pushed, agent_head)
    new_id = status["sandbox"]["id"]
    # The new sandbox's workspace starts from that commit: the agents carry on from their work.
    assert _shell(e2b, e2b_api_key, new_id, "git -C ~/workspace rev-parse HEAD") == pushed
    assert _shell(e2b, e2b_api_key, new_id, "cat ~/workspace/notes.txt") == "untracked"
    assert status["workspace"]["commit"] == pushed
    assert status["workspace"]["push"]["commit"] == pushed
    wait_for(
        lambda: [s["sandboxID"] for s in e2b.inspect() if s["alive"]] == [new_id], 20, message="old killed"
    )
    # A setup rerun (the self-heal of a dead tmux server) never moves the workspace back: the
    # agents' next commit stays HEAD.
    uid = (cluster.get("default", "mover") or {})["metadata"]["uid"]
    tmux = f"tmux -L {bootstrap.socket_name('default', 'mover', uid)}"
    later = _shell(
        e2b,
        e2b_api_key,
        new_id,
        "cd ~/workspace && git -c user.name=agent -c user.email=a@x commit -qm next --allow-empty"
        f" && git rev-parse HEAD && {tmux} kill-server",
    )
    wait_for(
        lambda: _shell(e2b, e2b_api_key, new_id, f"{tmux} list-panes -a 2>/dev/null | wc -l") == "1",
        60,
        interval=1,
        message="the agents restarted by a setup rerun",
    )
    assert _shell(e2b, e2b_api_key, new_id, "git -C ~/workspace rev-parse HEAD") == later


def test_the_workspace_is_pushed_periodically(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    start_operator()
    cluster.secret("default", "git-creds", {"token": TOKEN})
    cluster.apply(
        _pushing_swarm(
            "steady",
            git_server,
            workspace={"push": {"branch": BRANCH, "intervalSeconds": 10}},
            healthCheck={"intervalSeconds": 5},
        )
    )
    cluster.wait_condition("default", "steady", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "steady")["sandbox"]["id"]
    agent_head = _agent_works(e2b, e2b_api_key, sandbox_id)
    pushed = wait_for(
        lambda: (
            (p := git_server.head(BRANCH))
            and git("rev-parse", f"{p}^", cwd=git_server.bare) == agent_head
            and p
        ),
        60,
        message="a periodic push of the agent's work",
    )
    _assert_wip_on(git_server, pushed, agent_head)
    # The agents' own HEAD, index and files were not touched by it.
    assert _shell(e2b, e2b_api_key, sandbox_id, "git -C ~/workspace rev-parse HEAD") == agent_head
    assert (
        _shell(e2b, e2b_api_key, sandbox_id, "git -C ~/workspace status --porcelain")
        == "M README.md\n?? notes.txt"
    )
    wait_for(
        lambda: (
            ((cluster.status("default", "steady").get("workspace") or {}).get("push") or {}).get("commit")
            == pushed
        ),
        30,
        message="status.workspace.push",
    )
    assert not any(e.reason == "ResultsPushed" for e in cluster.events("default", "steady")), (
        "periodic: no Event"
    )


def test_a_failing_push_is_reported_and_the_delete_completes_after_its_bound(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    start_operator(SWARM_DELETE_TIMEOUT_SECONDS="10")
    cluster.secret("default", "git-creds", {"token": TOKEN})
    cluster.apply(_pushing_swarm("doomed", git_server))
    cluster.wait_condition("default", "doomed", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "doomed")["sandbox"]["id"]
    _agent_works(e2b, e2b_api_key, sandbox_id)
    git_server.stop()  # the server is down

    started = time.monotonic()
    cluster.kubectl("delete", "swarm", "doomed", "--wait=false")
    wait_for(lambda: cluster.get("default", "doomed") is None, 60, message="the delete completes")
    assert time.monotonic() - started < 45
    assert not [s for s in e2b.inspect() if s["alive"]]
    [event] = [e for e in cluster.events("default", "doomed") if e.reason == "PushFailed"]
    assert event.type == "Warning"
    assert "DATA LOSS RISK" in event.message and sandbox_id in event.message
    assert "nothing was ever pushed" in event.message
    assert git_server.head(BRANCH) is None


def test_a_pause_pushes_first_and_a_bad_branch_is_a_422(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: SmartGitServer, start_operator: Any
) -> None:
    start_operator()
    cluster.secret("default", "git-creds", {"token": TOKEN})
    for bad in ("refs/heads/main", "a..b", "HEAD", "x.lock"):
        refused = cluster.kubectl(
            "apply",
            "--validate=false",
            "-f",
            "-",
            input=json.dumps(_pushing_swarm("bad", git_server, workspace={"push": {"branch": bad}})),
            check=False,
        )
        assert refused.returncode != 0 and "branch" in refused.stderr, (bad, refused.stderr)
        assert "422" in refused.stderr or "Invalid" in refused.stderr, refused.stderr
    cluster.apply(_pushing_swarm("sleeper", git_server))
    cluster.wait_condition("default", "sleeper", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "sleeper")["sandbox"]["id"]
    agent_head = _agent_works(e2b, e2b_api_key, sandbox_id)

    cluster.kubectl("patch", "swarm", "sleeper", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_condition("default", "sleeper", "Suspended", timeout=60)
    pushed = git_server.head(BRANCH)
    assert pushed is not None
    _assert_wip_on(git_server, pushed, agent_head)
    assert cluster.status("default", "sleeper")["workspace"]["push"]["commit"] == pushed
    assert any(
        e.reason == "ResultsPushed" and "before the sandbox is paused" in e.message
        for e in cluster.events("default", "sleeper")
    )
