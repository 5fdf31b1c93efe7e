"""The setup script takes its secrets on stdin (``secret_input``), in real bash, as an unprivileged user.

The values reach what needs them (the agents' env file, the MCP gateway's configuration) and nothing
else; names the script does not expect are ignored, never assigned. The integration test
(tests/integration/test_setup_secrets_stdin.py) shows the same through the SDK while the script runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from test_bootstrap_provision import FIXTURE_BIN, NOBODY, Sandbox, _plan, sandbox  # noqa: F401  (fixture)

from swarm_operator.bootstrap import parse_report, render_setup, secret_input


def _run(sandbox: Sandbox, script: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/bin/bash", "-c", script]
    return subprocess.run(
        argv, env=sandbox.env(), cwd=sandbox.home, input=stdin, capture_output=True, timeout=120
    )


def test_secrets_on_stdin_reach_the_agents_and_the_gateway_and_nothing_else(sandbox: Sandbox) -> None:
    sandbox.flag("gw-fail")  # the stand-in gateway prints the configuration it was given, then fails
    mcp = {"config": {"exa": {"region": "eu"}}, "secrets": [["exa", "apiKey", "SWARM_SECRET_MCP_0_APIKEY"]]}
    (sandbox.sysbin / "tmux").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    (sandbox.sysbin / "claude").symlink_to(FIXTURE_BIN / "fake-agent")
    plan = _plan(
        agents=1,
        coordinator_enabled=False,
        mcp=json.dumps(mcp),
        mcp_start_timeout_s=1,
        env_names=("AGENT_TOKEN",),
    )
    values = {
        "AGENT_TOKEN": "agent-v@lue with 'quotes'\nand a newline",
        "SWARM_SECRET_MCP_0_APIKEY": "mcp-stdin-s3cret",
        "PATH": "/nonexistent",
        "UNASKED": "x",
    }
    r = _run(sandbox, render_setup(plan), secret_input(values))
    report = parse_report(r.stdout.decode())
    assert not report.env_missing and report.agents.ready == 1, report.errors
    # The gateway got the secret in its configuration (masked in the report), from stdin.
    [error] = [e.message for e in report.errors if e.step == "mcp"]
    assert 'its log ends: invalid configuration: {"exa": {"apiKey": "***", "region": "eu"}}' in error
    assert b"mcp-stdin-s3cret" not in r.stdout
    # The agent got its own value, exactly; PATH and UNASKED were not taken from stdin.
    env_file = sandbox.home / ".swarm" / "swp" / "agent.env"
    shown = subprocess.run(
        [
            "bash",
            "-c",
            'set -a; . "$1"; printf %s "$AGENT_TOKEN"; echo "|${UNASKED-unset}"',
            "sh",
            str(env_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == values["AGENT_TOKEN"] + "|unset\n"
    assert "UNASKED" not in env_file.read_text() and "/nonexistent" not in env_file.read_text()


def test_without_stdin_nothing_is_waited_for(sandbox: Sandbox) -> None:
    """A run with nothing on stdin (probe-like callers, an operator that sends no secrets) reports at
    once: an agent env value that never came is a reported env error, not a hang."""
    (sandbox.sysbin / "tmux").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    (sandbox.sysbin / "claude").symlink_to(FIXTURE_BIN / "fake-agent")
    r = _run(
        sandbox, render_setup(_plan(agents=1, coordinator_enabled=False, env_names=("AGENT_TOKEN",))), b""
    )
    report = parse_report(r.stdout.decode())
    assert report.env_missing == ["AGENT_TOKEN"]
    assert [e.step for e in report.errors] == ["env"]
