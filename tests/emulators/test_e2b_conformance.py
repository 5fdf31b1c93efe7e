"""The E2B emulator as a conformance model: each test drives it through the official ``e2b`` SDK and
names the upstream source of the rule it checks (github e2b-dev/infra unless said otherwise; the SDK
is ``e2b`` 2.63 in site-packages). Tests that need the old permissive behaviour name the knob.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox
from e2b.exceptions import NotFoundException, RateLimitException, SandboxException

from swarm_testbed.e2b import EmulatorThread

Factory = Callable[..., EmulatorThread]


def _opts(emulator: EmulatorThread, key: str) -> dict[str, Any]:
    return {"api_key": key, "api_url": emulator.url, "sandbox_url": emulator.url}


def _run(sandbox: Sandbox, cmd: str, **kwargs: Any) -> Any:
    """Run without raising on a non-zero exit (the SDK raises): returns (exit_code, stdout, stderr)."""
    from e2b.sandbox.commands.command_handle import CommandExitException

    try:
        result = sandbox.commands.run(cmd, timeout=120, **kwargs)
        return result.exit_code, result.stdout, result.stderr
    except CommandExitException as failed:
        return failed.exit_code, failed.stdout, failed.stderr


def _hiding(emulator: EmulatorThread) -> None:
    if emulator.emulator._whiteouts is None:
        pytest.skip("this machine cannot overlay /usr/bin in a mount namespace: host programs stay visible")


# ----- stock templates ------------------------------------------------------------------------------
def test_base_has_no_tmux_nor_agent_but_git_node_and_passwordless_sudo(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """templates/base/e2b.Dockerfile (build-essential, curl, git, Node; no tmux, no agent CLI) and
    packages/orchestrator/pkg/template/build/phases/finalize/configure.sh (`user` NOPASSWD sudo)."""
    emulator = e2b_emulator_factory()
    _hiding(emulator)
    sandbox = Sandbox.create("base", timeout=60, **_opts(emulator, e2b_api_key))
    try:
        for absent in ("tmux", "claude", "claudeswarm", "mcp-gateway"):
            assert _run(sandbox, f"command -v {absent}", user="user")[0] != 0, absent
        assert _run(sandbox, "command -v git && command -v node", user="user")[0] == 0
        code, out, _ = _run(sandbox, "sudo -n true && sudo -E env | grep -c ^SUDO_USER=", user="user")
        assert code == 0 and out.strip() == "1"
    finally:
        sandbox.kill()


def test_base_installs_tools_offline_with_sudo_apt_npm_and_pip(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """configure.sh: `user` may become root, so a setup installs what e2b.Dockerfile lacks: tmux from
    apt, the agent CLI from npm, the coordinator (PyPI claude-swarm) with pip -- offline here, through
    the emulator's stand-ins and its /_pypi/simple/ index (PIP_INDEX_URL, emulator only)."""
    emulator = e2b_emulator_factory()
    _hiding(emulator)
    sandbox = Sandbox.create("base", timeout=120, **_opts(emulator, e2b_api_key))
    try:
        assert _run(sandbox, "sudo apt-get update && sudo apt-get install -y tmux", user="user")[0] == 0
        code, out, _ = _run(sandbox, "command -v tmux && tmux -V", user="user")
        assert code == 0 and out.startswith("/usr/local/bin/tmux\ntmux ")
        assert _run(sandbox, "sudo apt-get install -y no-such-package", user="user")[0] == 100
        assert _run(sandbox, "sudo npm install -g @anthropic-ai/claude-code@2.0.14", user="user")[0] == 0
        assert _run(sandbox, "command -v claude", user="user")[1] == "/usr/local/bin/claude\n"
        assert _run(sandbox, "sudo npm install -g left-pad@1.0.0", user="user")[0] != 0
        code, out, err = _run(
            sandbox,
            "python3 -m venv ~/.swarm-venv && ~/.swarm-venv/bin/pip install -q "
            "claude-swarm==0.4.2 && ~/.swarm-venv/bin/claudeswarm broadcast-message "
            "INFO hi && cat agent_messages.log",
            user="user",
        )
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["content"] == "hi"
        installs = emulator.inspect()[0]["installs"]
        assert [(i["manager"], i["package"]) for i in installs] == [
            ("apt", ""),
            ("apt", "tmux"),
            ("npm", "@anthropic-ai/claude-code"),
        ]
        assert installs[2]["version"] == "2.0.14"
        assert emulator.emulator.pypi_downloads == ["claude_swarm-0.4.2-py3-none-any.whl"]
    finally:
        sandbox.kill()
    # Installs are per sandbox: a new one starts from the template again.
    fresh = Sandbox.create("base", timeout=60, **_opts(emulator, e2b_api_key))
    try:
        assert _run(fresh, "command -v tmux || command -v claude", user="user")[0] != 0
    finally:
        fresh.kill()


