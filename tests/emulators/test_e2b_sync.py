"""The E2B emulator through the official synchronous SDK: life cycle, commands, files, isolation."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from e2b import CommandExitException, Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import AuthenticationException, NotFoundException

from swarm_testbed.e2b import EmulatorThread

pytestmark = pytest.mark.timeout(60)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, only not yet reaped
    except OSError:
        return False


def test_sandbox_life_cycle(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create(
        template="base", timeout=120, metadata={"owner": "t1"}, envs={"FROM_SANDBOX": "s"}
    )
    try:
        result = sandbox.commands.run(
            "echo out; echo err >&2; echo $FROM_SANDBOX $FROM_CMD; pwd", envs={"FROM_CMD": "c"}
        )
        assert result.exit_code == 0
        assert result.stdout == "out\ns c\n/home/user\n"
        assert result.stderr == "err\n"

        assert sandbox.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
        # envd fills E2B_SANDBOX_ID asynchronously after start (e2b-dev/infra envd init.go, mmds.go).
        assert _wait_for(
            lambda: (
                sandbox.commands.run("echo $HOME $E2B_SANDBOX_ID").stdout.split()
                == ["/home/user", sandbox.sandbox_id]
            )
        )

        with pytest.raises(CommandExitException) as failed:
            sandbox.commands.run("echo partial; exit 3")
        assert failed.value.exit_code == 3
        assert failed.value.stdout == "partial\n"

        handle = sandbox.commands.run("sleep 30", background=True)
        assert handle.pid in [p.pid for p in sandbox.commands.list()]
        assert handle.kill() is True
        with pytest.raises(CommandExitException):
            handle.wait()
        assert handle.pid not in [p.pid for p in sandbox.commands.list()]
        assert sandbox.commands.kill(handle.pid) is False

        sandbox.files.write("/home/user/notes/a.txt", "hello")
        assert sandbox.files.read("notes/a.txt") == "hello"
        assert sandbox.commands.run("cat ~/notes/a.txt").stdout == "hello"
        assert sandbox.files.exists("/home/user/notes") is True
        assert [e.name for e in sandbox.files.list("/home/user/notes")] == ["a.txt"]
        assert sandbox.files.make_dir("/home/user/notes") is False
        sandbox.files.rename("/home/user/notes/a.txt", "/home/user/b.txt")
        sandbox.files.remove("/home/user/notes")
        assert sandbox.files.exists("/home/user/notes") is False
        assert sandbox.files.read("/home/user/b.txt") == "hello"
        with pytest.raises(NotFoundException):
            sandbox.files.read("/home/user/missing")

        before = sandbox.get_info().end_at
        sandbox.set_timeout(600)
        after = sandbox.get_info().end_at
        assert after - before > datetime.timedelta(seconds=400)

        assert sandbox.pause() is True
        assert Sandbox.get_info(sandbox.sandbox_id).state == SandboxState.PAUSED
        paused = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()
        assert [s.sandbox_id for s in paused] == [sandbox.sandbox_id]
        resumed = Sandbox.connect(sandbox.sandbox_id, timeout=60)
        assert resumed.get_info().state == SandboxState.RUNNING
        assert resumed.commands.run("cat ~/b.txt").stdout == "hello"
        assert resumed.pause() is True
        assert Sandbox.pause(sandbox.sandbox_id) is False  # already paused: 409
        Sandbox.connect(sandbox.sandbox_id)
    finally:
        assert sandbox.kill() is True
    assert Sandbox.kill(sandbox.sandbox_id) is False
    assert sandbox.is_running() is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sandbox.sandbox_id)


def test_list_filters_by_metadata_and_pages(e2b_env: EmulatorThread) -> None:
    tricky = {"team name": "a/b=c&d", "run": "x y/z"}
    wanted = Sandbox.create(timeout=60, metadata=tricky)
    others = [Sandbox.create(timeout=60, metadata={"team name": "other", "n": str(i)}) for i in range(2)]

    found = Sandbox.list(query=SandboxQuery(metadata=tricky)).next_items()
    assert [s.sandbox_id for s in found] == [wanted.sandbox_id]
    assert found[0].metadata == tricky
    assert Sandbox.list(query=SandboxQuery(metadata={"team name": "a/b"})).next_items() == []

    pager = Sandbox.list(limit=2)
    seen = []
    while pager.has_next:
        seen.append([s.sandbox_id for s in pager.next_items()])
    assert [len(page) for page in seen] == [2, 1]
    assert sorted(sum(seen, [])) == sorted(s.sandbox_id for s in [wanted, *others])


def test_expiry_kills_sandbox_and_its_processes(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create(timeout=1)
    handle = sandbox.commands.run("sleep 60", background=True)
    assert _alive(handle.pid)
    assert _wait_for(
        lambda: not any(s.sandbox_id == sandbox.sandbox_id for s in Sandbox.list().next_items()), timeout=5
    )
    assert _wait_for(lambda: not _alive(handle.pid))
    assert sandbox.is_running() is False
    dead = _get_json(f"{e2b_env.url}/_emulator/sandboxes/{sandbox.sandbox_id}")
    assert dead["state"] == "expired" and dead["alive"] is False


def test_wrong_api_key_is_refused(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    strict = e2b_emulator_factory(api_key=e2b_api_key)
    urls = {"api_url": strict.url, "sandbox_url": strict.url}
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="e2b_" + "f" * 40, **urls)
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key="not-a-key", **urls).next_items()
    lenient = e2b_emulator_factory()
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="e2b_short", api_url=lenient.url, sandbox_url=lenient.url)
    Sandbox.create(api_key=e2b_api_key, timeout=30, **urls).kill()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tmux_servers_are_private_and_die_with_their_sandbox(e2b_env: EmulatorThread) -> None:
    # A template of one's own (any non-stock name) has the host's tools; stock `base` has no tmux.
    first, second = Sandbox.create("with-tmux", timeout=60), Sandbox.create("with-tmux", timeout=60)
    try:
        first.commands.run("tmux new-session -d -s agents 'sleep 300'")
        pid = int(first.commands.run("tmux display-message -p -t agents '#{pid}'").stdout)
        assert "agents" in first.commands.run("tmux ls").stdout
        assert _alive(pid)
        with pytest.raises(CommandExitException) as other:
            second.commands.run("tmux ls")
        assert "no server running" in other.value.stderr or "error connecting" in other.value.stderr
        # The home and /tmp of one sandbox are not the other's.
        first.files.write("/tmp/only-here", "1")
        assert second.files.exists("/tmp/only-here") is False
        assert "only-here" not in second.commands.run("ls -A /tmp").stdout
        assert "only-here" in first.commands.run("ls -A /tmp").stdout
    finally:
        first.kill()
        second.kill()
    assert _wait_for(lambda: not _alive(pid))


def test_inspection_api_records_requests_and_commands(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create(
        timeout=60, metadata={"k": "v"}, envs={"PUBLIC": "1"}, allow_internet_access=False
    )
    sandbox.commands.run("echo hi", envs={"TOKEN_VIA_ENV": "secret"})
    view = _get_json(f"{e2b_env.url}/_emulator/sandboxes/{sandbox.sandbox_id}")
    assert view["envVarKeys"] == ["PUBLIC"] and view["envVars"] == {"PUBLIC": "1"}
    assert view["metadata"] == {"k": "v"}
    assert view["createRequest"]["allow_internet_access"] is False
    assert view["commands"][0]["argv"] == ["/bin/bash", "-l", "-c", "echo hi"]
    assert view["commands"][0]["envs"] == {"TOKEN_VIA_ENV": "secret"}
    assert not any("secret" in arg for arg in view["commands"][0]["argv"])

    # The SDK's MCP start (template mcp-gateway, `mcp-gateway --config`) is recorded like any other.
    Sandbox.create(timeout=60, mcp={"exa": {"apiKey": "mcp-secret"}}).kill()
    everything = _get_json(f"{e2b_env.url}/_emulator/sandboxes?all=1")
    assert any(s["createRequest"].get("mcp") == {"exa": {"apiKey": "mcp-secret"}} for s in everything)

    stats = _get_json(f"{e2b_env.url}/_emulator/stats")
    assert stats["operations"]["sandbox.create"] == 2
    assert stats["operations"]["process.start"] >= 2
    assert stats["total"] == stats["control"] + stats["envd"]

    request = urllib.request.Request(f"{e2b_env.url}/_emulator/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    assert _get_json(f"{e2b_env.url}/_emulator/sandboxes") == []
    assert sandbox.is_running() is False
    assert _get_json(f"{e2b_env.url}/_emulator/stats")["control"] == 0


def test_quota_answers_429_like_e2b(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    from e2b.exceptions import RateLimitException

    emulator = e2b_emulator_factory(quota=1)
    opts = {"api_key": e2b_api_key, "api_url": emulator.url, "sandbox_url": emulator.url}
    first = Sandbox.create(timeout=30, **opts)
    with pytest.raises(RateLimitException):
        Sandbox.create(timeout=30, **opts)
    first.kill()
    Sandbox.create(timeout=30, **opts).kill()


def test_emulator_exit_kills_every_sandbox(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory()
    sandbox = Sandbox.create(timeout=60, api_key=e2b_api_key, api_url=emulator.url, sandbox_url=emulator.url)
    pid = sandbox.commands.run("sleep 60", background=True).pid
    home = emulator.inspect()[0]["home"]
    emulator.stop()
    assert _wait_for(lambda: not _alive(pid))
    assert not os.path.exists(home)
