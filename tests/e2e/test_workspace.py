"""Issue 7 end to end: workspace, MCP gateway, agent configuration and a prebuilt template.

The workspace is a local bare repository served over HTTPS on 127.0.0.1 by a static (git "dumb
HTTP") server that demands Basic auth. HTTPS, not a test-only escape in the URL validation: the
sandbox trusts the test's self-signed CA through ``~/.gitconfig`` in its home template, the way a
company template would ship its CA. The sandbox home stands for a prebuilt template
(``swarm-operator template``): tmux/git on the host, ``claude``, ``claudeswarm`` and the stand-in
``mcp-gateway`` in ``~/.local/bin``, and the coordinator pin recorded in ``~/.swarm-template``.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import FIXTURE_BIN, REPO, Cluster, swarm, wait_for
from tests.e2e.gitserver import git

from swarm_operator import bootstrap
from swarm_testbed.e2b import STANDIN_BIN

pytestmark = pytest.mark.e2e

GIT_TOKEN = "git-token-7f3c9a1e5d"  # distinctive, so any copy of it is found by a scan
GITHUB_TOKEN = "ghp-mcp-0c4b2e9f"
EXA_KEY = "exa-mcp-51d7a3"
NOTION_TOKEN = "ntn-mcp-9e2a44"
ANTHROPIC_KEY = "sk-ant-e2e-3b8d1f"
PIN = "claudeswarm==0.4.2"


@dataclass
class GitServer:
    url: str
    ca: Path
    tag_commit: str
    head_commit: str
    auth_seen: list[str] = field(default_factory=list)


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    server_version = "test-git"

    def __init__(self, *args: Any, seen: list[str], **kwargs: Any) -> None:
        self._seen = seen
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"x-access-token:{GIT_TOKEN}".encode()).decode()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._seen.append(self.path)
        super().do_GET()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture()
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    work = tmp_path / "src"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("version one\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("tag", "-a", "v1.0.0", "-m", "release", cwd=work)
    tag_commit = git("rev-parse", "HEAD", cwd=work)
    (work / "README.md").write_text("version two\n")
    git("commit", "-qam", "two", cwd=work)
    head_commit = git("rev-parse", "HEAD", cwd=work)
    root = tmp_path / "served"
    root.mkdir()
    git("clone", "-q", "--bare", str(work), str(root / "repo.git"))
    git("update-server-info", cwd=root / "repo.git")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    seen: list[str] = []
    handler = functools.partial(_AuthHandler, directory=str(root), seen=seen)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield GitServer(
        url=f"https://127.0.0.1:{server.server_address[1]}/repo.git",
        ca=cert,
        tag_commit=tag_commit,
        head_commit=head_commit,
        auth_seen=seen,
    )
    server.shutdown()
    server.server_close()


@pytest.fixture()
def sandbox_home(tmp_path: Path, git_server: GitServer) -> Path:
    """A prebuilt template's home: agent CLI, coordinator (pinned), gateway, the company CA."""
    home = tmp_path / "sandbox-home"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')
    for tool in [
        *FIXTURE_BIN.iterdir(),
        STANDIN_BIN / "mcp-gateway",
        REPO / "testbed" / "swarm_testbed" / "playground" / "bin" / "claude",
    ]:
        (bin_dir / tool.name).symlink_to(tool.resolve())
    # The sandbox has its own /tmp: the CA goes in its home, as a template would carry it.
    (home / ".company-ca.pem").write_bytes(git_server.ca.read_bytes())
    (home / ".gitconfig").write_text("[http]\n\tsslCAInfo = ~/.company-ca.pem\n")
    (home / ".swarm-template").mkdir()
    (home / ".swarm-template" / "coordinator").write_text(PIN)
    return home


