"""``status``, ``logs`` and ``attach`` against a real operator-managed swarm, and their error lines."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import OPERATOR_NAMESPACE, Cluster, swarm, wait_for
from tests.e2e.test_dev import SWARM_OPERATOR, Terminal, terminal  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

# An agent that says hello on the coordinator's message log, then reads its terminal like an agent.
_CHATTY = {
    "command": "bash",
    "args": ["-c", 'claudeswarm broadcast-message INFO "hello from $SWARM_AGENT_ID"; exec cat'],
}


def _cli(
    cluster: Cluster, e2b: Any, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
    full_env.update(KUBECONFIG=str(cluster.kubeconfig), E2B_API_URL=e2b.url, E2B_SANDBOX_URL=e2b.url)
    full_env.update(env)
    return subprocess.run(
        [str(SWARM_OPERATOR), *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def ready_swarm(cluster: Cluster, e2b: Any, start_operator: Any) -> dict[str, Any]:
    start_operator()
    cluster.apply(swarm("chat", agents=2, agent=_CHATTY, coordinator={"enabled": True}))
    cluster.wait_condition("default", "chat", "Ready", timeout=60)
    body = cluster.get("default", "chat")
    assert body is not None
    return body


def test_status_json_is_the_resources_status(cluster: Cluster, e2b: Any, ready_swarm: dict[str, Any]) -> None:
    def same() -> bool:
        before = cluster.status("default", "chat")
        proc = _cli(cluster, e2b, "status", "chat", "-o", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) in (before, cluster.status("default", "chat"))

    wait_for(same, 20, message="status -o json equal to the stored status")  # a probe may land between reads


def test_status_table_shows_agents_sandbox_expiry_events_steps(
    cluster: Cluster, e2b: Any, ready_swarm: dict[str, Any]
) -> None:
    status = ready_swarm["status"]
    proc = _cli(cluster, e2b, "status", "chat")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"Phase:\s+Ready", out) and re.search(r"Agents:\s+2/2 ready", out), out
    assert status["sandbox"]["id"] in out
    assert re.search(r"Expires:\s+\S+ \(in \d", out), out
    for item in status["agents"]["items"]:
        assert re.search(rf"agent-{item['id']}\s+{re.escape(item['pane'])}\s+Running\s+0", out), out
    assert re.search(r"Steps:\s+.*create [\d.]+s", out), out
    assert "REASON" in out and "Events: none" not in out, out  # the operator posts phase Events


def test_logs_shows_the_coordinator_messages_and_follows(
    cluster: Cluster, e2b: Any, e2b_api_key: str, ready_swarm: dict[str, Any]
) -> None:
    proc = _cli(cluster, e2b, "logs", "chat")
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {m["content"] for m in messages} == {"hello from agent-0", "hello from agent-1"}, proc.stdout

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
    env.update(KUBECONFIG=str(cluster.kubeconfig), E2B_API_URL=e2b.url, E2B_SANDBOX_URL=e2b.url)
    follower = subprocess.Popen(
        [str(SWARM_OPERATOR), "logs", "chat", "-f"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        wait_for(lambda: any("hello from agent-0" in line for line in seen), 30, message="first messages")
        sandbox = Sandbox.connect(
            ready_swarm["status"]["sandbox"]["id"], api_key=e2b_api_key, api_url=e2b.url, sandbox_url=e2b.url
        )
        sandbox.commands.run("claudeswarm broadcast-message INFO 'a later message'", timeout=20)
        wait_for(lambda: any("a later message" in line for line in seen), 20, message="followed message")
        follower.send_signal(signal.SIGINT)
        follower.wait(20)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(5)
    reader.join(5)
    assert follower.returncode == 0, follower.stderr.read()  # type: ignore[union-attr]


def test_attach_in_a_terminal(
    cluster: Cluster, e2b: Any, e2b_api_key: str, ready_swarm: dict[str, Any], terminal: Any
) -> None:  # noqa: F811  (the fixture imported above)
    env = {"KUBECONFIG": str(cluster.kubeconfig), "E2B_API_URL": e2b.url, "E2B_SANDBOX_URL": e2b.url}
    term: Terminal = terminal(f"{SWARM_OPERATOR} attach chat", env)
    term.wait(r"Ctrl-\] detaches", 30)
    term.wait(r"\[swarm-", 30)  # tmux's status line: the terminal is attached to the session
    term.keys("hello-attach", "Enter")
    term.wait(r"hello-attach\s*\n\s*hello-attach", 20)  # the pane's tty echoes it, then cat repeats it
    sandbox = Sandbox.connect(
        ready_swarm["status"]["sandbox"]["id"], api_key=e2b_api_key, api_url=e2b.url, sandbox_url=e2b.url
    )
    from swarm_operator import bootstrap

    meta = ready_swarm["metadata"]
    sock = bootstrap.socket_name("default", "chat", meta["uid"])
    panes = sandbox.commands.run(
        f"tmux -L {sock} capture-pane -p -t ={bootstrap.session_name('default', 'chat', meta['uid'])}:0.0",
        timeout=20,
    ).stdout
    assert "hello-attach" in panes
    term.keys("C-]")
    term.wait(r"EXIT=0", 20)


# ----- errors: one line, non-zero, no traceback ---------------------------------------------------
def test_missing_resource(cluster: Cluster, e2b: Any) -> None:
    for command in ("status", "logs", "attach"):
        _one_line_error(
            _cli(cluster, e2b, command, "ghost", "-n", "default"),
            "swarm default/ghost not found",
            "kubectl get swarm",
        )


def test_unreachable_cluster(tmp_path: Path, cluster: Cluster, e2b: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    config = tmp_path / "dead-kubeconfig"
    config.write_text(
        cluster.kubeconfig.read_text().replace(
            re.search(r"server: (\S+)", cluster.kubeconfig.read_text()).group(1),  # type: ignore[union-attr]
            f"http://127.0.0.1:{port}",
        )
    )
    _one_line_error(
        _cli(cluster, e2b, "status", "x", timeout=30, KUBECONFIG=str(config)),
        "cannot reach the cluster",
        f"127.0.0.1:{port}",
    )


def test_no_kubeconfig(tmp_path: Path, cluster: Cluster, e2b: Any) -> None:
    _one_line_error(
        _cli(cluster, e2b, "status", "x", KUBECONFIG=str(tmp_path / "absent")),
        "no usable kubeconfig",
        "KUBECONFIG",
    )


def test_missing_secret_and_no_sandbox_yet(cluster: Cluster, e2b: Any, ready_swarm: dict[str, Any]) -> None:
    cluster.core.delete_namespaced_secret("e2b-api-key", OPERATOR_NAMESPACE)
    _one_line_error(
        _cli(cluster, e2b, "logs", "chat"),
        f"Secret {OPERATOR_NAMESPACE}/e2b-api-key",
        "kubectl create secret generic",
    )
    # A new resource whose key Secret does not exist gets no sandbox: it has none yet. (The deleted
    # default key may still serve for one SWARM_SECRET_CHECK_SECONDS: the reader shares reads.)
    later = swarm("later")
    later["spec"]["e2b"] = {"apiKeySecretRef": {"name": "no-such-key", "key": "api-key"}}
    cluster.custom.create_namespaced_custom_object(
        "claudeswarm.io", "v1alpha1", "default", "swarmsandboxes", later
    )
    _one_line_error(_cli(cluster, e2b, "attach", "later"), "has no sandbox yet")


def _state(e2b: Any, sandbox_id: str) -> str:
    [record] = [s for s in e2b.inspect() if s["sandboxID"] == sandbox_id]
    return str(record["state"])


def test_a_suspended_swarm_is_never_resumed(cluster: Cluster, e2b: Any, ready_swarm: dict[str, Any]) -> None:
    """``Sandbox.connect`` resumes a paused sandbox (which then dies at its timeout, behind the
    operator's back): ``logs`` and ``attach`` refuse a suspended swarm instead; ``status`` reads only
    the cluster, and still works."""
    sandbox_id = cluster.status("default", "chat")["sandbox"]["id"]
    cluster.kubectl("patch", "swarm", "chat", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_condition("default", "chat", "Suspended", "True")
    assert _state(e2b, sandbox_id) == "paused"
    for command in (["logs", "chat"], ["logs", "chat", "-f"], ["attach", "chat"]):
        _one_line_error(_cli(cluster, e2b, *command), "is suspended", "would resume it", '"suspend":false')
    proc = _cli(cluster, e2b, "status", "chat")
    assert proc.returncode == 0 and "Suspended" in proc.stdout, proc
    assert _state(e2b, sandbox_id) == "paused"


def test_a_paused_sandbox_is_never_resumed(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any, terminal: Any
) -> None:
    """The resource may not know yet (operator down, E2B's auto-pause): the sandbox's own state,
    read from the control plane without resuming, is checked before any connect."""
    operator = start_operator()
    cluster.apply(swarm("nap", agents=1))
    cluster.wait_condition("default", "nap", "Ready", timeout=60)
    operator.stop()  # nobody else touches the sandbox from here on
    sandbox_id = cluster.status("default", "nap")["sandbox"]["id"]
    Sandbox.pause(sandbox_id, api_key=e2b_api_key, api_url=e2b.url)
    assert _state(e2b, sandbox_id) == "paused"
    _one_line_error(
        _cli(cluster, e2b, "logs", "nap"), f"sandbox {sandbox_id}", "is paused", "would resume it"
    )
    # attach checks E2B's side when it connects, i.e. after the terminal check: give it a terminal.
    env = {"KUBECONFIG": str(cluster.kubeconfig), "E2B_API_URL": e2b.url, "E2B_SANDBOX_URL": e2b.url}
    term: Terminal = terminal(f"{SWARM_OPERATOR} attach nap", env)
    term.wait(rf"sandbox {sandbox_id} of swarm default/nap is paused and connecting\s+would resume it", 30)
    term.wait(r"EXIT=1", 10)
    assert _state(e2b, sandbox_id) == "paused"
