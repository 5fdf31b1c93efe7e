"""The E2B implementation of :class:`SandboxBackend`, over the official async SDK.

One :class:`E2BBackend` per API key, shared by every resource using that key (see
:class:`BackendPool`). It keeps one SDK sandbox object per sandbox id: that object carries the envd
access token a ``create`` or ``connect`` returned, so a ``run`` right after ``create`` goes straight
to envd — one round trip — and later runs skip the ``connect`` the SDK would otherwise need.

Every SDK call goes through :meth:`SdkCalls._call` (``_calls.py``), which bounds it in time,
retries it, reports it to the observer, logs it and classifies whatever the SDK raised; the shell a
command gets and the cap on its output are ``_command.py``'s, the egress rules ``_egress.py``'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

from e2b import AsyncSandbox, SandboxQuery
from e2b import SandboxState as _SdkState
from e2b.exceptions import AuthenticationException
from e2b.sandbox.commands.command_handle import CommandExitException

from ._calls import SAFETY_MARGIN_S, SdkCalls
from ._classify import classify
from ._command import CappedStream, OutputFlood, run_capped
from ._egress import network_request
from ._errors import (
    PROGRAMMING_ERRORS,
    BackendError,
    BackendUnavailable,
    CommandTimeout,
    OutputLimitExceeded,
    SandboxNotFound,
)
from ._protocol import CommandResult, EgressPolicy, SandboxInfo, StateFilter
from ._retry import NO_RETRY, RetryPolicy

__all__ = ["E2BBackend"]

logger = logging.getLogger("swarm_operator.backend")

_PAGE_SIZE = 100  # E2B's maximum page size for listing sandboxes.

_STATES: dict[str, list[_SdkState] | None] = {
    "running": [_SdkState.RUNNING],
    "paused": [_SdkState.PAUSED],
    "both": [_SdkState.RUNNING, _SdkState.PAUSED],
}


class E2BBackend(SdkCalls):
    """Sandboxes of one E2B API key. Create through :meth:`BackendPool.for_key` to share it.

    ``api_url``/``sandbox_url`` default to the SDK's environment (``E2B_API_URL``,
    ``E2B_SANDBOX_URL``, else E2B's cloud).
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
        egress = network_request(network)

        async def attempt(budget: float) -> AsyncSandbox:
            return await AsyncSandbox.create(
                template=template,
                timeout=timeout_s,
                metadata=dict(metadata),
                envs=dict(envs) if envs else None,
                idempotency_key=idempotency_key,
                **egress,
                **self._opts(budget),
            )

        # Only clean refusals are repeated: an ambiguous failure may have started a sandbox,
        # which the caller's adopt-by-metadata finds; a second create would leak one.
        sandbox = await self._call(
            "create",
            None,
            attempt,
            call_timeout_s or self.timeouts.create_s,
            retry,
            should_retry=lambda err: not err.ambiguous,
        )
        self._remember(sandbox)
        now = datetime.datetime.now(datetime.UTC)
        logger.info(
            "created sandbox %s from template %s",
            sandbox.sandbox_id,
            template,
            extra={"operation": "create", "sandbox_id": sandbox.sandbox_id},
        )
        vcpu, memory_mib = await self._size(sandbox.sandbox_id)
        return SandboxInfo(
            id=sandbox.sandbox_id,
            template=template,
            metadata=dict(metadata),
            started_at=now,
            end_at=now + datetime.timedelta(seconds=timeout_s),
            state="running",
            vcpu=vcpu,
            memory_mib=memory_mib,
        )

    async def _size(self, sandbox_id: str) -> tuple[int | None, int | None]:
        """The new sandbox's allocated vCPU and memory: one ``get`` (E2B's create answer, the
        ``Sandbox`` model of e2b-dev/infra's openapi.yml, has no size; ``SandboxDetail`` has
        ``cpuCount``/``memoryMB``). Not retried and never fatal: the sandbox exists and is returned
        either way, and the cost ledger prices an unknown size at the last known one."""
        try:
            info = await self.get(sandbox_id, retry=NO_RETRY)
        except BackendError as exc:
            logger.info(
                "size of sandbox %s not read (%s); priced at the last known size",
                sandbox_id,
                exc.reason,
                extra={"operation": "get", "sandbox_id": sandbox_id},
            )
            return None, None
        return info.vcpu, info.memory_mib

    async def list(
        self,
        metadata: Mapping[str, str],
        state: StateFilter = "both",
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[SandboxInfo]:
        if state not in _STATES:
            raise ValueError(f"state must be one of {sorted(_STATES)}, not {state!r}")
        paginator = AsyncSandbox.list(
            query=SandboxQuery(metadata=dict(metadata) or None, state=_STATES[state]),
            limit=_PAGE_SIZE,
            **self._opts(call_timeout_s or self.timeouts.control_s),
        )
        found: dict[str, SandboxInfo] = {}
        seen_tokens: set[str] = set()
        while paginator.has_next:
            # A failed page leaves the paginator's cursor where it was: retrying it is safe.
            page = await self._call(
                "list",
                None,
                lambda budget: paginator.next_items(request_timeout=budget),
                call_timeout_s or self.timeouts.control_s,
                retry,
            )
            for item in page:
                found[item.sandbox_id] = _info(item)  # a sandbox may move between pages
            token = paginator.next_token
            if token is not None:
                if token in seen_tokens:
                    raise BackendUnavailable(
                        "E2B returned the same list cursor twice; giving up on this listing",
                        operation="list",
                    )
                seen_tokens.add(token)
        return list(found.values())

    async def get(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> SandboxInfo:
        info = await self._call(
            "get",
            sandbox_id,
            lambda budget: AsyncSandbox.get_info(sandbox_id, **self._opts(budget)),
            call_timeout_s or self.timeouts.control_s,
            retry,
        )
        return _info(info)

    async def kill(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        self._forget(sandbox_id)
        killed: bool = await self._call(
            "kill",
            sandbox_id,
            lambda budget: AsyncSandbox.kill(sandbox_id, **self._opts(budget)),
            call_timeout_s or self.timeouts.control_s,
            retry,
        )
        logger.info(
            "killed sandbox %s" if killed else "sandbox %s was already gone",
            sandbox_id,
            extra={"operation": "kill", "sandbox_id": sandbox_id},
        )
        return killed

    async def set_timeout(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        await self._call(
            "set_timeout",
            sandbox_id,
            lambda budget: AsyncSandbox.set_timeout(sandbox_id, timeout_s, **self._opts(budget)),
            call_timeout_s or self.timeouts.control_s,
            retry,
        )

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
        command_s = self.timeouts.command_s if timeout_s is None else timeout_s
        start_s = self.timeouts.command_start_s

        async def attempt(budget: float) -> CommandResult:
            sandbox = await self._connected(sandbox_id, min(budget, self.timeouts.control_s))
            # envd enforces the command's timeout on its side; this bound holds even if it doesn't.
            bound = asyncio.timeout(command_s + SAFETY_MARGIN_S)
            started = time.monotonic()
            out, err_ = CappedStream(self.output_limit_bytes), CappedStream(self.output_limit_bytes)
            try:
                async with bound:
                    exit_code = await run_capped(
                        sandbox,
                        script,
                        envs=envs,
                        cwd=cwd,
                        user=user or self.user,
                        timeout_s=command_s,
                        start_s=start_s,
                        out=out,
                        err=err_,
                        stdin=stdin,
                    )
            except OutputFlood as flood:
                raise self._flooded(sandbox_id, flood.stream) from None
            except TimeoutError as exc:
                if not bound.expired():
                    raise
                raise _command_timeout(sandbox_id, command_s) from exc
            except CommandExitException as exit_:
                return CommandResult(exit_.exit_code, out.text(), err_.text())
            except AuthenticationException:
                self._forget(sandbox_id)  # envd refused our token: reconnect on the next try
                raise
            except PROGRAMMING_ERRORS:
                raise
            except Exception as exc:
                raise _run_failure(exc, sandbox_id, time.monotonic() - started, command_s) from exc
            return CommandResult(exit_code, out.text(), err_.text())

        # The script's own run time comes on top of the policy's budget for retries and waits.
        policy = retry or self.retry
        policy = dataclasses.replace(policy, deadline_s=policy.deadline_s + command_s + start_s)
        try:
            return await self._call("run", sandbox_id, attempt, command_s + start_s, policy)
        except SandboxNotFound:
            self._forget(sandbox_id)
            raise

    def _flooded(self, sandbox_id: str, stream: str) -> OutputLimitExceeded:
        return OutputLimitExceeded(
            f"a command in sandbox {sandbox_id} printed more than "
            f"{self.output_limit_bytes} bytes on {stream} and was killed; something "
            "in the sandbox floods its output (an edited shell startup file, a runaway tool)",
            operation="run",
            sandbox_id=sandbox_id,
        )

    async def pause(
        self,
        sandbox_id: str,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bool:
        # A paused sandbox's next resume hands out a new access token: drop the old one now.
        self._forget(sandbox_id)
        paused: bool = await self._call(
            "pause",
            sandbox_id,
            lambda budget: AsyncSandbox.pause(sandbox_id, **self._opts(budget)),
            call_timeout_s or self.timeouts.resume_s,
            retry,
        )
        return paused

    async def resume(
        self,
        sandbox_id: str,
        timeout_s: int,
        *,
        call_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._forget(sandbox_id)
        sandbox = await self._call(
            "resume",
            sandbox_id,
            lambda budget: AsyncSandbox.connect(sandbox_id, timeout=timeout_s, **self._opts(budget)),
            call_timeout_s or self.timeouts.resume_s,
            retry,
        )
        self._remember(sandbox)

    async def aclose(self) -> None:
        # The SDK's transports are process-wide pools; the per-sandbox objects hold no sockets.
        self._sandboxes.clear()


def _info(sdk_info: Any) -> SandboxInfo:
    state = getattr(sdk_info.state, "value", sdk_info.state)
    return SandboxInfo(
        id=sdk_info.sandbox_id,
        template=sdk_info.name or sdk_info.template_id,
        metadata=dict(sdk_info.metadata or {}),
        started_at=sdk_info.started_at,
        end_at=sdk_info.end_at,
        state="paused" if str(state) == "paused" else "running",
        vcpu=_count(getattr(sdk_info, "cpu_count", None)),
        memory_mib=_count(getattr(sdk_info, "memory_mb", None)),
    )


def _count(value: Any) -> int | None:
    """A size figure from E2B, or None when absent or not a sane count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _command_timeout(sandbox_id: str, command_s: float) -> CommandTimeout:
    return CommandTimeout(
        f"the command in sandbox {sandbox_id} did not finish within {command_s:g}s; "
        "raise the timeout or make the script finish sooner",
        operation="run",
        sandbox_id=sandbox_id,
    )


def _run_failure(exc: Exception, sandbox_id: str, elapsed_s: float, command_s: float) -> BackendError:
    """What a failed ``run`` attempt raises: the SDK's exception, classified, except that a
    gateway's 504 reaches the SDK as the same DEADLINE_EXCEEDED as the command's own deadline; a
    command cannot have outrun its timeout before the timeout passed, so early, it is a gateway."""
    err = classify(exc, "run", sandbox_id)
    if isinstance(err, CommandTimeout) and elapsed_s < 0.9 * command_s:
        return BackendUnavailable(
            f"a gateway in front of sandbox {sandbox_id} timed out; retrying",
            operation="run",
            sandbox_id=sandbox_id,
            ambiguous=True,
        )
    return err
