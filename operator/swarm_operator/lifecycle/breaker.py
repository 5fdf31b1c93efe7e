"""The health probe's circuit breaker: faults in a row, Degraded, then quarantine.

A probe the *sandbox* failed — output past the backend's cap, a hang to the probe timeout, a report
that cannot be read — is a fault. Faults in a row are counted in ``status.health.sandboxFaults`` (a
restarted operator carries on counting), make the resource Degraded with the fault's reason, and at
``SWARM_QUARANTINE_AFTER`` the sandbox is killed and the resource Failed (SandboxQuarantined): one
misbehaving sandbox never costs the operator or its other tenants more than that. A failure of E2B
itself (unreachable, rate limited) is not the sandbox's doing: it neither counts nor resets the streak.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from swarm_operator import logs
from swarm_operator.backend import BackendError, CommandTimeout, OutputLimitExceeded, SandboxBackend
from swarm_operator.conditions import ConditionType, Reason
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import HealthStatus

logger = logging.getLogger("swarm_operator.lifecycle")

#: The failures only the sandbox causes; a ValueError is a report that could not be read.
FAULTS = (OutputLimitExceeded, CommandTimeout, ValueError)


async def probe_failed(
    book: StatusBook,
    backend: SandboxBackend,
    sandbox_id: str,
    previous: HealthStatus | None,
    exc: BackendError | ValueError,
) -> None:
    """Record a probe (or self-heal run) that gave no answer; count it if the sandbox caused it,
    and degrade or quarantine the resource by the count."""
    reason = exc.reason if isinstance(exc, BackendError) else Reason.PROBE_FAILED
    # The message may quote the sandbox (a report's parse error): redacted and bounded like any.
    text = logs.sandbox_text(f"{reason}: {exc}", book.ref.uid, limit=1024, keep="head")
    fault = isinstance(exc, FAULTS)
    book.status.health = health_after(previous, text, fault=fault, answered=False)
    faults, limit = book.status.health.sandbox_faults, book.runtime.settings.quarantine_after
    if fault and faults >= limit:
        await quarantine(book, backend, sandbox_id)
        return
    if fault:
        book.set(
            ConditionType.AGENTS_READY,
            "False",
            reason,
            f"the sandbox failed {faults} health probe(s) in a row ({text}); probes back off, "
            f"and at {limit} in a row the sandbox is killed (SandboxQuarantined)",
        )
    await book.commit()


async def quarantine(book: StatusBook, backend: SandboxBackend, sandbox_id: str) -> None:
    """Kill a sandbox that keeps misbehaving and make its resource Failed (SandboxQuarantined).

    Killed first, recorded after: a crash in between leaves no billing sandbox. When the kill
    itself fails (E2B unreachable) the count stays in status and the next probe tick tries again.
    """
    health = book.status.health or HealthStatus()
    message = (
        f"sandbox {sandbox_id} was quarantined: it misbehaved on {health.sandbox_faults} "
        f"health probes in a row, last: {health.reason or 'unknown'}; it was killed; "
        f"change the spec (or its agents' command) to try again"
    )
    try:
        await kill_and_record(
            book,
            backend,
            sandbox_id,
            Reason.SANDBOX_QUARANTINED,
            f"sandbox {sandbox_id} killed: quarantined",
            message,
        )
    except BackendError as exc:
        logger.warning(
            "quarantine of sandbox %s deferred: %s",
            sandbox_id,
            exc,
            extra={**book.ref.log_extra, "sandbox_id": sandbox_id},
        )
        await book.commit()
        return
    book.status.agents = None
    # The count was this sandbox's: whatever sandbox a spec change brings starts from zero.
    book.status.health = health.model_copy(update={"sandbox_faults": 0})
    book.set(ConditionType.SYNCED, "False", Reason.SANDBOX_QUARANTINED, message)
    await book.commit()
    logger.warning(
        "%s: %s", Reason.SANDBOX_QUARANTINED, message, extra={**book.ref.log_extra, "sandbox_id": sandbox_id}
    )


def health_after(
    previous: HealthStatus | None, reason: str | None, *, fault: bool = False, answered: bool = True
) -> HealthStatus:
    """A probe's verdict, stamped now: Healthy without a reason, else one more failure in a row.

    Sandbox faults in a row: one more on a ``fault``; back to 0 once the sandbox ``answered`` (a
    readable report, healthy or not); carried over when E2B itself failed (no answer, no fault).
    """
    now = datetime.now(UTC)
    before = previous or HealthStatus()
    faults = before.sandbox_faults + 1 if fault else (0 if answered else before.sandbox_faults)
    if reason is None:
        return HealthStatus(
            status="Healthy", consecutive_failures=0, sandbox_faults=faults, last_probe_time=now
        )
    return HealthStatus(
        status="Unhealthy",
        reason=reason,
        consecutive_failures=before.consecutive_failures + 1,
        sandbox_faults=faults,
        last_probe_time=now,
    )
