"""``status.sandbox.id`` is a hint, never a credential.

Status can be stale (a sandbox replaced behind a crash) or written by someone else (a tenant able to
patch status). Before the operator kills, extends, releases or probes the sandbox status names, it
confirms that E2B tags that sandbox with this resource's uid. The answer is remembered per process
(the identity check from inside counts as one), so a steady resource costs one ``get`` per sandbox
per process, not one per tick.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from swarm_operator.backend import SandboxBackend, SandboxNotFound
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.names import TAG_UID

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["disown", "owned"]


async def owned(runtime: Runtime, ref: ResourceRef, backend: SandboxBackend, sandbox_id: str) -> bool:
    """Whether ``sandbox_id`` is this resource's sandbox (E2B tags it with the resource's uid).

    Raises :class:`SandboxNotFound` when it is gone (the caller's own handling of a gone sandbox
    applies), and any other backend error as it comes (nothing was done to the sandbox).
    """
    memory = runtime.remember(ref.uid)
    if sandbox_id in (memory.verified, memory.confirmed):
        return True
    info = await backend.get(sandbox_id)
    if info.metadata.get(TAG_UID) == ref.uid:
        memory.confirmed = sandbox_id
        return True
    logger.warning(
        "status names sandbox %s, which is not this resource's: it is left alone",
        sandbox_id,
        extra={**ref.log_extra, "sandbox_id": sandbox_id},
    )
    return False


async def disown(book: StatusBook, sandbox_id: str) -> NoReturn:
    """Status named a sandbox that is not this resource's: forget it (nothing was done to it) and
    raise :class:`SandboxNotFound`, so the caller reconciles: adopt this resource's own tagged
    sandbox, or create one."""
    message = (
        f"status named sandbox {sandbox_id}, which E2B does not tag as this resource's: "
        f"it was left alone; adopting or creating this resource's own"
    )
    book.status.sandbox = None
    book.status.agents = None
    book.set(ConditionType.SANDBOX_CREATED, "False", Reason.SANDBOX_NOT_FOUND, message)
    book.set(ConditionType.AGENTS_READY, "False", Reason.SANDBOX_NOT_FOUND, message)
    await book.commit()
    book.event("Warning", Reason.SANDBOX_NOT_FOUND, message)
    raise SandboxNotFound(message, sandbox_id=sandbox_id)
