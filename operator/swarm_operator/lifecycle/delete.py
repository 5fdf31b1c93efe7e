"""Delete: tear the resource's sandboxes down, or release the one it has (``deletionPolicy: Orphan``).

Every sandbox tagged with the resource's uid is killed, not only the one in status, so a sandbox
created just before a crash cannot outlive its resource. Where no API key is left to kill with,
the lease bounds the cost: the sandbox stops by itself within one lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm_operator import bootstrap
from swarm_operator.backend import (
    NO_RETRY,
    AuthenticationFailed,
    BackendError,
    SandboxBackend,
    SandboxNotFound,
)
from swarm_operator.conditions import Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle import results, spend
from swarm_operator.lifecycle.agents import read_secrets
from swarm_operator.lifecycle.ownership import owned
from swarm_operator.lifecycle.plan import teardown_plan
from swarm_operator.lifecycle.runtime import ResourceRef, RetryLater, Runtime, backoff
from swarm_operator.lifecycle.tenancy import refusal, uses_default_key
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import TAG_UID
from swarm_operator.secrets import SecretNotFound

logger = logging.getLogger("swarm_operator.lifecycle")


@dataclass(frozen=True)
class UnusableSpec:
    """What a delete still needs from a spec the model refused: why, and the ``deletionPolicy`` it
    asked for (the field alone is read through the model, so an ``Orphan`` wish survives an
    unrelated mistake elsewhere in the spec)."""

    error: InvalidSpecError
    deletion_policy: str
    #: The spec names its own E2B key (else Orphan is not honoured: see lifecycle.tenancy).
    own_key: bool = False

    @classmethod
    def of(cls, spec_body: Mapping[str, Any] | None, error: InvalidSpecError) -> UnusableSpec:
        field = SwarmSandboxSpec.model_fields["deletion_policy"]
        wanted = (spec_body or {}).get(field.alias or "deletionPolicy", field.default)
        e2b = (spec_body or {}).get("e2b")
        own_key = isinstance(e2b, Mapping) and bool(e2b.get("apiKeySecretRef"))
        return cls(error, "Orphan" if wanted == "Orphan" else str(field.default), own_key)


async def delete(
    ref: ResourceRef,
    spec: SwarmSandboxSpec | UnusableSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    *,
    retry: int = 0,
) -> None:
    """Tear the sandbox down (Ctrl-C to the agents, a bounded grace, kill), or release it (Orphan).

    A sandbox already gone is success. Raises :class:`RetryLater` while the backend cannot be
    reached; the lease bounds what a sandbox costs meanwhile. Everything the process remembered
    about the resource is forgotten once it is done.
    """
    async with runtime.lock(ref.uid):
        await _delete(ref, spec, status, runtime, retry)
    spend.close(ref, status, runtime)
    runtime.forget(ref.uid)
    runtime.limiter.release(ref.uid)
    runtime.metrics.forget(ref.uid)
    runtime.secrets.release(ref.uid)


async def _delete(
    ref: ResourceRef,
    spec: SwarmSandboxSpec | UnusableSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    retry: int,
) -> None:
    known_id = status.sandbox.id if status.sandbox else None
    if ref.namespace == runtime.settings.namespace and runtime.api_key(ref.uid) is None:
        # Refused by the tenancy policy: never served, and its Secrets (the operator's own
        # namespace's) are not read even to delete. A sandbox an older build made stops by itself
        # within one lease, since nobody renews it.
        logger.info("nothing to delete in the operator's own namespace", extra=ref.log_extra)
        return
    if (
        isinstance(spec, SwarmSandboxSpec)
        and not known_id
        and runtime.api_key(ref.uid) is None
        and refusal(ref.namespace, spec, runtime.settings) is not None
    ):
        return  # refused by the tenancy policy and given no sandbox: no key to read, nothing to kill
    api_key = await _key_for_delete(ref, spec, runtime, retry)
    if api_key is None:
        return
    backend = runtime.backends.for_key(api_key)
    if spec.deletion_policy == "Orphan":
        own_key = spec.own_key if isinstance(spec, UnusableSpec) else not uses_default_key(spec)
        if own_key:
            await _release(ref, backend, known_id, runtime)
            return
        # The default key never pays for an untracked sandbox (OrphanNotAllowed): torn down.
        logger.info(
            "deletionPolicy Orphan is not honoured with the default key: tearing down", extra=ref.log_extra
        )
    started = time.monotonic()
    ids = await _teardown_pass(ref, spec, status, runtime, backend, known_id, retry)
    runtime.remember(ref.uid).api_key = None
    took = round(time.monotonic() - started, 3)
    logger.info(
        "deleted %d sandbox(es)", len(ids), extra={**ref.log_extra, "step": "delete", "duration": took}
    )


async def _teardown_pass(
    ref: ResourceRef,
    spec: SwarmSandboxSpec | UnusableSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    backend: SandboxBackend,
    known_id: str | None,
    retry: int,
) -> list[str]:
    """One teardown pass over every sandbox of the resource (tagged, or in status and still ours),
    its workspace pushed first, bounded by ``SWARM_DELETE_TIMEOUT_SECONDS``: the ids torn down.
    A pass that times out or fails is retried with backoff (:class:`RetryLater`)."""
    try:
        tagged = await backend.list({TAG_UID: ref.uid})
        ids = sorted(
            {s.id for s in tagged}
            | ({known_id} if known_id and await _still_ours(ref, backend, known_id, runtime) else set())
        )
        await results.before_delete(ref, spec, status, runtime, backend, tagged, known_id)
        # SWARM_DELETE_TIMEOUT_SECONDS bounds one teardown pass; past it the pass is retried.
        await asyncio.wait_for(
            asyncio.gather(*(_teardown(ref, backend, sid, runtime.settings) for sid in ids)),
            timeout=runtime.settings.delete_timeout_seconds,
        )
    except TimeoutError:
        delay = backoff(runtime.settings, retry)
        logger.warning(
            "teardown took longer than %.0fs; retrying in %.1fs",
            runtime.settings.delete_timeout_seconds,
            delay,
            extra=ref.log_extra,
        )
        raise RetryLater(
            f"teardown took longer than {runtime.settings.delete_timeout_seconds:g}s",
            delay=delay,
            reason=Reason.BACKEND_UNAVAILABLE,
        ) from None
    except BackendError as exc:
        delay = max(exc.retry_after_s or 0.0, backoff(runtime.settings, retry))
        logger.warning(
            "teardown failed (%s: %s); retrying in %.1fs", exc.reason, exc.message, delay, extra=ref.log_extra
        )
        raise RetryLater(exc.message, delay=delay, reason=exc.reason) from None
    return ids


async def _still_ours(
    ref: ResourceRef, backend: SandboxBackend, sandbox_id: str | None, runtime: Runtime
) -> bool:
    """The sandbox status names, if E2B tags it as this resource's: a forged or stale id is never
    killed or released (the list by tag finds every sandbox that really is the resource's)."""
    if not sandbox_id:
        return False
    try:
        return await owned(runtime, ref, backend, sandbox_id)
    except SandboxNotFound:
        return False  # already gone: nothing to do


async def _release(
    ref: ResourceRef, backend: SandboxBackend, sandbox_id: str | None, runtime: Runtime
) -> None:
    """Leave the sandbox running, untracked: record it released and give it a long timeout.

    Without a new timeout the short lease (the dead-man's switch) would kill a sandbox the user
    asked to keep. The record (the operator's own, outside the sandbox: see
    :class:`~.runtime.ReleaseRecord`) tells the orphan sweeper to leave it alone; it is written
    first, so a sandbox is never long-lived and unrecorded.
    """
    if sandbox_id and not await _still_ours(ref, backend, sandbox_id, runtime):
        sandbox_id = None
    if sandbox_id:
        timeout = runtime.settings.orphan_timeout_seconds
        try:
            await runtime.released.record(sandbox_id, ref, time.time() + timeout + 60)
        except Exception as exc:  # the API server away, or the record full: retried
            raise RetryLater(
                f"cannot record the release of sandbox {sandbox_id} yet: {exc}",
                delay=backoff(runtime.settings, 0),
                reason=Reason.BACKEND_ERROR,
            ) from None
        try:
            await backend.set_timeout(sandbox_id, timeout)
        except SandboxNotFound:
            pass
        except BackendError as exc:
            raise RetryLater(
                f"cannot release sandbox {sandbox_id} yet: {exc.message}",
                delay=backoff(runtime.settings, 0),
                reason=exc.reason,
            ) from None
    runtime.events.record(
        ref, "Normal", Reason.ORPHANED, f"sandbox {sandbox_id} left running (deletionPolicy: Orphan)"
    )
    logger.info(
        "released sandbox %s (deletionPolicy Orphan)",
        sandbox_id,
        extra={**ref.log_extra, "sandbox_id": sandbox_id},
    )
    runtime.remember(ref.uid).api_key = None


async def _key_for_delete(
    ref: ResourceRef, spec: SwarmSandboxSpec | UnusableSpec, runtime: Runtime, retry: int
) -> str | None:
    """The API key to delete with: the Secret's, else the one last used, else give up after a while.

    Giving up is safe only because of the lease: the sandbox dies by itself within one lease.
    """
    try:
        if isinstance(spec, UnusableSpec):
            raise spec.error
        key, _ = await read_secrets(ref, spec, runtime, key_only=True)
        return key
    except (InvalidSpecError, SecretNotFound) as exc:
        cached = runtime.api_key(ref.uid)
        if cached is not None:
            return cached
        if retry < 3:
            raise RetryLater(
                f"cannot delete the sandbox yet: {exc}",
                delay=backoff(runtime.settings, retry),
                reason=Reason.SECRET_NOT_FOUND,
            ) from None
        runtime.events.record(
            ref,
            "Warning",
            Reason.SECRET_NOT_FOUND,
            f"no API key to kill the sandbox with ({exc}); it stops by itself when its lease "
            f"expires (at most {runtime.settings.lease_seconds}s)",
        )
        return None


async def _teardown(ref: ResourceRef, backend: SandboxBackend, sandbox_id: str, settings: Settings) -> None:
    """Ctrl-C to every pane and a bounded grace, then kill. Only the kill must succeed."""
    if settings.delete_grace_seconds > 0:
        try:
            await backend.run(
                sandbox_id,
                bootstrap.render_teardown(teardown_plan(ref), grace_s=settings.delete_grace_seconds),
                timeout_s=settings.delete_grace_seconds + 10,
                retry=NO_RETRY,
            )
        except BackendError as exc:
            if isinstance(exc, AuthenticationFailed):
                raise
            logger.info(
                "graceful stop skipped (%s)", exc.reason, extra={**ref.log_extra, "sandbox_id": sandbox_id}
            )
    await backend.kill(sandbox_id)
