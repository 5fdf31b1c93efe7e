"""Who a sandbox is, asked from inside before its first secret: the control plane's answer alone is
not trusted (a misrouted envd, a sandbox of another resource, a stale token would get secrets).

A sandbox that fails the check is killed before anything is sent (through the one kill path,
:func:`~swarm_operator.lifecycle.sandbox.kill_and_record`, unless it was a replacement and the
tracked sandbox keeps running), and a new one is tried later with growing backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarm_operator.backend import SandboxBackend, SandboxInfo
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle.runtime import RetryLater, backoff
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.names import UID_ENV

logger = logging.getLogger("swarm_operator.lifecycle")

_IDENTITY_MARK = "swarm-identity"
#: The identity check asks up to this many times (0.25 s, then doubling between looks), within
#: IDENTITY_WAIT_S in all, before it calls a sandbox an impostor.
IDENTITY_ATTEMPTS = 5
IDENTITY_FIRST_DELAY_S = 0.25
IDENTITY_WAIT_S = 5.0
#: One envd call: the sandbox's id as E2B set it inside, and the uid the operator gave it at create.
IDENTITY_SCRIPT = f'printf \'{_IDENTITY_MARK} %s %s\\n\' "${{E2B_SANDBOX_ID-}}" "${{{UID_ENV}-}}"'


async def identity_ok(book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo) -> bool:
    """One envd call, with no secret in it: the sandbox's own E2B_SANDBOX_ID and the uid given to it
    at create, as seen from inside, must be the id the control plane returned and this resource's
    uid. Anything else (a misrouted envd, a sandbox of another resource, a stale token) gets no
    secret. Verified sandboxes are remembered, so later reconciles skip the call."""
    ref = book.ref
    memory = book.runtime.remember(ref.uid)
    if memory.verified == sandbox.id:
        return True
    started = time.monotonic()
    seen: list[str] | None = None
    # envd fills E2B_SANDBOX_ID from MMDS asynchronously after start (e2b-dev/infra
    # packages/envd/internal/host/mmds.go), so a look right after create may see nothing, or a
    # template's stale value: ask again a few times, within IDENTITY_WAIT_S, before calling it a
    # mismatch. A sandbox that never answers rightly still gets no secret.
    for attempt in range(IDENTITY_ATTEMPTS):
        if attempt:
            await asyncio.sleep(
                min(
                    IDENTITY_FIRST_DELAY_S * 2 ** (attempt - 1),
                    max(0.0, started + IDENTITY_WAIT_S - time.monotonic()),
                )
            )
        result = await backend.run(sandbox.id, IDENTITY_SCRIPT, timeout_s=30)
        seen = next(
            (
                line.split(" ")[1:]
                for line in reversed(result.stdout.splitlines())
                if line.startswith(_IDENTITY_MARK + " ")
            ),
            None,
        )
        if seen == [sandbox.id, ref.uid]:
            # Prometheus only: status keeps the steps a person reads (create, init).
            book.runtime.metrics.step("identity", time.monotonic() - started)
            memory.verified = sandbox.id
            return True
        if time.monotonic() - started >= IDENTITY_WAIT_S:
            break
    book.runtime.metrics.step("identity", time.monotonic() - started)
    logger.warning(
        "sandbox %s failed the identity check (inside it answers as %s)",
        sandbox.id,
        "a different sandbox" if seen else "nothing parsable",
        extra={**ref.log_extra, "sandbox_id": sandbox.id, "step": "identity"},
    )
    return False


async def verify_identity(
    book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo, retry: int
) -> None:
    if not await identity_ok(book, backend, sandbox):
        await identity_failed(book, sandbox, retry)


async def identity_failed(
    book: StatusBook, sandbox: SandboxInfo, retry: int, *, keep_created: bool = False
) -> None:
    """Never Ready, never a secret: kill the sandbox (it bills; it is not trusted), say so, and try
    a new one later with growing backoff (a control plane that keeps answering wrongly is not
    hammered). ``keep_created``: the sandbox was a replacement; the tracked one keeps running."""
    ref, runtime = book.ref, book.runtime
    memory = runtime.remember(ref.uid)
    assert memory.api_key is not None  # set by the reconcile before any sandbox call
    backend = runtime.backends.for_key(memory.api_key)
    message = (
        f"sandbox {sandbox.id} was killed before any secret was sent: from inside it does not "
        f"identify as {sandbox.id} of this resource; a new one is tried"
    )
    if keep_created:
        await backend.kill(sandbox.id)
    else:
        await kill_and_record(
            book, backend, sandbox.id, Reason.IDENTITY_MISMATCH, message, "no agents: " + message
        )
        book.status.network = None
    memory.verified = None
    book.set(ConditionType.SYNCED, "False", Reason.IDENTITY_MISMATCH, message)
    await book.commit()
    book.event("Warning", Reason.IDENTITY_MISMATCH, message)
    delay = backoff(runtime.settings, retry + 2)
    raise RetryLater(message, delay=delay, reason=Reason.IDENTITY_MISMATCH)
