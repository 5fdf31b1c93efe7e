"""An in-memory :class:`SandboxBackend` for tests of code above the seam, like httpx's MockTransport.

Why here and not in the test bed: it is an implementation *of our seam* (the test bed emulates other
people's services on the wire and imports nothing of ours), it is tiny and dependency-free, and
shipping it beside the Protocol lets anyone test the lifecycle, or code built on it, without E2B,
an emulator or a network — mypy checks it against :class:`SandboxBackend` with the package.

Sandboxes are records; scripts are answered by ``handler`` (default: exit 0, no output); every call
that names a sandbox which is not there raises :class:`SandboxNotFound`, as E2B's 404 does. A test
makes an operation fail by putting a :class:`BackendError` in ``errors`` under the method's name.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._errors import BackendError, SandboxNotFound
from ._protocol import CommandResult, EgressPolicy, SandboxInfo, SandboxState, StateFilter
from ._retry import RetryPolicy

__all__ = ["MockBackend", "ScriptHandler"]

#: Answers ``run``: (the sandbox, the script, its envs) -> the result, plain or awaited.
ScriptHandler = Callable[[SandboxInfo, str, Mapping[str, str]], CommandResult | Awaitable[CommandResult]]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class MockBackend:
    """Sandboxes in a dict, ids ``sbx-1``, ``sbx-2``…; ``killed`` and ``timeouts`` record those calls."""

    def __init__(
        self,
        handler: ScriptHandler | None = None,
        *,
        errors: Mapping[str, BackendError] | None = None,
    ) -> None:
        self.handler = handler
        #: method name -> the error every call of it raises (until the test removes it).
        self.errors: dict[str, BackendError] = dict(errors or {})
        self.sandboxes: dict[str, SandboxInfo] = {}
        #: Every id ``kill`` was called with, gone ones included.
        self.killed: list[str] = []
        #: Every (id, seconds) ``set_timeout`` accepted.
        self.timeouts: list[tuple[str, int]] = []
        #: Every (id, script) ``run`` was called with.
        self.scripts: list[tuple[str, str]] = []
        #: (sandbox id, bytes) of every command that was handed input on its stdin (the setup
        #: script's secrets: see bootstrap.secret_input).
        self.stdins: list[tuple[str, bytes]] = []
        self._ids = itertools.count(1)

    def add(
        self,
        metadata: Mapping[str, str],
        started_at: datetime.datetime | None = None,
        *,
        template: str = "base",
        timeout_s: int = 600,
        state: SandboxState = "running",
    ) -> str:
        """A sandbox that already exists (as if made earlier, or by another replica); its id."""
        sandbox_id = f"sbx-{next(self._ids)}"
        start = started_at or _now()
        self.sandboxes[sandbox_id] = SandboxInfo(
            sandbox_id, template, dict(metadata), start, start + datetime.timedelta(seconds=timeout_s), state
        )
        return sandbox_id

    def _check(self, operation: str, sandbox_id: str | None = None) -> SandboxInfo | None:
        error = self.errors.get(operation)
        if error is not None:
            raise error
        if sandbox_id is None:
            return None
        try:
            return self.sandboxes[sandbox_id]
        except KeyError:
            raise SandboxNotFound(f"sandbox {sandbox_id} is gone", sandbox_id=sandbox_id) from None

    def _replace(self, sandbox_id: str, **changes: Any) -> None:
        old = self.sandboxes[sandbox_id]
        self.sandboxes[sandbox_id] = dataclasses.replace(old, **changes)

    async def create(
        self,
        template: str,
        metadata: Mapping[str, str],
        envs: Mapping[str, str] | None = None,
        *,
        timeout_s: int,
        network: EgressPolicy | None = None,
        idempotency_key: str | None = None,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> SandboxInfo:
        self._check("create")
        return self.sandboxes[self.add(metadata, template=template, timeout_s=timeout_s)]

    async def list(
        self,
        metadata: Mapping[str, str],
        state: StateFilter = "both",
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[SandboxInfo]:
        self._check("list")
        return [
            s
            for s in self.sandboxes.values()
            if state in ("both", s.state) and all(s.metadata.get(k) == v for k, v in metadata.items())
        ]

    async def get(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> SandboxInfo:
        info = self._check("get", sandbox_id)
        assert info is not None
        return info

    async def kill(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        self._check("kill")
        self.killed.append(sandbox_id)
        return self.sandboxes.pop(sandbox_id, None) is not None

    async def set_timeout(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._check("set_timeout", sandbox_id)
        self.timeouts.append((sandbox_id, timeout_s))
        self._replace(sandbox_id, end_at=_now() + datetime.timedelta(seconds=timeout_s))

    async def run(
        self,
        sandbox_id: str,
        script: str,
        envs: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        user: str | None = None,
        retry: RetryPolicy | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        info = self._check("run", sandbox_id)
        assert info is not None
        self.scripts.append((sandbox_id, script))
        if stdin is not None:
            self.stdins.append((sandbox_id, stdin))
        if info.state == "paused":  # as the SDK's connect does
            self._replace(sandbox_id, state="running")
        if self.handler is None:
            return CommandResult(0, "")
        result = self.handler(self.sandboxes[sandbox_id], script, dict(envs or {}))
        return await result if inspect.isawaitable(result) else result

    async def pause(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        info = self._check("pause", sandbox_id)
        assert info is not None
        self._replace(sandbox_id, state="paused")
        return info.state == "running"

    async def resume(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        info = self._check("resume", sandbox_id)
        assert info is not None
        end_at = max(info.end_at, _now() + datetime.timedelta(seconds=timeout_s))  # only lengthened
        self._replace(sandbox_id, state="running", end_at=end_at)

    async def aclose(self) -> None:
        return None