def _secrets(cluster: Cluster) -> None:
    cluster.secret("default", "git-creds", {"token": GIT_TOKEN})
    cluster.secret("default", "mcp-tokens", {"github": GITHUB_TOKEN, "exa": EXA_KEY, "notion": NOTION_TOKEN})
    cluster.secret("default", "anthropic", {"apiKey": ANTHROPIC_KEY})


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path.relative_to(root)))
            except OSError:
                pass
    return hits


def _cmdlines_containing(needle: bytes) -> list[str]:
    hits = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    hits.append(proc.name)
            except OSError:
                pass
    return hits


def test_workspace_mcp_agent_config_on_prebuilt_template(
    cluster: Cluster, e2b: Any, git_server: GitServer, start_operator: Any
) -> None:
    operator = start_operator()
    _secrets(cluster)
    cluster.core.create_namespaced_config_map(
        "default",
        {
            "metadata": {"name": "agent-cfg"},
            "data": {
                "settings.json": json.dumps({"permissions": {"deny": ["Bash(rm -rf:*)"]}}),
                "claude.json": json.dumps({"theme": "dark"}),
                "CLAUDE.md": "Work in small commits.\n",
            },
        },
    )
    cluster.apply(
        swarm(
            "tools",
            agents=2,
            agent={
                "command": "claude",
                "apiKeySecretRef": {"name": "anthropic", "key": "apiKey"},
                "config": {"configMapName": "agent-cfg"},
            },
            coordinator={"enabled": True, "install": PIN},
            workspace={
                "repo": git_server.url,
                "ref": "v1.0.0",
                "credentialsSecretRef": {"name": "git-creds", "key": "token"},
            },
            mcp=[
                {"name": "gh", "type": "github", "tokenSecretRef": {"name": "mcp-tokens", "key": "github"}},
                {"name": "search", "type": "exa", "tokenSecretRef": {"name": "mcp-tokens", "key": "exa"}},
                {"name": "files", "type": "filesystem"},
                {
                    "name": "notes",
                    "type": "custom",
                    "server": "notion",
                    "fields": [
                        {
                            "name": "internalIntegrationToken",
                            "valueFrom": {"secretKeyRef": {"name": "mcp-tokens", "key": "notion"}},
                        }
                    ],
                },
            ],
        )
    )
    try:
        cluster.wait_condition("default", "tools", "Ready", timeout=60)
    except AssertionError:
        raise AssertionError(json.dumps(cluster.status("default", "tools"), indent=1)) from None
    status = cluster.status("default", "tools")

    # Workspace: cloned at the tag's commit, through the credentials.
    assert status["workspace"] == {
        "repo": git_server.url,
        "ref": "v1.0.0",
        "commit": git_server.tag_commit,
        "path": "/home/user/workspace",
    }
    [sandbox] = [s for s in e2b.inspect() if s["alive"]]
    home = Path(sandbox["home"])
    assert (home / "workspace" / "README.md").read_text() == "version one\n"
    assert git_server.auth_seen, "the server never saw an authenticated request"

    # MCP: the gateway got every server with its secret; status from its health answer.
    assert sandbox["mcpGateway"]["config"] == {
        "github": {"personalAccessToken": GITHUB_TOKEN},
        "exa": {"apiKey": EXA_KEY},
        "filesystem": {"paths": ["/home/user/workspace"]},
        "notion": {"internalIntegrationToken": NOTION_TOKEN},
    }
    assert sandbox["mcpGateway"]["port"] == bootstrap.MCP_GATEWAY_PORT and sandbox["mcpGateway"]["token_set"]
    assert status["mcp"] == [
        {"name": n, "state": "Ready", "message": ""} for n in ("gh", "search", "files", "notes")
    ]

    # Agent configuration: onboarding, coordinator permissions + hook, gateway, ConfigMap overrides.
    claude = json.loads((home / ".claude.json").read_text())
    assert claude["hasCompletedOnboarding"] is True and claude["theme"] == "dark"
    assert claude["projects"]["/home/user/workspace"]["hasTrustDialogAccepted"] is True
    gateway = claude["mcpServers"]["e2b-mcp-gateway"]
    assert gateway["url"] == f"http://127.0.0.1:{bootstrap.MCP_GATEWAY_PORT}/mcp"
    assert gateway["headers"]["Authorization"].startswith("Bearer ")
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["permissions"] == {"allow": ["Bash(claudeswarm:*)"], "deny": ["Bash(rm -rf:*)"]}
    assert "claudeswarm check-messages" in settings["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    assert (home / ".claude" / "CLAUDE.md").read_text() == "Work in small commits.\n"
    for path in (home / ".claude.json", home / ".claude" / "settings.json"):
        assert path.stat().st_mode & 0o077 == 0, path

    # The API key: in the agents' environment only (their 0600 env file), no other file.
    assert [f for f in _files_containing(home, ANTHROPIC_KEY.encode()) if not f.endswith("agent.env")] == []

    # Prebuilt template: the pinned coordinator was there, so nothing was installed.
    state = home / ".swarm"
    assert not list(state.glob("*/coordinator")) and not list(state.glob("*/coordinator-install.log"))

    # The git credential: in no file, no process's argv, no command sent, no log.
    for root in (home, Path(sandbox["home"]).parent / "tmp"):
        assert _files_containing(root, GIT_TOKEN.encode()) == [], root
    assert _cmdlines_containing(GIT_TOKEN.encode()) == []
    assert all(GIT_TOKEN not in " ".join(c["argv"]) for c in sandbox["commands"])
    for secret in (GIT_TOKEN, GITHUB_TOKEN, EXA_KEY, NOTION_TOKEN, ANTHROPIC_KEY):
        assert secret not in operator.log()
        assert secret not in json.dumps(status)
        assert secret not in json.dumps(sandbox["metadata"]) and secret not in json.dumps(
            sandbox["createRequest"]
        )
        assert all(secret not in " ".join(c["argv"]) for c in sandbox["commands"])
        # MCP secrets: on the gateway's own argv only, where E2B's contract puts them (--config JSON).
        assert all(_is_gateway(pid) for pid in _cmdlines_containing(secret.encode())), secret
        # Handed to the setup script on its stdin: no command the operator started carries one in
        # its environment (envd's process list and /proc would show it for the whole run).
        assert all(secret not in json.dumps(c["envs"]) for c in sandbox["commands"]), secret
    assert _cmdlines_containing(ANTHROPIC_KEY.encode()) == []


def test_floating_refs_are_invalid_spec(
    cluster: Cluster, e2b: Any, git_server: GitServer, start_operator: Any
) -> None:
    start_operator()
    cluster.secret("default", "git-creds", {"token": GIT_TOKEN})
    creds = {"credentialsSecretRef": {"name": "git-creds", "key": "token"}}
    # Spelled as a branch: refused by the operator before any sandbox exists.
    cluster.apply(swarm("spelled", workspace={"repo": git_server.url, "ref": "refs/heads/main", **creds}))
    cond = cluster.wait_condition("default", "spelled", "Synced", "False", reason="InvalidSpec")
    assert "branch" in cond["message"]
    # A bare name that resolves only under refs/heads: found out in the sandbox, which is then killed.
    cluster.apply(swarm("bare", workspace={"repo": git_server.url, "ref": "main", **creds}))
    cond = cluster.wait_condition("default", "bare", "Synced", "False", reason="InvalidSpec", timeout=60)
    assert "is a branch" in cond["message"] and "allowFloatingRef" in cond["message"]
    wait_for(lambda: not [s for s in e2b.inspect() if s["alive"]], 15, message="sandbox killed")
    # allowFloatingRef: the branch tip is accepted and reported.
    cluster.apply(
        swarm(
            "floating", workspace={"repo": git_server.url, "ref": "main", "allowFloatingRef": True, **creds}
        )
    )
    cluster.wait_condition("default", "floating", "Ready", timeout=60)
    assert cluster.status("default", "floating")["workspace"]["commit"] == git_server.head_commit


def _mcp_swarm(name: str, **spec: Any) -> dict[str, Any]:
    return swarm(
        name,
        agents=1,
        coordinator={"enabled": False},
        mcp=[{"name": "search", "type": "exa", "tokenSecretRef": {"name": "mcp-tokens", "key": "exa"}}],
        **spec,
    )


def _gateway_pid(home: Path) -> int:
    """The gateway's pid on record; 0 while the setup script is writing a new one."""
    [pid_file] = list((home / ".swarm").glob("*/mcp-gateway/pid"))
    text = pid_file.read_text().strip()
    return int(text) if text.isdigit() else 0


def test_health_probes_refresh_status_mcp_and_restart_the_gateway(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    """status.mcp follows the gateway between setup runs: a killed gateway shows as Failed on the
    next probe (the agents keep running, so the phase stays Ready); with restartDeadAgents the probe
    reruns the setup, which starts the gateway again, and status.mcp is Ready again."""
    start_operator()
    _secrets(cluster)
    cluster.apply(_mcp_swarm("probed", healthCheck={"intervalSeconds": 5, "restartDeadAgents": False}))
    cluster.wait_condition("default", "probed", "Ready", timeout=60)
    assert cluster.status("default", "probed")["mcp"] == [{"name": "search", "state": "Ready", "message": ""}]
    [sandbox] = [s for s in e2b.inspect() if s["alive"]]
    home = Path(sandbox["home"])
    first = _gateway_pid(home)
    os.kill(first, 9)

    def failed() -> dict[str, Any] | None:
        status = cluster.status("default", "probed")
        mcp = status.get("mcp") or [{}]
        return status if mcp[0].get("state") == "Failed" else None

    status = wait_for(failed, 30, message="status.mcp Failed after the gateway died")
    assert "did not answer on /mcp" in status["mcp"][0]["message"]
    assert status["health"]["status"] == "Unhealthy" and status["health"]["reason"] == "McpGatewayUnavailable"
    assert status["phase"] == "Ready"  # the agents still run; only their tools are gone

    cluster.custom.patch_namespaced_custom_object(
        "claudeswarm.io",
        "v1alpha1",
        "default",
        "swarmsandboxes",
        "probed",
        {"spec": {"healthCheck": {"restartDeadAgents": True}}},
    )

    def ready_again() -> dict[str, Any] | None:
        status = cluster.status("default", "probed")
        ok = (status.get("mcp") or [{}])[0].get("state") == "Ready" and status["health"][
            "status"
        ] == "Healthy"
        return status if ok else None

    healthy = wait_for(ready_again, 30, message="status.mcp Ready after the spec change")
    assert "reason" not in healthy["health"], healthy["health"]  # a nested key dropped is removed
    # The spec change reran the setup; now the health probe alone must bring the gateway back.
    second = _gateway_pid(home)
    assert second != first
    os.kill(second, 9)
    wait_for(lambda: _gateway_pid(home) not in (second, 0), 30, message="gateway restarted by a probe")
    wait_for(ready_again, 30, message="status.mcp Ready after the probe's restart")

    # Two restarts so far (the spec change's rerun, the probe's); with maxRestarts 2 the next death
    # is left alone and said so, as for an agent past its budget.
    generation = cluster.get("default", "probed")["metadata"]["generation"]
    cluster.custom.patch_namespaced_custom_object(
        "claudeswarm.io",
        "v1alpha1",
        "default",
        "swarmsandboxes",
        "probed",
        {"spec": {"healthCheck": {"maxRestarts": 2}}},
    )
    cluster.wait_condition("default", "probed", "Ready", timeout=30)
    wait_for(
        lambda: cluster.condition("default", "probed", "Synced")["observedGeneration"] > generation,
        30,
        message="the spec change reconciled",
    )  # Synced: written by the reconcile only
    third = _gateway_pid(home)
    os.kill(third, 9)
    status = wait_for(failed, 30, message="status.mcp Failed past the budget")
    assert (
        "restarted 2 time(s)" in status["mcp"][0]["message"]
        or "after 2 restart(s)" in status["mcp"][0]["message"]
    ), status["mcp"]
    time.sleep(12)  # two more probe intervals: nobody restarts it
    assert _gateway_pid(home) == third
    status = cluster.status("default", "probed")
    assert status["mcp"][0]["state"] == "Failed" and status["health"]["reason"] == "McpGatewayUnavailable"
    # The agents keep running without their tools: a spent gateway never fails the swarm.
    assert status["phase"] == "Ready" and [s["sandboxID"] for s in e2b.inspect()] == [sandbox["sandboxID"]]


def test_an_mcp_swarm_on_e2b_s_gateway_template_is_ready_with_its_secret_on_the_gateway_argv_only(
    cluster: Cluster, e2b_emulator_factory: Any, start_operator: Any
) -> None:
    """E2B's stock ``mcp-gateway`` template, its gateway started the way E2B's SDK starts it (as root,
    ``mcp-gateway --config <JSON>``, GATEWAY_ACCESS_TOKEN in its environment; e2b SDK
    sandbox_async/main.py ``AsyncSandbox.create(mcp=...)``): status.mcp is Ready, and the MCP secret
    is in no operator log, status, Event, command the operator sent (its rendered script and argv),
    nor any file in the sandbox's home -- only on the gateway's own argv inside the sandbox, where
    E2B's contract puts it (README "MCP servers")."""
    stock = e2b_emulator_factory()  # E2B's rules: stock templates, the stand-in speaking E2B's contract
    operator = start_operator(E2B_API_URL=stock.url, E2B_SANDBOX_URL=stock.url)
    _secrets(cluster)
    cluster.apply(_mcp_swarm("gw", template="mcp-gateway"))
    cluster.wait_condition("default", "gw", "Ready", timeout=120)
    status = cluster.status("default", "gw")
    assert status["mcp"] == [{"name": "search", "state": "Ready", "message": ""}]
    [sandbox] = [s for s in stock.inspect() if s["alive"]]
    assert sandbox["stockTemplate"] == "mcp-gateway"
    # The gateway got its config with the secret, on E2B's port, with an access token.
    assert sandbox["mcpGateway"] == {
        "config": {"exa": {"apiKey": EXA_KEY}},
        "port": bootstrap.MCP_GATEWAY_PORT,
        "token_set": True,
    }
    # Handed to the setup command on its stdin: never in its script, its argv or its environment.
    assert all(EXA_KEY not in " ".join(c["argv"]) for c in sandbox["commands"])
    assert all(EXA_KEY not in json.dumps(c["envs"]) for c in sandbox["commands"])
    assert EXA_KEY not in operator.log() and EXA_KEY not in json.dumps(status)
    assert all(EXA_KEY not in (e.message or "") for e in cluster.events("default", "gw"))
    assert EXA_KEY not in json.dumps(sandbox["metadata"]) and EXA_KEY not in json.dumps(
        sandbox["createRequest"]
    )
    # No file in the home holds it (the stand-in's own record of what it received -- what the
    # emulator's inspection showed above -- is the test double's, not the gateway's).
    home = Path(sandbox["home"])
    assert [
        f for f in _files_containing(home, EXA_KEY.encode()) if f != ".mcp-gateway-standin/received.json"
    ] == []
    holders = _cmdlines_containing(EXA_KEY.encode())
    assert holders and all(_is_gateway(pid) for pid in holders), holders


def _is_gateway(pid: str) -> bool:
    """Whether a process is an MCP gateway started E2B's way: ``mcp-gateway --config <JSON>`` (a
    script's interpreter first)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # gone meanwhile
    return any(
        arg.rsplit(b"/", 1)[-1] == b"mcp-gateway" and argv[i + 1 : i + 2] == [b"--config"]
        for i, arg in enumerate(argv)
    )
