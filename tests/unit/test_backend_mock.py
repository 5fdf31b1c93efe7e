"""MockBackend, the seam's public in-memory implementation: it keeps the SandboxBackend contract."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pytest

from swarm_operator.backend import (
    BackendUnavailable,
    CommandResult,
    MockBackend,
    SandboxBackend,
    SandboxInfo,
    SandboxNotFound,
)


def test_it_is_a_sandbox_backend_with_the_same_signatures() -> None:
    backend = MockBackend()
    assert isinstance(backend, SandboxBackend)
    for name, member in inspect.getmembers(SandboxBackend, inspect.iscoroutinefunction):
        if not name.startswith("_"):
            assert inspect.signature(getattr(MockBackend, name)) == inspect.signature(member), name


async def test_sandboxes_are_records_and_gone_ones_are_not_found() -> None:
    backend = MockBackend()
    made = await backend.create("base", {"swarm-uid": "u1"}, timeout_s=60)
    other = backend.add({"swarm-uid": "u2"}, state="paused")
    assert [s.id for s in await backend.list({"swarm-uid": "u1"})] == [made.id]
    assert [s.id for s in await backend.list({}, "paused")] == [other]
    assert await backend.pause(made.id) is True and await backend.pause(made.id) is False
    await backend.resume(made.id, 600)
    assert (await backend.get(made.id)).state == "running"
    assert await backend.kill(made.id) is True and await backend.kill(made.id) is False
    assert backend.killed == [made.id, made.id]
    for call in (backend.get(made.id), backend.set_timeout(made.id, 5), backend.run(made.id, "true")):
        with pytest.raises(SandboxNotFound):
            await call


async def test_scripts_go_to_the_handler_and_errors_are_injected_by_method() -> None:
    async def handler(sandbox: SandboxInfo, script: str, envs: Mapping[str, str]) -> CommandResult:
        return CommandResult(3, f"{sandbox.id}:{script}:{envs['K']}")

    backend = MockBackend(handler, errors={"list": BackendUnavailable("E2B answered 502")})
    sid = backend.add({})
    assert await backend.run(sid, "echo", {"K": "v"}) == CommandResult(3, f"{sid}:echo:v")
    assert backend.scripts == [(sid, "echo")]
    with pytest.raises(BackendUnavailable):
        await backend.list({})
    del backend.errors["list"]
    assert len(await backend.list({})) == 1
