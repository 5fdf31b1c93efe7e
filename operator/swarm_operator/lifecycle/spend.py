"""The cost meter, wired: every change of a sandbox's billing state goes through :func:`meter`.

:mod:`swarm_operator.cost` is the arithmetic; this module applies it to a
:class:`~swarm_operator.lifecycle.status.StatusBook`. Callers say what the meter counts from now on
(``Running`` with the sandbox's size, ``Paused``, ``Stopped``) at every change of state: create,
adopt, resume, hand-over, pause, kill. The same call on a quiet health tick changes nothing until
``SWARM_COST_REFRESH_MINUTES`` passed since the figures were written (:func:`cost.should_refresh`),
so quiet resources cost no status writes, while ``status.cost`` is never more than one cadence old.
The ledger lives in status, so an operator restart carries on from it: nothing is reset, nothing
counted twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from swarm_operator.backend import SandboxInfo
from swarm_operator.cost import Meter, Prices, Size, accrue, should_refresh, with_day
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import Phase, SwarmSandboxStatus

__all__ = ["close", "meter", "note_applied", "note_ready", "size_of"]


def size_of(sandbox: SandboxInfo | None) -> Size | None:
    """The sandbox's allocated size as E2B reported it, or None when it did not."""
    if sandbox is None or sandbox.vcpu is None or sandbox.memory_mib is None:
        return None
    return Size(sandbox.vcpu, sandbox.memory_mib)


def meter(
    book: StatusBook,
    state: Meter,
    size: Size | None = None,
    *,
    now: datetime | None = None,
    refresh: bool = False,
) -> None:
    """From ``now`` on the resource's sandbox is ``state`` (and ``size``, None: unchanged).

    ``status.cost`` is brought up to date only when due (state or size changed, or the cadence
    passed) or when the caller is writing status anyway (``refresh``: the write is paid already,
    and it restarts the cadence); otherwise it is left as written and the metrics extrapolate it.
    A resource that never had a sandbox gets no ledger for being stopped."""
    runtime = book.runtime
    written = book.status.cost
    if written is None and state == "Stopped":
        return
    now = now or datetime.now(UTC)
    cadence = runtime.settings.cost_refresh_minutes * 60.0
    if refresh or should_refresh(written, now, cadence, state, size):
        ledger = accrue(written, now, state, size, Prices.from_settings(runtime.settings))
        book.status.cost = with_day(ledger, now, written)
    assert book.status.cost is not None
    runtime.metrics.observe_cost(book.ref.uid, book.ref.namespace, book.status.cost)
    memory = runtime.remember(book.ref.uid)
    memory.namespace, memory.cost = book.ref.namespace, book.status.cost


def close(ref: ResourceRef, status: SwarmSandboxStatus, runtime: Runtime) -> None:
    """The resource is deleted: its sandbox stops billing now. The last seconds reach the metrics
    (status goes with the resource) before the caller forgets the resource."""
    if status.cost is None:
        return
    ledger = accrue(status.cost, datetime.now(UTC), "Stopped", None, Prices.from_settings(runtime.settings))
    runtime.metrics.observe_cost(ref.uid, ref.namespace, ledger)


def note_applied(book: StatusBook) -> None:
    """A reconcile of ``book.ref.generation`` starts: remember when this generation was first seen,
    for the apply-to-Ready histogram. A generation already Ready (an operator restart) is marked
    reported, so a restart does not add a bogus near-zero latency."""
    memory = book.runtime.remember(book.ref.uid)
    generation = book.ref.generation
    if memory.applied is not None and memory.applied[0] == generation:
        return
    done = book.status.phase == Phase.READY and book.status.observed_generation == generation
    memory.applied = (generation, time.time(), done)


def note_ready(book: StatusBook) -> None:
    """After a commit: the first time the generation noted by :func:`note_applied` is Ready, its
    apply-to-Ready time goes to ``swarm_ready_seconds``."""
    memory = book.runtime.remember(book.ref.uid)
    if memory.applied is None or memory.applied[2] or book.status.phase != Phase.READY:
        return
    generation, seen, _ = memory.applied
    if generation != book.ref.generation:
        return
    memory.applied = (generation, seen, True)
    book.runtime.metrics.became_ready(time.time() - seen)
