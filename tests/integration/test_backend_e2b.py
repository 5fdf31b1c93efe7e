"""E2BBackend with the official SDK against the E2B emulator: the real wire protocol end to end.

Round trips are counted by the emulator (``GET /_emulator/stats``), so "run right after create
costs one envd call" is checked where it matters — on the server.
"""

from __future__ import annotations

import asyncio
import datetime
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    BackendPool,
    BackendUnavailable,
    CommandTimeout,
    E2BBackend,
    InvalidRequest,
    OutputLimitExceeded,
    QuotaExceeded,
    RetryPolicy,
    SandboxNotFound,
)
from swarm_testbed.e2b import EmulatorThread

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-value-never-in-argv"


class Calls(list[tuple[str, str]]):
    def __call__(self, operation: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.append((operation, outcome))


def stats(emulator: EmulatorThread) -> dict[str, int]:
    return httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["operations"]


def backend_for(emulator: EmulatorThread, key: str, **kw: Any) -> E2BBackend:
    return E2BBackend(key, api_url=emulator.url, sandbox_url=emulator.url, **kw)


@pytest.fixture
def emulator(e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str) -> EmulatorThread:
    return e2b_emulator_factory(api_key=e2b_api_key)


async def test_full_lifecycle(emulator: EmulatorThread, e2b_api_key: str) -> None:
    calls = Calls()
    backend = backend_for(emulator, e2b_api_key, observer=calls)
    tags = {"claudeswarm.io/uid": "uid-1", "claudeswarm.io/name": "alpha"}

    info = await backend.create("base", tags, {"SECRET_TOKEN": SECRET}, timeout_s=120)
    assert info.state == "running" and info.template == "base"
    assert dict(info.metadata) == tags
    assert info.end_at - info.started_at == datetime.timedelta(seconds=120)

    result = await backend.run(info.id, 'echo "$SECRET_TOKEN"; echo oops >&2; exit 3', timeout_s=30)
    assert (result.exit_code, result.stdout, result.stderr) == (3, SECRET + "\n", "oops\n")
    assert not result.ok
    # Run right after create: one envd call, no connect.
    ops = stats(emulator)
    assert ops.get("process.start") == 1
    assert ops.get("sandbox.connect", 0) == 0

    ok = await backend.run(info.id, "pwd; whoami", envs={"EXTRA": "1"}, cwd="/tmp")
    assert ok.ok and ok.stdout.startswith("/tmp\n")

    listed = await backend.list({"claudeswarm.io/uid": "uid-1"})
    assert [s.id for s in listed] == [info.id]
    assert listed[0].metadata["claudeswarm.io/name"] == "alpha"
    assert await backend.list({"claudeswarm.io/uid": "uid-2"}) == []
    assert [s.id for s in await backend.list({}, state="running")] == [info.id]
    assert await backend.list({}, state="paused") == []

    before = (await backend.get(info.id)).end_at
    await backend.set_timeout(info.id, 600)
    after = (await backend.get(info.id)).end_at
    assert after - before > datetime.timedelta(seconds=400)

    assert await backend.kill(info.id) is True
    assert await backend.kill(info.id) is False
    with pytest.raises(SandboxNotFound):
        await backend.get(info.id)
    with pytest.raises(SandboxNotFound):
        await backend.run(info.id, "true")
    with pytest.raises(SandboxNotFound):
        await backend.set_timeout(info.id, 60)

    # The secret reached the sandbox only as an env var, never in a command line.
    for sandbox in httpx.get(f"{emulator.url}/_emulator/sandboxes?all=1", timeout=5).json():
        for command in sandbox.get("commands", []):
            assert SECRET not in str(command.get("argv", command))
    assert ("create", "ok") in calls and ("run", "ok") in calls and ("kill", "ok") in calls


async def test_env_endpoints_and_pool(
    e2b_env: EmulatorThread, e2b_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without explicit URLs the backend follows the SDK's E2B_API_URL / E2B_SANDBOX_URL."""
    monkeypatch.delenv("E2B_API_KEY")  # the key must come from the pool, not the environment
    pool = BackendPool()
    backend = pool.for_key(e2b_api_key)
    info = await backend.create("base", {"k": "v"}, timeout_s=60)
    assert (await backend.run(info.id, "echo hi")).stdout == "hi\n"
    assert await pool.for_key(e2b_api_key).kill(info.id)
    await pool.aclose()


async def test_a_fresh_backend_connects_once_then_reuses(emulator: EmulatorThread, e2b_api_key: str) -> None:
    first = backend_for(emulator, e2b_api_key)
    info = await first.create("base", {"uid": "u"}, timeout_s=60)
    second = backend_for(emulator, e2b_api_key)  # e.g. after an operator restart
    for _ in range(3):
        assert (await second.run(info.id, "echo again")).stdout == "again\n"
    ops = stats(emulator)
    assert ops.get("sandbox.connect") == 1
    assert ops.get("process.start") == 3
    await second.kill(info.id)


async def test_wrong_key_is_authentication_failed_without_retries(
    emulator: EmulatorThread,
) -> None:
    backend = backend_for(emulator, "e2b_" + "f" * 40)
    with pytest.raises(AuthenticationFailed) as info:
        await backend.create("base", {"uid": "u"}, timeout_s=60)
    assert not info.value.transient
    with pytest.raises(AuthenticationFailed):
        await backend.list({"uid": "u"})
    with pytest.raises(AuthenticationFailed):
        await backend.kill("whatever")
    ops = stats(emulator)
    assert ops.get("sandbox.create") == 1 and ops.get("sandbox.list") == 1


async def test_quota_is_quota_exceeded_without_retries(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(api_key=e2b_api_key, quota=1)
    backend = backend_for(emulator, e2b_api_key)
    first = await backend.create("base", {"uid": "a"}, timeout_s=60)
    with pytest.raises(QuotaExceeded) as info:
        await backend.create("base", {"uid": "b"}, timeout_s=60)
    assert info.value.reason == "QuotaExceeded"
    assert info.value.retry_after_s and info.value.retry_after_s >= 30
    assert "concurrent-sandbox limit" in info.value.message
    assert stats(emulator).get("sandbox.create") == 2
    await backend.kill(first.id)
    second = await backend.create("base", {"uid": "b"}, timeout_s=60)
    await backend.kill(second.id)


async def test_refused_timeout_is_an_invalid_request(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(api_key=e2b_api_key, max_timeout=3600)
    backend = backend_for(emulator, e2b_api_key)
    with pytest.raises(InvalidRequest) as info:
        await backend.create("base", {"uid": "a"}, timeout_s=7200)
    assert not info.value.transient


async def test_command_timeout(emulator: EmulatorThread, e2b_api_key: str) -> None:
    backend = backend_for(emulator, e2b_api_key)
    info = await backend.create("base", {"uid": "t"}, timeout_s=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommandTimeout):
        await backend.run(info.id, "sleep 20", timeout_s=1)
    assert loop.time() - started < 10
    assert (await backend.run(info.id, "echo still-alive")).stdout == "still-alive\n"
    await backend.kill(info.id)


async def test_pause_and_resume(emulator: EmulatorThread, e2b_api_key: str) -> None:
    backend = backend_for(emulator, e2b_api_key)
    info = await backend.create("base", {"uid": "p"}, timeout_s=60)
    assert await backend.pause(info.id) is True
    assert await backend.pause(info.id) is False
    assert [s.id for s in await backend.list({"uid": "p"}, state="paused")] == [info.id]
    assert (await backend.get(info.id)).state == "paused"
    await backend.resume(info.id, timeout_s=120)
    assert (await backend.get(info.id)).state == "running"
    before = stats(emulator).get("sandbox.connect", 0)
    assert (await backend.run(info.id, "echo back")).stdout == "back\n"
    assert stats(emulator).get("sandbox.connect", 0) == before  # resume's token is reused
    await backend.kill(info.id)


async def test_ten_concurrent_runs(emulator: EmulatorThread, e2b_api_key: str) -> None:
    backend = backend_for(emulator, e2b_api_key)
    info = await backend.create("base", {"uid": "c"}, timeout_s=60)
    results = await asyncio.gather(
        *(backend.run(info.id, f"sleep 0.2; echo {i}", envs={"I": str(i)}) for i in range(10))
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(10)]
    assert stats(emulator).get("process.start") == 10
    await backend.kill(info.id)


async def test_list_reads_every_page(emulator: EmulatorThread, e2b_api_key: str) -> None:
    backend = backend_for(emulator, e2b_api_key)
    created = await asyncio.gather(
        *(backend.create("base", {"batch": "b1", "i": str(i)}, timeout_s=60) for i in range(105))
    )
    listed = await backend.list({"batch": "b1"})
    assert sorted(s.id for s in listed) == sorted(s.id for s in created)
    assert stats(emulator).get("sandbox.list") == 2
    await asyncio.gather(*(backend.kill(s.id) for s in created))


async def test_seeded_faults_are_absorbed_by_retries(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(api_key=e2b_api_key, fault_rate=0.2, seed=7, fault_hang_seconds=0.3)
    calls = Calls()
    backend = backend_for(
        emulator,
        e2b_api_key,
        observer=calls,
        retry=RetryPolicy(attempts=10, base_delay_s=0.02, max_delay_s=0.2, deadline_s=30),
    )
    created: list[str] = []
    refused = 0
    for i in range(12):
        try:
            info = await backend.create("base", {"uid": f"f{i}", "suite": "faults"}, timeout_s=60)
        except BackendUnavailable as err:
            assert err.ambiguous  # only ambiguous failures may surface from create
            refused += 1
            continue
        created.append(info.id)
        result = await backend.run(info.id, "echo ok")
        assert result.stdout == "ok\n"

    listed = await backend.list({"suite": "faults"})
    assert {s.id for s in listed} >= set(created)
    for sandbox_id in created:
        assert await backend.kill(sandbox_id) in (True, False)  # a retried kill may find it gone
    for sandbox in await backend.list({"suite": "faults"}):
        await backend.kill(sandbox.id)
    assert await backend.list({"suite": "faults"}) == []

    faults = httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["faultsTotal"]
    assert faults > 0
    assert created, "with a 20% fault rate most creates succeed"
    failed_attempts = [c for c in calls if c[1] != "ok"]
    assert failed_attempts  # the faults were seen, and retried past
    assert all(isinstance(c[1], str) for c in calls)
    print(f"created={len(created)} refused={refused} faults={faults}")


async def test_errors_never_escape_unclassified(emulator: EmulatorThread, e2b_api_key: str) -> None:
    backend = backend_for(emulator, e2b_api_key)
    for call in (
        backend.get("nope"),
        backend.run("nope", "true"),
        backend.pause("nope"),
        backend.resume("nope", 60),
    ):
        with pytest.raises(BackendError) as info:
            await call
        assert isinstance(info.value, SandboxNotFound), repr(info.value)


async def test_gateway_timeout_is_not_mistaken_for_a_command_timeout(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    """A 504 in front of envd reaches the SDK as DEADLINE_EXCEEDED, like a command's own deadline."""
    emulator = e2b_emulator_factory(
        api_key=e2b_api_key,
        fault_rate=1.0,
        fault_kinds=["timeout"],
        fault_operations=["process.start"],
        fault_hang_seconds=0.1,
    )
    calls = Calls()
    backend = backend_for(
        emulator, e2b_api_key, observer=calls, retry=RetryPolicy(attempts=2, base_delay_s=0.01)
    )
    info = await backend.create("base", {"uid": "g"}, timeout_s=60)
    with pytest.raises(BackendUnavailable) as raised:
        await backend.run(info.id, "echo never", timeout_s=30)
    assert raised.value.transient
    assert calls.count(("run", "BackendUnavailable")) == 2
    await backend.kill(info.id)


# --- a sandbox's own files and output cannot reach the operator (issue 17, finding 1) ----------


def _hostile_home(tmp_path: Path, profile: str) -> Path:
    """A sandbox home as an agent may leave it: every shell startup file rigged, and a tool in
    ~/.local/bin (where E2B templates' user-installed tools live)."""
    home = tmp_path / "hostile-home"
    (home / ".local" / "bin").mkdir(parents=True)
    for rc in (".bash_profile", ".bash_login", ".profile", ".bashrc"):
        (home / rc).write_text(profile)
    tool = home / ".local" / "bin" / "hello-tool"
    tool.write_text("#!/bin/sh\necho hello-from-local-bin\n")
    tool.chmod(0o755)
    return home


async def test_commands_skip_the_agents_shell_startup_files(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str, tmp_path: Path
) -> None:
    from e2b import AsyncSandbox
    from e2b.sandbox.commands.command_handle import CommandExitException

    emulator = e2b_emulator_factory(
        api_key=e2b_api_key, home_template=_hostile_home(tmp_path, "echo PROFILE-RAN; exit 7\n")
    )
    backend = backend_for(emulator, e2b_api_key)
    info = await backend.create("base", {"uid": "rc"}, timeout_s=60)

    # The control: the SDK's plain commands.run is `bash -l -c`, so the agent's profile runs first.
    raw = await AsyncSandbox.connect(
        info.id, api_key=e2b_api_key, api_url=emulator.url, sandbox_url=emulator.url
    )
    with pytest.raises(CommandExitException) as ran:
        await raw.commands.run("echo reached", user="user", timeout=20)
    assert ran.value.exit_code == 7 and "PROFILE-RAN" in ran.value.stdout

    result = await backend.run(
        info.id, 'echo "home=$HOME"; cd; pwd; hello-tool; echo "bash_env=${BASH_ENV-unset}"', timeout_s=20
    )
    assert result.ok, result
    assert "PROFILE-RAN" not in result.stdout
    home_line, pwd_line, tool_line, env_line = result.stdout.splitlines()
    assert home_line == f"home={pwd_line}"  # HOME is the user's real home again
    assert tool_line == "hello-from-local-bin"  # ~/.local/bin is on PATH, as the stock profile puts it
    assert env_line == "bash_env=unset"
    await backend.kill(info.id)


async def test_a_profile_that_floods_forever_does_not_touch_operator_commands(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str, tmp_path: Path
) -> None:
    emulator = e2b_emulator_factory(
        api_key=e2b_api_key, home_template=_hostile_home(tmp_path, "while :; do echo flood; done\n")
    )
    backend = backend_for(emulator, e2b_api_key)
    info = await backend.create("base", {"uid": "flood-rc"}, timeout_s=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await backend.run(info.id, "echo fine", timeout_s=20)
    assert (result.exit_code, result.stdout) == (0, "fine\n")
    assert loop.time() - started < 10
    await backend.kill(info.id)


FIFTY_MIB = 50 * 1024 * 1024
# 800 x 64 KiB = 50 MiB on stdout, counting progress in a file; never finishes if killed midway.
_FLOOD_50_MIB = (
    "i=0; while [ $i -lt 800 ]; do head -c 65536 /dev/zero | tr '\\0' a; i=$((i+1)); "
    "echo $i > ~/progress.new && mv ~/progress.new ~/progress; done; touch ~/finished"
)


async def test_a_command_printing_50_mib_is_killed_at_the_cap_with_bounded_memory(
    emulator: EmulatorThread, e2b_api_key: str
) -> None:
    cap = 1024 * 1024
    backend = backend_for(emulator, e2b_api_key, output_limit_bytes=cap)
    info = await backend.create("base", {"uid": "flood"}, timeout_s=120)
    assert (await backend.run(info.id, "echo 0 > ~/progress; rm -f ~/finished")).ok

    # Peak RSS of this whole process (the emulator's server thread included). tracemalloc would be
    # finer, but crashes intermittently with the SDK's native transport threads.
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(OutputLimitExceeded) as flood:
        await backend.run(info.id, _FLOOD_50_MIB, timeout_s=60)
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    err = flood.value
    assert (err.reason, err.transient, err.sandbox_id) == ("OutputLimitExceeded", False, info.id)
    assert "stdout" in err.message and str(cap) in err.message
    assert rss_growth < 24 * 1024 * 1024, rss_growth

    # The command was killed: it stopped early and never finished.
    await asyncio.sleep(1.0)
    first = await backend.run(info.id, "cat ~/progress; test -e ~/finished && echo finished || true")
    await asyncio.sleep(1.0)
    second = await backend.run(info.id, "cat ~/progress")
    assert "finished" not in first.stdout
    written = int(first.stdout.split()[0])
    assert written == int(second.stdout.split()[0])  # no longer running
    # Killed soon after the cap: the sandbox never got to print more than a few MiB of the 50
    # (it writes only as fast as the operator reads), so the cap error came long before 50 MiB.
    assert 16 <= written < 128, written
    await backend.kill(info.id)


async def test_an_endless_stderr_flood_is_cut_too_and_the_sandbox_stays_usable(
    emulator: EmulatorThread, e2b_api_key: str
) -> None:
    backend = backend_for(emulator, e2b_api_key, output_limit_bytes=64 * 1024)
    info = await backend.create("base", {"uid": "flood-err"}, timeout_s=60)
    with pytest.raises(OutputLimitExceeded) as flood:
        await backend.run(info.id, "yes err >&2", timeout_s=30)
    assert "stderr" in flood.value.message
    small = await backend.run(info.id, "head -c 60000 /dev/zero | tr '\\0' b; echo; echo done >&2")
    assert small.ok and len(small.stdout) == 60001 and small.stderr == "done\n"
    await backend.kill(info.id)
