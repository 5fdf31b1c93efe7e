"""The E2B emulator through the official async SDK: concurrency, streaming, seeded faults."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import pytest
from e2b import AsyncSandbox, CommandExitException, SandboxQuery
from e2b.exceptions import (
    RateLimitException,
    SandboxException,
    SandboxNotRunningException,
    TimeoutException,
)

from swarm_testbed.e2b import EmulatorThread
from swarm_testbed.e2b._knobs import Knobs

pytestmark = pytest.mark.timeout(60)


async def test_async_life_cycle(e2b_env: EmulatorThread) -> None:
    sandbox = await AsyncSandbox.create(timeout=60, metadata={"flavour": "async"})
    chunks: list[str] = []
    result = await sandbox.commands.run("for i in 1 2 3; do echo $i; done", on_stdout=chunks.append)
    assert result.stdout == "1\n2\n3\n" and "".join(chunks) == "1\n2\n3\n"
    with pytest.raises(CommandExitException) as failed:
        await sandbox.commands.run("echo bad >&2; exit 7")
    assert failed.value.exit_code == 7 and failed.value.stderr == "bad\n"

    await sandbox.files.write("/home/user/data.bin", b"\x00\x01binary")
    assert await sandbox.files.read("/home/user/data.bin", format="bytes") == bytearray(b"\x00\x01binary")

    handle = await sandbox.commands.run("read line; echo got:$line", background=True, stdin=True)
    await sandbox.commands.send_stdin(handle.pid, "ping\n")
    assert (await handle.wait()).stdout == "got:ping\n"

    listed = await (AsyncSandbox.list(query=SandboxQuery(metadata={"flavour": "async"}))).next_items()
    assert [s.sandbox_id for s in listed] == [sandbox.sandbox_id]
    await sandbox.set_timeout(120)
    assert await sandbox.kill() is True
    assert await AsyncSandbox.kill(sandbox.sandbox_id) is False
    assert await sandbox.is_running() is False


async def test_killing_a_sandbox_ends_its_running_command(e2b_env: EmulatorThread) -> None:
    sandbox = await AsyncSandbox.create(timeout=60)
    handle = await sandbox.commands.run("sleep 30", background=True)
    await AsyncSandbox.kill(sandbox.sandbox_id)
    with pytest.raises(SandboxNotRunningException):
        await handle.wait()


async def test_ten_concurrent_commands_in_one_sandbox(e2b_env: EmulatorThread) -> None:
    sandbox = await AsyncSandbox.create(timeout=60)
    started = time.monotonic()
    results = await asyncio.gather(*(sandbox.commands.run(f"sleep 0.5; echo {i}") for i in range(10)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(10)]
    assert time.monotonic() - started < 4  # concurrent, not one after another
    await sandbox.kill()


async def test_five_concurrent_sandboxes(e2b_env: EmulatorThread) -> None:
    sandboxes = await asyncio.gather(
        *(AsyncSandbox.create(timeout=60, metadata={"i": str(i)}) for i in range(5))
    )
    assert len({s.sandbox_id for s in sandboxes}) == 5
    # envd fills E2B_SANDBOX_ID only after start (e2b-dev/infra envd init.go, mmds.go): wait it out.
    await asyncio.sleep(e2b_env.emulator.knobs.identity_delay_seconds)
    outputs = await asyncio.gather(
        *(s.commands.run("echo $E2B_SANDBOX_ID > ~/me; cat ~/me") for s in sandboxes)
    )
    assert [o.stdout.strip() for o in outputs] == [s.sandbox_id for s in sandboxes]
    assert len(await AsyncSandbox.list().next_items()) == 5
    assert all(await asyncio.gather(*(s.kill() for s in sandboxes)))
    assert await AsyncSandbox.list().next_items() == []


async def test_seeded_faults_surface_as_documented_sdk_errors(
    e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(
        fault_rate=0.2, seed=11, fault_hang_seconds=1.0, fault_operations=["sandbox.get", "process.start"]
    )
    opts = {"api_key": e2b_api_key, "api_url": emulator.url, "sandbox_url": emulator.url}
    sandbox = await AsyncSandbox.create(timeout=60, **opts)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(30):
        try:
            await AsyncSandbox.get_info(sandbox.sandbox_id, request_timeout=3, **opts)
            outcomes["ok"] += 1
        except RateLimitException:
            outcomes["429"] += 1
        except SandboxException as exc:
            outcomes[str(getattr(exc, "status_code", "other"))] += 1
        except Exception as exc:  # dropped connections surface as the HTTP stack's own errors
            outcomes[type(exc).__name__] += 1
        try:
            await sandbox.commands.run("true", timeout=5)
            outcomes["cmd-ok"] += 1
        except (RateLimitException, TimeoutException, SandboxException) as exc:
            outcomes[f"cmd-{type(exc).__name__}"] += 1
    stats = emulator.emulator.stats.snapshot()
    assert set(stats["faults"]) == {"429", "500", "502", "timeout", "drop"}
    assert 0.1 < stats["faultsTotal"] / stats["total"] < 0.35
    assert outcomes["ok"] > 15 and outcomes["cmd-ok"] > 15
    seen = {  # each injected kind, as the SDK reports it (control plane or envd)
        "429": outcomes["429"] + outcomes["cmd-RateLimitException"],
        "500": outcomes["500"] + outcomes["cmd-SandboxException"],
        "502": outcomes["502"] + outcomes["cmd-SandboxUnreachableException"],
        "timeout": outcomes["504"] + outcomes["ReadTimeout"] + outcomes["cmd-TimeoutException"],
        "drop": outcomes["RemoteProtocolError"] + outcomes["cmd-SandboxUnreachableException"],
    }
    assert all(seen.values()), outcomes
    await sandbox.kill()

    # The same seed draws the same faults in the same order.
    one, two = (Knobs(fault_rate=0.2, seed=11) for _ in range(2))
    first = [one.draw_fault("sandbox.get") for _ in range(50)]
    assert first == [two.draw_fault("sandbox.get") for _ in range(50)] and any(first)
