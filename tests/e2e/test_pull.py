"""``pull`` and the ``kubectl swarm`` plugin against a real operator-managed swarm (issue 20).

The workspace is the HTTPS test repository of test_workspace.py; the agent commits in it, so the
pulled bundle must carry the agents' commit, not the pinned one. The plugin is run by real kubectl's
plugin mechanism: ``kubectl swarm ...`` finds ``kubectl-swarm`` (the package's console script) on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import KUBECTL, Cluster, swarm, wait_for
from tests.e2e.test_cli import _cli, _one_line_error
from tests.e2e.test_workspace import GIT_TOKEN, GitServer, git_server, sandbox_home  # noqa: F401

pytestmark = pytest.mark.e2e

# Commits in the workspace it starts in, leaves a file uncommitted, then idles like an agent.
_COMMITTER = {
    "command": "bash",
    "args": [
        "-c",
        "git -c user.name=agent -c user.email=agent@example.com commit -q --allow-empty -m agent-work"
        " && echo wip > wip.txt; exec cat",
    ],
}


def _kubectl_swarm(
    cluster: Cluster, e2b: Any, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``kubectl swarm ARGS`` with only the package's bin directory added to PATH, as after a pip install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
    env.update(
        KUBECONFIG=str(cluster.kubeconfig),
        E2B_API_URL=e2b.url,
        E2B_SANDBOX_URL=e2b.url,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return subprocess.run(
        [str(KUBECTL), "swarm", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def _sandbox(cluster: Cluster, e2b: Any, key: str, name: str) -> Any:
    sandbox_id = cluster.status("default", name)["sandbox"]["id"]
    return Sandbox.connect(sandbox_id, api_key=key, api_url=e2b.url, sandbox_url=e2b.url)


def test_pull_bundles_the_sandbox_head_and_suspend_resume_flip_spec_suspend(
    cluster: Cluster, e2b: Any, e2b_api_key: str, git_server: GitServer, start_operator: Any, tmp_path: Path
) -> None:  # noqa: F811  (fixtures imported above)
    start_operator()
    cluster.secret("default", "git-creds", {"token": GIT_TOKEN})
    cluster.apply(
        swarm(
            "work",
            agents=1,
            agent=_COMMITTER,
            workspace={
                "repo": git_server.url,
                "ref": "v1.0.0",
                "credentialsSecretRef": {"name": "git-creds", "key": "token"},
            },
        )
    )
    cluster.wait_condition("default", "work", "Ready", timeout=60)
    sandbox = _sandbox(cluster, e2b, e2b_api_key, "work")
    log = lambda: sandbox.commands.run("git -C ~/workspace log -1 --format=%s", timeout=20).stdout  # noqa: E731
    wait_for(lambda: log().strip() == "agent-work", 30, message="the agent's commit")
    head = sandbox.commands.run("git -C ~/workspace rev-parse HEAD", timeout=20).stdout.strip()
    assert head != git_server.tag_commit

    proc = _cli(cluster, e2b, "pull", "work", "-o", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    bundle = tmp_path / "out" / "work.bundle"
    assert str(bundle) in proc.stdout and head in proc.stdout, proc.stdout
    assert f"{head} HEAD" in _git("bundle", "list-heads", str(bundle)).splitlines()
    clone = tmp_path / "clone"
    _git("clone", "-q", str(bundle), str(clone))
    assert _git("-C", str(clone), "rev-parse", "HEAD") == head
    assert _git("-C", str(clone), "merge-base", "--is-ancestor", git_server.tag_commit, "HEAD") == ""
    assert _git("-C", str(clone), "log", "-1", "--format=%s") == "agent-work"
    # The scratch copy in the sandbox is gone; the plugin's pull is the same command.
    assert ".swarm-pull" not in sandbox.commands.run("ls -a ~", timeout=20).stdout
    proc = _kubectl_swarm(cluster, e2b, "pull", "work", "-o", str(tmp_path / "plugin"), timeout=120)
    assert proc.returncode == 0 and (tmp_path / "plugin" / "work.bundle").is_file(), proc.stderr

    # suspend: spec.suspend true, the operator pauses the sandbox; pull then refuses (it would resume it).
    proc = _kubectl_swarm(cluster, e2b, "suspend", "work", "-n", "default")
    assert proc.returncode == 0, proc.stderr
    assert cluster.get("default", "work")["spec"]["suspend"] is True  # type: ignore[index]
    cluster.wait_condition("default", "work", "Suspended", timeout=60)
    _one_line_error(_kubectl_swarm(cluster, e2b, "pull", "work"), "kubectl swarm pull:", "is suspended")
    # resume: spec.suspend false, the operator resumes the same sandbox, Ready again.
    proc = _kubectl_swarm(cluster, e2b, "-n", "default", "resume", "work")
    assert proc.returncode == 0, proc.stderr
    assert cluster.get("default", "work")["spec"]["suspend"] is False  # type: ignore[index]
    cluster.wait_condition("default", "work", "Ready", timeout=60)
    assert cluster.status("default", "work")["sandbox"]["id"] == sandbox.sandbox_id


def test_kubectl_swarm_status_and_pull_errors(
    cluster: Cluster, e2b: Any, start_operator: Any, tmp_path: Path
) -> None:
    start_operator()
    cluster.apply(swarm("plain", agents=1))
    cluster.wait_condition("default", "plain", "Ready", timeout=60)
    proc = _kubectl_swarm(cluster, e2b, "status", "plain")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Name:\s+default/plain", proc.stdout) and re.search(r"Phase:\s+Ready", proc.stdout)
    assert cluster.status("default", "plain")["sandbox"]["id"] in proc.stdout
    _one_line_error(
        _kubectl_swarm(cluster, e2b, "pull", "plain", "-o", str(tmp_path / "out")), "has no spec.workspace"
    )
    _one_line_error(
        _kubectl_swarm(cluster, e2b, "status", "plain", "-n", "elsewhere"), "elsewhere/plain not found"
    )
    assert not (tmp_path / "out").exists()  # refused before anything was written
