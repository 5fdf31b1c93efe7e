"""The E2B emulator's benchmark-only ``canned_commands`` mode, through the official async SDK: the
operator's own rendered scripts get reports its own parsers accept, and no process is started."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2b import AsyncSandbox

from swarm_operator import bootstrap
from swarm_testbed.e2b import EmulatorThread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def canned(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> EmulatorThread:
    emulator = e2b_emulator_factory(canned_commands=True, identity_delay_seconds=0)
    monkeypatch.setenv("E2B_API_URL", emulator.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", emulator.url)
    monkeypatch.setenv("E2B_API_KEY", e2b_api_key)
    return emulator


async def test_canned_reports_parse_and_start_no_process(canned: EmulatorThread) -> None:
    plan = bootstrap.BootstrapPlan(session="swarm-x", socket="swarm-x", agents=3, command="sleep")
    sandbox = await AsyncSandbox.create(timeout=60, envs={"SWARM_UID": "u-1"})

    identity = await sandbox.commands.run(
        'printf \'swarm-identity %s %s\\n\' "${E2B_SANDBOX_ID-}" "${SWARM_UID-}"'
    )
    assert identity.stdout == f"swarm-identity {sandbox.sandbox_id} u-1\n"

    # setup takes its secrets on stdin, as the operator hands them over, and ends once they arrive
    handle = await sandbox.commands.run(bootstrap.render_setup(plan), background=True, stdin=True)
    await handle.send_stdin(bootstrap.secret_input({"A": "b"}))
    setup = bootstrap.parse_report((await handle.wait()).stdout)
    assert setup.ready and setup.agents.desired == 3 and setup.created == [0, 1, 2]

    health = bootstrap.parse_health((await sandbox.commands.run(bootstrap.render_probe(plan))).stdout)
    assert health.healthy and health.agents.alive == 3

    teardown = bootstrap.parse_teardown((await sandbox.commands.run(bootstrap.render_teardown(plan))).stdout)
    assert teardown.gone and teardown.signalled == 3

    commands = canned.emulator.sandboxes[sandbox.sandbox_id].commands
    # no real process: every pid is above any kernel's pid_max (2**22)
    assert len(commands) == 4 and all(c["pid"] >= 2**22 for c in commands)
    await sandbox.kill()


async def test_canned_mode_is_off_by_default(e2b_env: EmulatorThread) -> None:
    sandbox = await AsyncSandbox.create(timeout=60)
    result = await sandbox.commands.run("echo real")
    assert result.stdout == "real\n"
    assert e2b_env.emulator.sandboxes[sandbox.sandbox_id].commands[-1]["pid"] < 2**22
    await sandbox.kill()