def test_installs_need_sudo_when_user_is_not_root(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """configure.sh: `user` is an ordinary account with sudo; apt and a global npm install need root."""
    emulator = e2b_emulator_factory(user_uid=65534)
    _hiding(emulator)
    sandbox = Sandbox.create("base", timeout=60, **_opts(emulator, e2b_api_key))
    try:
        code, _, err = _run(sandbox, "apt-get install -y tmux", user="user")
        assert code == 100 and "are you root?" in err
        assert _run(sandbox, "npm install -g @anthropic-ai/claude-code@2.0.14", user="user")[0] != 0
        assert _run(sandbox, "sudo apt-get install -y tmux && tmux -V", user="user")[0] == 0
    finally:
        sandbox.kill()


def test_anthropic_claude_code_has_claude_and_otherwise_is_base(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """E2B's published `anthropic-claude-code` template: Claude Code CLI preinstalled on base."""
    emulator = e2b_emulator_factory()
    _hiding(emulator)
    sandbox = Sandbox.create("anthropic-claude-code", timeout=60, **_opts(emulator, e2b_api_key))
    try:
        assert _run(sandbox, "command -v claude", user="user")[0] == 0
        assert _run(sandbox, "command -v tmux", user="user")[0] != 0
    finally:
        sandbox.kill()


def test_a_template_of_ones_own_has_the_host_tools(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """Opt-in by name: any non-stock template stands for one built with `swarm-operator template
    --build` (host tools); `stock_templates=False` makes even `base` so (the e2e harness's opt-in)."""
    emulator = e2b_emulator_factory()
    own = Sandbox.create("my-team-swarm", timeout=60, **_opts(emulator, e2b_api_key))
    permissive = e2b_emulator_factory(stock_templates=False)
    base = Sandbox.create("base", timeout=60, **_opts(permissive, e2b_api_key))
    try:
        assert _run(own, "command -v tmux", user="user")[0] == 0
        assert _run(base, "command -v tmux", user="user")[0] == 0
    finally:
        own.kill()
        base.kill()


def test_home_template_under_tmp_is_copied_not_linked(
    e2b_emulator_factory: Factory, e2b_api_key: str, tmp_path: Path
) -> None:
    """Issue 15 item 7: a checkout under /tmp is hidden by each sandbox's private /tmp, so a home
    template linking into it would dangle: the emulator copies what the links point at."""
    assert str(tmp_path).startswith("/tmp/")
    tool = tmp_path / "checkout" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "tool").symlink_to(tool)
    emulator = e2b_emulator_factory(home_template=home)
    sandbox = Sandbox.create("base", timeout=60, **_opts(emulator, e2b_api_key))
    try:
        assert _run(sandbox, "~/.local/bin/tool")[1] == "tool-ran\n"
        assert _run(sandbox, f"test -e {tool}")[0] != 0  # the checkout itself is not visible inside
    finally:
        sandbox.kill()


# ----- egress ---------------------------------------------------------------------------------------
def test_egress_rules_are_validated_like_sandbox_create_go(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """packages/api/internal/handlers/sandbox_create.go validateEgressRules (messages verbatim) and
    packages/api/internal/orchestrator/create_instance.go buildNetworkConfig."""
    emulator = e2b_emulator_factory()
    opts = _opts(emulator, e2b_api_key)
    with pytest.raises(SandboxException, match="you must include 'ALL_TRAFFIC' in deny out"):
        Sandbox.create(timeout=30, network={"allow_out": ["github.com"]}, **opts)
    with pytest.raises(SandboxException, match="invalid denied CIDR github.com"):
        Sandbox.create(timeout=30, network={"deny_out": ["github.com"]}, **opts)
    with pytest.raises(SandboxException, match="invalid allowed address 0.0.0.0"):
        Sandbox.create(timeout=30, network={"allow_out": ["0.0.0.0"]}, **opts)
    # allow_internet_access=false does not excuse a domain: the network block is validated as sent.
    with pytest.raises(SandboxException, match="ALL_TRAFFIC"):
        Sandbox.create(timeout=30, allow_internet_access=False, network={"allow_out": ["github.com"]}, **opts)
    assert emulator.inspect(include_dead=True) == []

    ok = Sandbox.create(
        timeout=30, network={"allow_out": ["github.com", "1.1.1.1"], "deny_out": ["0.0.0.0/0"]}, **opts
    )
    closed = Sandbox.create(
        timeout=30,
        allow_internet_access=False,
        network={"allow_out": ["8.8.8.8/32"], "deny_out": ["10.0.0.0/8"]},
        **opts,
    )
    views = {s["sandboxID"]: s for s in emulator.inspect()}
    assert views[ok.sandbox_id]["egress"] == {"allowOut": ["github.com", "1.1.1.1"], "denyOut": ["0.0.0.0/0"]}
    # create_instance.go: allow_internet_access=false REPLACES the deny list with 0.0.0.0/0.
    assert views[closed.sandbox_id]["egress"] == {"allowOut": ["8.8.8.8/32"], "denyOut": ["0.0.0.0/0"]}
    ok.kill()
    closed.kill()


def test_permissive_egress_is_an_explicit_wrong_rule(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """The knob `doctor` uses to prove it notices a deliberately wrong emulator (not E2B's rule)."""
    emulator = e2b_emulator_factory(permissive_egress=True)
    Sandbox.create(timeout=30, network={"allow_out": ["github.com"]}, **_opts(emulator, e2b_api_key)).kill()


# ----- lifetime cap ---------------------------------------------------------------------------------
def test_create_over_the_plan_cap_is_400(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """packages/api/internal/handlers/timeout_helper.go validateAndParseTimeout (Hobby 1 h, Pro 24 h)."""
    hobby = e2b_emulator_factory()
    with pytest.raises(SandboxException, match="Timeout cannot be greater than 1 hours"):
        Sandbox.create(timeout=3601, **_opts(hobby, e2b_api_key))
    Sandbox.create(timeout=3600, **_opts(hobby, e2b_api_key)).kill()
    pro = e2b_emulator_factory(plan="pro")
    with pytest.raises(SandboxException, match="Timeout cannot be greater than 24 hours"):
        Sandbox.create(timeout=86_401, **_opts(pro, e2b_api_key))
    Sandbox.create(timeout=86_400, **_opts(pro, e2b_api_key)).kill()


def test_set_timeout_is_clamped_to_the_cap_from_start_then_refused(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """packages/api/internal/orchestrator/keep_alive.go KeepAliveFor + getMaxAllowedTTL: the end is
    now + min(timeout, cap - age) -- silently; once older than the cap: 400 "Max instance length
    exceeded" (here the cap is lowered under a live sandbox, as a plan change would)."""
    emulator = e2b_emulator_factory(lifetime_cap_seconds=60)
    sandbox = Sandbox.create(timeout=10, **_opts(emulator, e2b_api_key))
    info = sandbox.get_info()
    sandbox.set_timeout(3600)  # far past the cap: accepted, clamped
    clamped = sandbox.get_info().end_at
    assert clamped <= info.started_at + datetime.timedelta(seconds=60, milliseconds=50)
    assert clamped >= info.started_at + datetime.timedelta(seconds=59)
    emulator.emulator.knobs.update({"lifetime_cap_seconds": 1})
    time.sleep(1.2)
    with pytest.raises(SandboxException, match="Max instance length exceeded"):
        sandbox.set_timeout(30)
    sandbox.kill()


def test_set_timeout_zero_ends_the_sandbox_and_paused_is_not_found(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """packages/api/internal/handlers/sandbox_timeout.go: timeout 0 (negative as 0) -> KeepAliveFor
    with allowShorter -> ends now. A paused sandbox is not in the sandbox store (sandbox_connect.go:
    "Sandbox not in store at all -> ... snapshot resume"), so its timeout is a 404."""
    emulator = e2b_emulator_factory()
    opts = _opts(emulator, e2b_api_key)
    doomed = Sandbox.create(timeout=60, **opts)
    doomed.set_timeout(0)
    deadline = time.monotonic() + 5
    while doomed.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert doomed.is_running() is False
    paused = Sandbox.create(timeout=60, **opts)
    assert paused.pause() is True
    with pytest.raises(NotFoundException):
        Sandbox.set_timeout(paused.sandbox_id, 120, **opts)
    paused.kill()


def test_connect_only_extends_defaults_to_five_minutes_and_refuses_over_the_cap(
    e2b_emulator_factory: Factory, e2b_api_key: str
) -> None:
    """packages/api/internal/handlers/sandbox_connect.go: over the cap -> 400; running ->
    KeepAliveFor(allowShorter=false); the v2 route's timeout defaults to 300 s (SDK model
    e2b/api/client/models/connect_sandbox_v2.py)."""
    emulator = e2b_emulator_factory()
    opts = _opts(emulator, e2b_api_key)
    sandbox = Sandbox.create(timeout=1200, **opts)
    before = sandbox.get_info().end_at
    Sandbox.connect(sandbox.sandbox_id, timeout=10, **opts)
    assert sandbox.get_info().end_at == before  # never shortened
    short = Sandbox.create(timeout=20, **opts)
    Sandbox.connect(short.sandbox_id, **opts)
    extended = short.get_info().end_at - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=290) < extended <= datetime.timedelta(seconds=300)
    with pytest.raises(SandboxException, match="Timeout cannot be greater than 1 hours"):
        Sandbox.connect(sandbox.sandbox_id, timeout=3601, **opts)
    sandbox.kill()
    short.kill()


# ----- identity, errors -----------------------------------------------------------------------------
def test_sandbox_id_appears_only_after_envd_fills_it(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """packages/envd/internal/api/init.go and packages/envd/internal/host/mmds.go: envd learns
    E2B_SANDBOX_ID from MMDS asynchronously after start."""
    emulator = e2b_emulator_factory(identity_delay_seconds=1.5)
    sandbox = Sandbox.create(timeout=60, **_opts(emulator, e2b_api_key))
    try:
        assert _run(sandbox, 'echo "[$E2B_SANDBOX_ID]"')[1] == "[]\n"
        time.sleep(1.6)
        assert _run(sandbox, 'echo "[$E2B_SANDBOX_ID]"')[1] == f"[{sandbox.sandbox_id}]\n"
    finally:
        sandbox.kill()


def test_429_carries_retry_after(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """packages/api/internal/middleware/ratelimit/ratelimit.go: Retry-After (>= 1 s) on every 429."""
    emulator = e2b_emulator_factory(quota=1, retry_after_seconds=7)
    first = Sandbox.create(timeout=30, **_opts(emulator, e2b_api_key))
    with pytest.raises(RateLimitException):
        Sandbox.create(timeout=30, **_opts(emulator, e2b_api_key))
    raw = httpx.post(
        f"{emulator.url}/v2/sandboxes",
        headers={"X-API-KEY": e2b_api_key},
        json={"templateID": "base", "timeout": 30},
    )
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "7"
    first.kill()
    limited = e2b_emulator_factory(fault_rate=1.0, fault_kinds=["429"], fault_operations=["sandbox.list"])
    raw = httpx.get(f"{limited.url}/v2/sandboxes", headers={"X-API-KEY": e2b_api_key})
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "1"
    assert raw.json() == {"code": 429, "message": "Rate limit exceeded"}


def test_forbidden_template_is_403_not_an_auth_error(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """packages/api/internal/cache/templates/errors.go ToAPIError: ErrAccessDenied -> 403
    "you don't have access to template '<name>'"."""
    emulator = e2b_emulator_factory(templates_forbidden=["team-secret"])
    with pytest.raises(SandboxException, match="you don't have access to template 'team-secret'"):
        Sandbox.create("team-secret", timeout=30, **_opts(emulator, e2b_api_key))
    raw = httpx.post(
        f"{emulator.url}/v2/sandboxes",
        headers={"X-API-KEY": e2b_api_key},
        json={"templateID": "team-secret", "timeout": 30},
    )
    assert raw.status_code == 403


# ----- MCP ------------------------------------------------------------------------------------------
async def test_the_sdks_own_mcp_start_and_token_work(e2b_emulator_factory: Factory, e2b_api_key: str) -> None:
    """e2b SDK sandbox_async/main.py: AsyncSandbox.create(mcp=...) picks template `mcp-gateway`, runs
    `mcp-gateway --config '<json>'` as root with GATEWAY_ACCESS_TOKEN; get_mcp_token() reads
    /etc/mcp-gateway/.token as root; the gateway serves MCP (streamable HTTP) on 50005 at /mcp."""
    emulator = e2b_emulator_factory()
    sandbox = await AsyncSandbox.create(
        mcp={"exa": {"apiKey": "mcp-secret"}, "off": {"apiKey": ""}},
        timeout=60,
        **_opts(emulator, e2b_api_key),
    )
    try:
        token = await sandbox.get_mcp_token()
        assert token and len(token) == 36
        [view] = emulator.inspect()
        assert view["templateID"] == "mcp-gateway"
        [start] = [c for c in view["commands"] if "mcp-gateway" in c["argv"][-1]]
        assert start["user"] == "root" and start["envs"] == {"GATEWAY_ACCESS_TOKEN": token}
        assert view["mcpGateway"]["port"] == 50005 and view["mcpGateway"]["token_set"]
        # The sandbox's own /etc/mcp-gateway: the host's (if another bed left one) never has it.
        host_token = "/etc/mcp-gateway/.token"
        assert not os.path.exists(host_token) or token not in open(host_token).read()
        init = (
            '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26",'
            '"capabilities":{},"clientInfo":{"name":"t","version":"0"}}}'
        )
        script = (
            'h=$(mktemp); curl -sf -D "$h" -o /dev/null -H "Authorization: Bearer $T" '
            '-H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" '
            f"http://localhost:50005/mcp -d '{init}' && "
            's=$(grep -i "^mcp-session-id:" "$h" | cut -d" " -f2 | tr -d "\\r") && '
            'curl -sf -H "Authorization: Bearer $T" -H "Mcp-Session-Id: $s" -H "Content-Type: application/json" '
            '-H "Accept: application/json, text/event-stream" http://localhost:50005/mcp '
            """-d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'"""
        )
        listed = await sandbox.commands.run(script, envs={"T": token})
        assert [t["name"] for t in json.loads(listed.stdout)["result"]["tools"]] == ["exa_status"]
        refused = await sandbox.commands.run(
            "curl -s -o /dev/null -w '%{http_code}' -X POST http://localhost:50005/mcp -d '{}'"
        )
        assert refused.stdout == "401"
    finally:
        await sandbox.kill()


# ----- the command line -----------------------------------------------------------------------------
def test_cli_knobs_reach_the_emulator(e2b_api_key: str) -> None:
    """`swarm-operator emulate e2b --plan ... --lifetime-cap-seconds ... --identity-delay-seconds ...
    --permissive-egress` (the names other tools and CI rely on)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarm_operator",
            "emulate",
            "e2b",
            "--plan",
            "pro",
            "--lifetime-cap-seconds",
            "90",
            "--identity-delay-seconds",
            "0.5",
            "--permissive-egress",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        with urllib.request.urlopen(f"{url}/_emulator/config", timeout=10) as answer:
            config = json.load(answer)
        assert (
            config["plan"],
            config["lifetime_cap"],
            config["identity_delay_seconds"],
            config["permissive_egress"],
        ) == ("pro", 90, 0.5, True)
    finally:
        proc.terminate()
        proc.wait(20)
