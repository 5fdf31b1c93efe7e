"""The E2B implementation of :class:`SandboxBackend`, over the official async SDK.

One :class:`E2BBackend` per API key, shared by every resource using that key (see
:class:`BackendPool`). It keeps one SDK sandbox object per sandbox id: that object carries the envd
access token a ``create`` or ``connect`` returned, so a ``run`` right after ``create`` goes straight
to envd — one round trip — and later runs skip the ``connect`` the SDK would otherwise need.

Every SDK call goes through :meth:`E2BBackend._call`, which bounds it in time, retries it per the
:class:`RetryPolicy`, reports it to the observer, logs it (sandbox id and operation, never a secret)
and turns whatever the SDK raised into a :class:`BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import ipaddress
import logging
import shlex
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from e2b import AsyncSandbox, SandboxQuery
from e2b import SandboxState as _SdkState
from e2b.exceptions import AuthenticationException
from e2b.sandbox.commands.command_handle import CommandExitException
from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

from ._errors import (
    PROGRAMMING_ERRORS,
    BackendError,
    BackendUnavailable,
    CommandTimeout,
    OutputLimitExceeded,
    SandboxNotFound,
    classify,
)
from ._protocol import BackendTimeouts, CallObserver, CommandResult, EgressPolicy, SandboxInfo, StateFilter
from ._retry import NO_RETRY, RetryPolicy, call_with_retry

__all__ = [
    "ALL_TRAFFIC",
    "BackendPool",
    "E2BBackend",
    "egress_entry_refusal",
    "key_fingerprint",
    "network_request",
]

logger = logging.getLogger("swarm_operator.backend")

T = TypeVar("T")

_PAGE_SIZE = 100  # E2B's maximum page size for listing sandboxes.
_SAFETY_MARGIN_S = 2.0  # asyncio's bound on an attempt, past the SDK's own request timeout.
_KILL_TIMEOUT_S = 5.0  # bound on killing a flooding command (envd's kill is one RPC)

#: Per stream (stdout, stderr) of one command, unless the backend is given another cap.
DEFAULT_OUTPUT_LIMIT_BYTES = 1024 * 1024

# --- how a command starts ----------------------------------------------------------------------
# The SDK's only command API, ``commands.run``, always starts ``/bin/bash -l -c CMD``
# (e2b/sandbox_async/commands/command.py: ``_start``); nothing public takes another argv. A login
# bash runs /etc/profile and then the first of ~/.bash_profile, ~/.bash_login, ~/.profile — files
# in the agents' own, writable home — *before* CMD, so wrapping CMD cannot skip them. What the
# SDK does let us choose is the environment (envd puts request envs last, and "only the last
# values of the env vars are used": e2b-dev/infra packages/envd/internal/services/process/
# handler/handler.go) and the working directory. So the shell starts with HOME pointing at a
# directory that does not exist: bash finds ``~/.*`` startup files through $HOME, so it reads
# none. The command starts in ``~`` (envd expands it to the user's real home:
# packages/envd/internal/permissions/path.go), and CMD's first line sets HOME back from there.
# BASH_ENV/ENV (read by non-interactive shells) are emptied the same way.
# /etc/profile still runs: it is root's, and an agent that rewrites it with its passwordless sudo
# owns the sandbox anyway. What keeps the operator safe from any of it is the output cap and the
# timeout below, not the absence of startup files.
_STARTUP_ENV = {"HOME": "/nonexistent/swarm-operator", "BASH_ENV": "", "ENV": ""}
# The PATH entries Debian's stock /etc/skel/.profile adds, which E2B's templates' tools rely on
# (e.g. pip --user installs in ~/.local/bin), without running the agent-editable file.
_PRELUDE = (
    "HOME=$PWD; export HOME; unset BASH_ENV ENV\n"
    'if [ -d "$HOME/bin" ]; then PATH="$HOME/bin:$PATH"; fi\n'
    'if [ -d "$HOME/.local/bin" ]; then PATH="$HOME/.local/bin:$PATH"; fi\n'
    "export PATH\n"
)


def command_line(script: str, cwd: str | None = None) -> str:
    """The CMD the backend hands the SDK for ``script``: the prelude that restores HOME and PATH
    (see above), a ``cd`` into ``cwd`` when one is given, then the script itself."""
    cd = f"cd -- {shlex.quote(cwd)} || exit 1\n" if cwd else ""
    return _PRELUDE + cd + script


class _OutputFlood(Exception):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.stream = stream


class _CappedStream:
    """One output stream of a command, kept up to ``limit`` bytes; past it, ``flooded`` is set and
    the rest is dropped unread into memory (the SDK is told ``retain_output=False``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[str] = []
        self.flooded = asyncio.Event()

    def feed(self, chunk: str) -> None:
        if self.flooded.is_set():
            return
        self.size += len(chunk.encode("utf-8", "replace"))
        if self.size > self.limit:
            self.chunks.clear()
            self.flooded.set()
            return
        self.chunks.append(chunk)

    def text(self) -> str:
        return "".join(self.chunks)


async def _wait_capped(handle: AsyncCommandHandle[None], out: _CappedStream, err: _CappedStream) -> int:
    """The command's exit code; past either stream's cap the command is killed (SIGKILL through
    envd), the stream dropped, and :class:`_OutputFlood` raised. Non-zero exits raise the SDK's
    ``CommandExitException`` as ``commands.run`` does."""
    done = asyncio.ensure_future(handle.wait())
    floods = {
        asyncio.ensure_future(out.flooded.wait()): "stdout",
        asyncio.ensure_future(err.flooded.wait()): "stderr",
    }
    try:
        finished, _ = await asyncio.wait({done, *floods}, return_when=asyncio.FIRST_COMPLETED)
        flooded = next((name for task, name in floods.items() if task in finished), None)
        if flooded is None:
            return (await done).exit_code
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_KILL_TIMEOUT_S):
                await handle.kill()
        raise _OutputFlood(flooded)
    finally:
        for task in (done, *floods):
            task.cancel()
        with contextlib.suppress(Exception):
            await handle.disconnect()
        await asyncio.gather(done, *floods, return_exceptions=True)


