"""The seam between the operator and whatever runs its sandboxes.

Lifecycle code depends on :class:`SandboxBackend` only, never on the E2B SDK: the SDK's types stay
inside ``_e2b.py`` and its private helpers, and what crosses the seam is plain frozen data
(:class:`SandboxInfo`, :class:`CommandResult`) and the classified errors of ``_errors.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from ._retry import RetryPolicy

__all__ = [
    "BackendTimeouts",
    "EgressPolicy",
    "CallObserver",
    "CommandResult",
    "SandboxBackend",
    "SandboxInfo",
    "SandboxState",
    "StateFilter",
]

SandboxState = Literal["running", "paused"]
StateFilter = Literal["running", "paused", "both"]


@dataclass(frozen=True)
class SandboxInfo:
    """What the operator needs to know about one sandbox.

    After ``create`` the times are the client's estimate (now, now + timeout): the lease renewal
    corrects ``end_at`` anyway. ``list``/``get`` report the service's own values.

    ``vcpu``/``memory_mib`` are the sandbox's allocated size (what E2B bills for): E2B's create
    answer does not carry them, so ``create`` asks once more (one ``get``); ``None`` when that
    answer was not had (the cost ledger then keeps the last known size, see ``swarm_operator.cost``).
    """

    id: str
    template: str
    metadata: Mapping[str, str]
    started_at: datetime.datetime
    end_at: datetime.datetime
    state: SandboxState
    vcpu: int | None = None
    memory_mib: int | None = None


@dataclass(frozen=True)
class EgressPolicy:
    """Where a sandbox may connect to, enforced by E2B outside the sandbox (set at create).

    E2B lets ``allow_out`` win over ``deny_out`` and over ``allow_internet=False``. This is the
    policy as meant; the backend writes it into the request E2B accepts (``network_request``).
    Host names in ``allow_out`` filter only what E2B's egress proxy sees (HTTP Host, TLS SNI).
    """

    allow_internet: bool = True
    allow_out: tuple[str, ...] = ()
    deny_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandResult:
    """The outcome of a script. A non-zero ``exit_code`` is a result, not an error."""

    exit_code: int
    stdout: str
    stderr: str = field(default="")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class BackendTimeouts:
    """Per-call time limits, in seconds. Every method also accepts an override for one call.

    ``control_s`` bounds one control-plane request (list page, get, kill, timeout, pause, connect);
    ``create_s`` a create, which includes booting the sandbox; ``command_s`` is the default run time
    of a script and ``command_start_s`` the wait until envd confirms the script started.
    ``resume_s`` bounds a resume (restoring memory takes about a second per GiB).
    """

    control_s: float = 15.0
    create_s: float = 30.0
    command_s: float = 300.0
    command_start_s: float = 15.0
    resume_s: float = 60.0


class CallObserver(Protocol):
    """Told about every call to E2B (each attempt, each list page): metrics plug in here.

    ``outcome`` is ``"ok"`` or the error's ``reason`` (``RateLimited``, ``BackendUnavailable``…).
    It must be cheap and must not raise; the backend ignores what it returns.
    """

    def __call__(self, operation: str, outcome: str, seconds: float) -> None: ...


@runtime_checkable
class SandboxBackend(Protocol):
    """Runs sandboxes for one API key. Every method is async, bounded in time, and raises only
    :class:`~swarm_operator.backend.BackendError` subclasses.

    Secrets reach a sandbox only through ``run``'s ``stdin`` (or ``envs``, which stay visible in
    the command's environment while it runs), never through a script's text: scripts are logged
    on failure and visible in the sandbox's process list.
    """

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
        """Start a sandbox that lives ``timeout_s`` seconds unless renewed, with ``network`` as its
        egress policy (None: E2B's default, everything allowed).

        ``envs`` become the sandbox's own environment, visible to every process in it for its whole
        life: they must not be secret (secrets go to ``run``'s ``stdin``, per command).

        Not idempotent: a create that fails *ambiguously* (timeout, dropped connection, 5xx other
        than 503) may have started a sandbox, so it is never repeated here. It raises
        :class:`BackendUnavailable`, and the caller finds such a sandbox by its metadata tags
        (adopt-by-uid) before creating again. Clean refusals (429 rate limit, 503 busy) are retried.
        ``idempotency_key`` is sent along for services that deduplicate by it.
        """
        ...

    async def list(
        self,
        metadata: Mapping[str, str],
        state: StateFilter = "both",
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[SandboxInfo]:
        """Every sandbox whose metadata includes all of ``metadata``, across all pages."""
        ...

    async def get(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> SandboxInfo:
        """The sandbox's current info; :class:`SandboxNotFound` if it is gone."""
        ...

    async def kill(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        """Kill it. ``False`` if it was already gone, which is not an error."""
        ...

    async def set_timeout(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Let the sandbox live ``timeout_s`` seconds from now (the lease renewal)."""
        ...

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
        """Run ``script`` with bash as ``user`` (None: the backend's sandbox user, an unprivileged
        account) in the user's home and wait for it to finish. No ``~/`` shell startup file
        (.bash_profile, .profile, .bashrc, BASH_ENV) runs first: they belong to the agents.

        Each output stream is kept up to the backend's byte cap; a command printing more is killed
        and :class:`OutputLimitExceeded` raised, so a sandbox cannot grow the operator's memory.

        The script must not contain secrets. Pass them on ``stdin`` (sent once, right after the
        command starts; the script must read it): ``envs`` are visible in the command's environment
        (``/proc/PID/environ``, envd's process list) for as long as it runs. Transient failures are retried,
        so the script must be idempotent; pass ``retry=NO_RETRY`` when it is not. Running on a
        paused sandbox resumes it (the SDK's connect does).
        """
        ...

    async def pause(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        """Pause it. ``False`` if it was already paused."""
        ...

    async def resume(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Resume a paused sandbox (a running one keeps running) to live ``timeout_s`` seconds.

        A running sandbox's timeout is only ever lengthened by this, never shortened."""
        ...

    async def aclose(self) -> None:
        """Forget cached connections. The backend stays usable; it reconnects on demand."""
        ...
