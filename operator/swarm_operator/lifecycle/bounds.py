"""The initialisation budget: how a sandbox that never gets its agents up ends.

Every failed setup attempt on a sandbox is counted in ``status.sandbox.initAttempts``, in status so
the count survives an operator restart (an attempt the restart itself cut short is not counted: it
costs at most one setup timeout per restart). Every failure that is not terminal on its own (a timeout, a 4xx, a 5xx, a script that printed no
report, agents that did not come up) spends one attempt; when ``SWARM_INIT_ATTEMPTS`` are spent the
sandbox is killed and the resource is Failed (``InitFailed``). A success clears the count.

The bound this gives, from the moment a sandbox is on record until it is Ready or killed (see
:func:`init_bound_seconds`): ``attempts × (setup timeout + control timeout) + Σ init backoff +
attempts × reconcile backoff cap`` — each attempt is one bounded command, and between two
reconciles kopf waits at most the backoff cap. While the kill itself fails, the lease is not renewed
past the spent budget (:func:`spent`), so E2B ends the sandbox within one lease.
"""

from __future__ import annotations

from typing import NoReturn

from swarm_operator.backend import AuthenticationFailed, BackendError, SandboxBackend, SandboxNotFound
from swarm_operator.conditions import TERMINAL_REASONS, Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook, give_up

__all__ = [
    "charge",
    "charge_failure",
    "clear",
    "exhausted",
    "init_bound_seconds",
    "setup_timeout_seconds",
    "spent",
    "used",
]


def setup_timeout_seconds(settings: Settings) -> float:
    """How long one setup run may take before the backend cuts it (CommandTimeout): the agents'
    ready wait plus one command's timeout for everything before it (clone, coordinator install)."""
    return settings.ready_timeout_seconds + settings.command_timeout_seconds


def install_timeout_seconds(settings: Settings) -> int:
    """The coordinator install's own bound, inside the setup run's: four fifths of the command
    timeout, so the install ends (and is reported as the failing step) before the run is cut."""
    return max(1, int(settings.command_timeout_seconds * 0.8))


def git_timeout_seconds(settings: Settings) -> int:
    """Each network git call's bound (the workspace fetch may make two): two fifths of the command
    timeout, so a server that never answers fails the workspace step by name, not the whole run."""
    return max(1, int(settings.command_timeout_seconds * 0.4))


def init_bound_seconds(settings: Settings) -> float:
    """Upper bound on the time from a sandbox on record to Ready or killed, while E2B answers
    (see the module docstring). The property test asserts it."""
    attempts = settings.init_attempts
    per_attempt = setup_timeout_seconds(settings) + settings.control_timeout_seconds
    pauses = sum(settings.init_backoff_seconds * 2**i for i in range(attempts))
    # One identity call (30 s) and the create/list calls before the first attempt.
    overhead = 30 + 3 * settings.control_timeout_seconds
    return float(attempts * (per_attempt + settings.max_retry_delay_seconds * 1.2) + pauses + overhead)


def used(book: StatusBook, sandbox_id: str) -> int:
    """Attempts already spent on ``sandbox_id`` (0 for a sandbox status does not name: a
    replacement's attempts are counted by its caller, in memory)."""
    sandbox = book.status.sandbox
    if sandbox is None or sandbox.id != sandbox_id:
        return 0
    return sandbox.init_attempts or 0


def charge(book: StatusBook, sandbox_id: str, attempts: int) -> None:
    """Record that ``attempts`` attempts are spent (or started) on ``sandbox_id``."""
    sandbox = book.status.sandbox
    if sandbox is not None and sandbox.id == sandbox_id:
        book.status.sandbox = sandbox.model_copy(update={"init_attempts": attempts})


def clear(book: StatusBook, sandbox_id: str) -> None:
    """The agents are up: the next setup run (a scale, a resume) starts a fresh budget."""
    sandbox = book.status.sandbox
    if sandbox is not None and sandbox.id == sandbox_id and sandbox.init_attempts is not None:
        book.status.sandbox = sandbox.model_copy(update={"init_attempts": None})


def spent(book: StatusBook, sandbox_id: str) -> bool:
    return used(book, sandbox_id) >= book.runtime.settings.init_attempts


async def exhausted(book: StatusBook, backend: SandboxBackend, sandbox_id: str, cause: str) -> NoReturn:
    """Budget spent: kill first, then report, so a crash in between still leaves no leak behind
    (the next reconcile sees the id gone, or the count spent, and ends the same way)."""
    attempts = book.runtime.settings.init_attempts
    await kill_and_record(
        book,
        backend,
        sandbox_id,
        Reason.INIT_FAILED,
        f"sandbox {sandbox_id} killed after {attempts} failed initialisations",
        cause,
    )
    await give_up(
        book,
        Reason.INIT_FAILED,
        f"initialisation failed {attempts} times, last: {cause}; "
        f"the sandbox was killed; change the spec to try again",
    )


async def charge_failure(
    book: StatusBook, backend: SandboxBackend, sandbox_id: str, exc: BackendError
) -> None:
    """A backend failure on a tracked sandbox outside the setup run itself (the identity call, the
    stop before a restart): it spends one attempt like a failed run, so a sandbox whose every call
    times out still ends. Failures that end on their own terms (a rejected key, a gone sandbox, a
    terminal reason) are left to the caller."""
    if isinstance(exc, (AuthenticationFailed, SandboxNotFound)) or (
        exc.reason in TERMINAL_REASONS and not exc.transient
    ):
        return
    attempts = used(book, sandbox_id) + 1
    charge(book, sandbox_id, attempts)
    cause = f"step identity: {exc.reason}: {exc.message}"
    if attempts >= book.runtime.settings.init_attempts:
        await exhausted(book, backend, sandbox_id, cause)
    await book.commit()
