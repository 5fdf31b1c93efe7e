"""Script-only secrets never sit in a long-lived process environment (issue 17, finding 5).

The real setup script runs through ``E2BBackend.run(stdin=...)`` and the official SDK against the E2B
emulator, cloning a workspace from an HTTPS git server that demands the token. *While it runs*, every
process running the setup script is read the way anything in the sandbox can read it
(``/proc/PID/environ``) and the way any holder of the E2B key can (envd's process list through the
SDK's ``commands.list()``): no secret value is in either. The control run hands the same values over
as ``envs=`` (how the operator did it before) and the same checks see them, so the checks can fail.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_workspace import GIT_TOKEN, GitServer, git_server  # noqa: F401  (fixture)

from swarm_operator.backend import E2BBackend
from swarm_operator.bootstrap import BootstrapPlan, parse_report, render_setup, secret_input
from swarm_testbed.e2b import EmulatorThread

pytestmark = pytest.mark.timeout(120)

AGENT_VALUE = "agent-env-value-5c1f0e9a7b"
MCP_VALUE = "mcp-secret-value-8d24be61"

# Every process whose argv is the setup script (the script's first comment line is in it), with its
# environment, base64. The pattern's [t] keeps grep from matching its own argv.
_LOOK = r"""for d in /proc/[0-9]*; do
    if tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q 'swarm-operator bootstrap (se[t]up)'; then
        printf '%s ' "${d#/proc/}"; base64 -w0 < "$d/environ" 2>/dev/null; echo
    fi
done
"""


def _plan(repo: str) -> BootstrapPlan:
    # The agent lives long (sleep); settle_s keeps the setup running for seconds after the clone.
    return BootstrapPlan(
        session="sec",
        socket="sec",
        agents=1,
        command="sleep",
        args=("600",),
        env_names=("AGENT_TOKEN",),
        coordinator_enabled=False,
        agent_cli_install="",
        workdir="work",
        workspace_repo=repo,
        workspace_ref="v1.0.0",
        settle_s=3,
        ready_timeout_s=30,
    )


def _secrets() -> dict[str, str]:
    return {
        "AGENT_TOKEN": AGENT_VALUE,
        "SWARM_SECRET_GIT_PASSWORD": GIT_TOKEN,
        "SWARM_SECRET_MCP_0_APIKEY": MCP_VALUE,
    }


async def _watch(backend: E2BBackend, raw: Any, sandbox_id: str, setup: asyncio.Task[Any]) -> tuple[int, str]:
    """While ``setup`` runs: how many setup processes were seen, and all they held in their
    environments (/proc) and in envd's process list (the SDK's view)."""
    seen, held = 0, []
    while not setup.done():
        look = await backend.run(sandbox_id, _LOOK, timeout_s=20)
        for line in look.stdout.splitlines():
            pid, _, environ = line.partition(" ")
            seen += 1
            held.append(base64.b64decode(environ).decode("utf-8", "replace"))
        for process in await raw.commands.list():
            held.append(repr(process.envs))
        await asyncio.sleep(0.2)
    return seen, "\n".join(held)


def _home(tmp_path: Path, server: GitServer) -> Path:
    """The sandbox trusts the test's CA through ~/.gitconfig, as a company template would."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".company-ca.pem").write_bytes(server.ca.read_bytes())
    (home / ".gitconfig").write_text("[http]\n\tsslCAInfo = ~/.company-ca.pem\n")
    return home


@pytest.mark.parametrize("handover", ["stdin", "envs (control)"])
async def test_while_the_setup_runs_no_process_environment_holds_a_secret(
    e2b_emulator_factory: Callable[..., EmulatorThread],
    e2b_api_key: str,
    tmp_path: Path,
    git_server: GitServer,
    handover: str,
) -> None:
    from e2b import AsyncSandbox

    emulator = e2b_emulator_factory(api_key=e2b_api_key, home_template=_home(tmp_path, git_server))
    backend = E2BBackend(e2b_api_key, api_url=emulator.url, sandbox_url=emulator.url)
    info = await backend.create("base", {"uid": "stdin"}, timeout_s=120)
    raw = await AsyncSandbox.connect(
        info.id, api_key=e2b_api_key, api_url=emulator.url, sandbox_url=emulator.url
    )
    script = render_setup(_plan(git_server.url))
    if handover == "stdin":
        run = backend.run(info.id, script, stdin=secret_input(_secrets()), timeout_s=60)
    else:
        run = backend.run(info.id, script, envs=_secrets(), timeout_s=60)
    setup = asyncio.ensure_future(run)
    seen, held = await _watch(backend, raw, info.id, setup)
    result = await setup

    report = parse_report(result.stdout)
    assert not report.errors and report.agents.ready == 1, report.errors
    assert report.workspace is not None and report.workspace.commit == git_server.tag_commit
    assert git_server.auth_seen, "the clone authenticated with the token"
    assert seen >= 3, "the setup process was looked at while it ran"
    leaked = {name for name, value in _secrets().items() if value in held}
    if handover == "stdin":
        assert leaked == set(), leaked
    else:
        assert leaked == set(_secrets()), leaked  # the control: the checks do see envs= values

    after = await backend.run(
        info.id,
        f"""
        test ! -e {report.state_dir}/git-credential && echo credential-file-gone
        for d in /proc/[0-9]*; do
            [ "$(cat "$d/comm" 2>/dev/null)" = sleep ] && tr '\\0' '\\n' < "$d/environ" | grep '^AGENT_TOKEN='
        done
        grep -rl {GIT_TOKEN} {report.state_dir} $HOME/work/.git 2>/dev/null || echo token-in-no-file
        """,
        timeout_s=20,
    )
    # The agent does get its own variable; the credential file went with the clone; no file keeps
    # the token (nor .git/config).
    assert after.stdout.split() == [
        "credential-file-gone",
        f"AGENT_TOKEN={AGENT_VALUE}",
        "token-in-no-file",
    ], after
    await backend.kill(info.id)
    await backend.aclose()


async def test_a_failed_handover_kills_the_command_and_is_retried(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    """envd refuses the stdin send (a 500 on every ``SendInput``): each attempt's command, which
    would wait for its input, is killed before the error goes up, and no attempt leaves one behind."""
    from swarm_operator.backend import BackendError, RetryPolicy

    emulator = e2b_emulator_factory(
        api_key=e2b_api_key,
        fault_rate=1.0,
        fault_kinds=("500",),
        fault_operations=frozenset({"process.send_input"}),
    )
    backend = E2BBackend(
        e2b_api_key,
        api_url=emulator.url,
        sandbox_url=emulator.url,
        retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=20),
    )
    info = await backend.create("base", {"uid": "sendfail"}, timeout_s=60)
    waiter = "read -r line; exec sleep 300 # stdin-waiter-7e1"
    with pytest.raises(BackendError):
        await backend.run(info.id, waiter, stdin=b"value\n", timeout_s=30)
    left = await backend.run(info.id, "pgrep -fc 'stdin-waiter-[7]e1' || true", timeout_s=20)
    assert left.stdout.strip() == "0", "a command left waiting for its stdin"
    stats = httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["operations"]
    assert stats["process.send_input"] == 3  # every attempt tried to hand it over
    await backend.kill(info.id)
    await backend.aclose()