_STATES: dict[str, list[_SdkState] | None] = {
    "running": [_SdkState.RUNNING],
    "paused": [_SdkState.PAUSED],
    "both": [_SdkState.RUNNING, _SdkState.PAUSED],
}


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name for an API key: safe in logs, reprs and dict keys."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class _ApiKey:
    """Holds the key so that no repr, log line or traceback local shows it."""

    __slots__ = ("_value", "fingerprint")

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("an E2B API key is required")
        self._value = value
        self.fingerprint = key_fingerprint(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"<E2B API key {self.fingerprint}>"

    __str__ = __repr__


class E2BBackend:
    """Sandboxes of one E2B API key. Create through :meth:`BackendPool.for_key` to share it.

    ``api_url``/``sandbox_url`` default to the SDK's environment (``E2B_API_URL``,
    ``E2B_SANDBOX_URL``, else E2B's cloud).
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        timeouts: BackendTimeouts | None = None,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        max_cached_connections: int = 2048,
        user: str = "user",
        output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES,
    ) -> None:
        if output_limit_bytes < 1:
            raise ValueError("output_limit_bytes must be positive")
        self._key = _ApiKey(api_key)
        # What one command may print per stream before it is killed (OutputLimitExceeded): the
        # operator's memory per running command is bounded by twice this, whatever a sandbox does.
        self.output_limit_bytes = output_limit_bytes
        # Every command runs as this account unless a call names another: envd's own default is the
        # template's default user, which a custom template may have made root.
        self.user = user
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        self.timeouts = timeouts or BackendTimeouts()
        self.retry = retry or RetryPolicy()
        self._observer = observer
        self._max_cached = max_cached_connections
        # sandbox id -> SDK object holding that sandbox's envd access token (LRU-bounded).
        self._sandboxes: OrderedDict[str, AsyncSandbox] = OrderedDict()

    def __repr__(self) -> str:
        return f"<E2BBackend key={self._key.fingerprint} api_url={self._api_url or '(env)'}>"

    @property
    def key_fingerprint(self) -> str:
        return self._key.fingerprint

    # ----------------------------------------------------------------- operations

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
            bound = asyncio.timeout(command_s + _SAFETY_MARGIN_S)
            started = time.monotonic()
            out = _CappedStream(self.output_limit_bytes)
            err_ = _CappedStream(self.output_limit_bytes)
            try:
                async with bound:
                    handle = await sandbox.commands.run(
                        command_line(script, cwd),
                        background=True,
                        envs={**(dict(envs) if envs else {}), **_STARTUP_ENV},
                        cwd="~",
                        user=user or self.user,
                        timeout=command_s,
                        request_timeout=start_s,
                        on_stdout=out.feed,
                        on_stderr=err_.feed,
                        retain_output=False,
                        stdin=stdin is not None,
                    )
                    if stdin is not None:
                        # Handed over once, in one envd request, the moment the command exists: it
                        # never enters the command's environment (envd's process list, /proc). The
                        # script reads its own end marker and closes stdin itself. A failed send
                        # leaves a command waiting on stdin: it is killed before the error goes up.
                        try:
                            await handle.send_stdin(stdin, request_timeout=start_s)
                        except BaseException:
                            with contextlib.suppress(Exception):
                                await asyncio.wait_for(handle.kill(), _KILL_TIMEOUT_S)
                            raise
                    exit_code = await _wait_capped(handle, out, err_)
            except _OutputFlood as flood:
                raise OutputLimitExceeded(
                    f"a command in sandbox {sandbox_id} printed more than "
                    f"{self.output_limit_bytes} bytes on {flood.stream} and was killed; something "
                    "in the sandbox floods its output (an edited shell startup file, a runaway tool)",
                    operation="run",
                    sandbox_id=sandbox_id,
                ) from None
            except TimeoutError as exc:
                if not bound.expired():
                    raise
                raise CommandTimeout(
                    f"the command in sandbox {sandbox_id} did not finish within {command_s:g}s; "
                    "raise the timeout or make the script finish sooner",
                    operation="run",
                    sandbox_id=sandbox_id,
                ) from exc
            except CommandExitException as exit_:
                return CommandResult(exit_.exit_code, out.text(), err_.text())
            except AuthenticationException:
                self._forget(sandbox_id)  # envd refused our token: reconnect on the next try
                raise
            except PROGRAMMING_ERRORS:
                raise
            except Exception as exc:
                err = classify(exc, "run", sandbox_id)
                # A gateway's 504 reaches the SDK as the same DEADLINE_EXCEEDED as the command's
                # own deadline; a command cannot have outrun its timeout before the timeout passed.
                if isinstance(err, CommandTimeout) and time.monotonic() - started < 0.9 * command_s:
                    err = BackendUnavailable(
                        f"a gateway in front of sandbox {sandbox_id} timed out; retrying",
                        operation="run",
                        sandbox_id=sandbox_id,
                        ambiguous=True,
                    )
                raise err from exc
            return CommandResult(exit_code, out.text(), err_.text())

        # The script's own run time comes on top of the policy's budget for retries and waits.
        policy = retry or self.retry
        policy = dataclasses.replace(policy, deadline_s=policy.deadline_s + command_s + start_s)
        try:
            return await self._call("run", sandbox_id, attempt, command_s + start_s, policy)
        except SandboxNotFound:
            self._forget(sandbox_id)
            raise

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

    # ----------------------------------------------------------------- machinery

    def _opts(self, request_timeout: float) -> dict[str, Any]:
        """Connection options for one SDK call. ``retries=0``: retrying is ours to decide."""
        opts: dict[str, Any] = {
            "api_key": self._key.reveal(),
            "request_timeout": request_timeout,
            "retries": 0,
        }
        if self._api_url:
            opts["api_url"] = self._api_url
        if self._sandbox_url:
            opts["sandbox_url"] = self._sandbox_url
        return opts

    async def _connected(self, sandbox_id: str, budget: float) -> AsyncSandbox:
        """The cached SDK object for this sandbox, or a fresh one from ``connect``.

        ``connect`` is sent without a timeout so it never lengthens the lease the lifecycle
        manages (the service only ever extends a running sandbox's timeout on connect).
        """
        cached = self._sandboxes.get(sandbox_id)
        if cached is not None:
            self._sandboxes.move_to_end(sandbox_id)
            return cached
        started = time.monotonic()
        try:
            sandbox = await AsyncSandbox.connect(sandbox_id, **self._opts(budget))
        except PROGRAMMING_ERRORS:
            raise
        except Exception as exc:
            err = classify(exc, "connect", sandbox_id)
            self._observe("connect", err.reason, time.monotonic() - started)
            raise err from exc
        self._observe("connect", "ok", time.monotonic() - started)
        self._remember(sandbox)
        return sandbox

    def _remember(self, sandbox: AsyncSandbox) -> None:
        self._sandboxes[sandbox.sandbox_id] = sandbox
        self._sandboxes.move_to_end(sandbox.sandbox_id)
        while len(self._sandboxes) > self._max_cached:
            self._sandboxes.popitem(last=False)

    def _forget(self, sandbox_id: str) -> None:
        self._sandboxes.pop(sandbox_id, None)

    async def _call(
        self,
        operation: str,
        sandbox_id: str | None,
        fn: Callable[[float], Awaitable[T]],
        timeout_s: float,
        retry: RetryPolicy | None,
        *,
        should_retry: Callable[[BackendError], bool] = lambda err: True,
    ) -> T:
        async def attempt(budget: float) -> T:
            started = time.monotonic()
            try:
                async with asyncio.timeout(budget + _SAFETY_MARGIN_S):
                    result = await fn(budget)
            except PROGRAMMING_ERRORS:
                raise
            except Exception as exc:
                err = classify(exc, operation, sandbox_id)
                if err.operation == operation:  # a failed connect was observed as such already
                    self._observe(operation, err.reason, time.monotonic() - started)
                raise err from exc
            self._observe(operation, "ok", time.monotonic() - started)
            return result

        def on_retry(err: BackendError, attempt_no: int, delay: float) -> None:
            logger.warning(
                "%s on sandbox %s failed (%s), retry %d in %.2fs: %s",
                operation,
                sandbox_id or "-",
                err.reason,
                attempt_no,
                delay,
                err.message,
                extra={"operation": operation, "sandbox_id": sandbox_id, "reason": err.reason},
            )

        try:
            return await call_with_retry(
                attempt,
                policy=retry or self.retry,
                attempt_timeout_s=timeout_s,
                should_retry=should_retry,
                on_retry=on_retry,
            )
        except BackendError as err:
            logger.warning(
                "%s on sandbox %s failed: %s: %s",
                operation,
                sandbox_id or "-",
                err.reason,
                err.message,
                extra={"operation": operation, "sandbox_id": sandbox_id, "reason": err.reason},
            )
            raise

    def _observe(self, operation: str, outcome: str, seconds: float) -> None:
        logger.debug(
            "e2b %s -> %s in %.3fs",
            operation,
            outcome,
            seconds,
            extra={"operation": operation, "outcome": outcome, "seconds": seconds},
        )
        if self._observer is None:
            return
        try:
            self._observer(operation, outcome, seconds)
        except Exception:  # a broken metrics hook must never break a sandbox call
            logger.exception("the backend call observer failed")


#: E2B's "all traffic" CIDR (e2b-dev/infra packages/shared/pkg/sandbox-network/firewall.go:
#: AllInternetTrafficCIDR), the only unspecified-address entry its API accepts.
ALL_TRAFFIC = "0.0.0.0/0"
#: "This network" (RFC 1122): never a destination, and E2B refuses any CIDR whose address is
#: 0.0.0.0 other than ALL_TRAFFIC (IsSpecifiedIPOrCIDR), so complements leave it out.
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def egress_entry_refusal(entry: str, *, deny: bool) -> str | None:
    """Why E2B's API would refuse this allowOut (``deny=False``) or denyOut entry, or None.

    The rules of e2b-dev/infra packages/api/internal/handlers/sandbox_create.go
    (``validateEgressRules``) with packages/shared/pkg/sandbox-network/firewall.go: denyOut takes
    IPs/CIDRs only; allowOut IPs, CIDRs or domain names; an address or CIDR whose IP is the
    unspecified 0.0.0.0 is refused except ``0.0.0.0/0`` itself. E2B's firewall is IPv4 only
    (``AddressStringToCIDR``), so IPv6 is refused here rather than failing inside E2B.
    """
    if _is_address(entry):
        try:
            net = ipaddress.IPv4Network(entry, strict=True)
        except ValueError as exc:
            return f"{entry!r} is not a valid IPv4 address or CIDR ({exc})"
        if entry != ALL_TRAFFIC and net.network_address == ipaddress.IPv4Address(0):
            return (
                f"{entry!r} starts at the unspecified address 0.0.0.0, which E2B refuses "
                f"(only {ALL_TRAFFIC} may)"
            )
        return None
    if ":" in entry:
        return f"{entry!r}: E2B's egress firewall is IPv4 only"
    if deny:
        return f"{entry!r} is a host name; E2B denies traffic by IPv4 address or CIDR only"
    return None


def _is_address(entry: str) -> bool:
    return bool(entry) and all(c in "0123456789./" for c in entry)


def _complement(deny: list[str]) -> list[str]:
    """IPv4 space minus ``deny`` (and 0.0.0.0/8), as few CIDRs as possible."""
    holes = ipaddress.collapse_addresses([*(ipaddress.IPv4Network(d) for d in deny), _THIS_NETWORK])
    remaining = [ipaddress.IPv4Network(ALL_TRAFFIC)]
    for hole in holes:
        nxt: list[ipaddress.IPv4Network] = []
        for block in remaining:
            if hole.subnet_of(block):
                nxt.extend(block.address_exclude(hole))
            elif not block.subnet_of(hole):
                nxt.append(block)
        remaining = nxt
    return [str(n) for n in ipaddress.collapse_addresses(remaining)]


def network_request(policy: EgressPolicy | None) -> dict[str, Any]:
    """The SDK's create options for an egress policy — ``allow_internet_access`` and ``network``
    (``allow_out``/``deny_out``) — written so that E2B's API accepts them and enforces exactly the
    policy. The SDK builds the request (never raw HTTP from here). The policy's entries must have
    passed :func:`egress_entry_refusal` (the lifecycle refuses the spec before any create).

    E2B's rules (e2b-dev/infra packages/api/internal/handlers/sandbox_create.go,
    packages/api/internal/orchestrator/create_instance.go):

    * a domain in allowOut is a 400 unless denyOut contains ``0.0.0.0/0``, and that check reads
      the request's denyOut only, not ``allowInternetAccess``;
    * ``allowInternetAccess: false`` replaces whatever denyOut says with ``0.0.0.0/0``;
    * allowOut wins over denyOut.

    So: internet off sends denyOut ``[0.0.0.0/0]`` (what E2B enforces anyway, and what lets host
    names through validation). Internet on with host names in allowOut and no ``0.0.0.0/0``
    denied is sent as its exact equivalent: denyOut ``[0.0.0.0/0]`` and allowOut = the policy's
    entries plus every IPv4 range *not* in its denyOut (the complement), so each address the policy
    allows stays allowed, each it denies stays denied unless a host rule lets it through.

    Host rules filter only what E2B's egress proxy sees: TCP goes through that proxy, which matches
    a host name against the TLS SNI (HTTPS) or the Host header (HTTP)
    (packages/orchestrator/pkg/sandbox/network/firewall.go, egressproxy.go). Other protocols, and
    TCP that carries neither, are filtered by address only.
    """
    if policy is None:
        return {}
    allow = list(policy.allow_out)
    deny = list(policy.deny_out)
    has_hosts = any(not _is_address(e) for e in allow)
    if not policy.allow_internet:
        deny = [ALL_TRAFFIC]
    elif has_hosts and ALL_TRAFFIC not in deny:
        allow = [*dict.fromkeys([*allow, *_complement(deny)])]
        deny = [ALL_TRAFFIC]
    network: dict[str, Any] = {}
    if allow:
        network["allow_out"] = allow
    if deny:
        network["deny_out"] = deny
    options: dict[str, Any] = {"allow_internet_access": policy.allow_internet}
    if network:
        options["network"] = network
    return options


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


class BackendPool:
    """One :class:`E2BBackend` per API key, created on first use and reused.

    Backends are cached under the key's fingerprint (a hash), never the key itself, so neither a
    repr nor a debugger's view of the cache shows a key.
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        timeouts: BackendTimeouts | None = None,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        factory: Callable[..., E2BBackend] = E2BBackend,
        user: str = "user",
        output_limit_bytes: int = 0,
    ) -> None:
        self._user = user
        self._output_limit = output_limit_bytes or DEFAULT_OUTPUT_LIMIT_BYTES
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        self._timeouts = timeouts
        self._retry = retry
        self._observer = observer
        self._factory = factory
        self._backends: dict[str, E2BBackend] = {}

    def __repr__(self) -> str:
        return f"<BackendPool keys={sorted(self._backends)}>"

    def __len__(self) -> int:
        return len(self._backends)

    def for_key(self, api_key: str) -> E2BBackend:
        fingerprint = key_fingerprint(api_key)
        backend = self._backends.get(fingerprint)
        if backend is None:
            backend = self._factory(
                api_key,
                api_url=self._api_url,
                sandbox_url=self._sandbox_url,
                timeouts=self._timeouts,
                retry=self._retry,
                observer=self._observer,
                user=self._user,
                output_limit_bytes=self._output_limit,
            )
            self._backends[fingerprint] = backend
        return backend

    async def forget(self, api_key: str) -> None:
        """Drop the backend of a key that is no longer used (e.g. rotated out)."""
        backend = self._backends.pop(key_fingerprint(api_key), None)
        if backend is not None:
            await backend.aclose()

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()
