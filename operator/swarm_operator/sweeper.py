"""The orphan sweeper: kills sandboxes this operator tagged whose resource no longer exists.

The finalizer normally guarantees a sandbox dies with its resource, and the lease bounds the cost if
the operator is gone. The sweeper closes the remaining gaps: a finalizer removed by hand, a resource
deleted while a different operator build ran, a create whose answer was lost and whose resource was
deleted before the next reconcile. It only ever touches sandboxes carrying this operator's id tag.

Safety against races with creation: sandboxes are listed *before* resources, so a sandbox created for
a resource that exists is always matched; and a candidate is killed only when it was already a
candidate one grace period earlier. Sandboxes released with ``deletionPolicy: Orphan`` are spared by
the operator's own record of them (``released_ids``: a ConfigMap in its namespace, written at
release), never by anything inside a sandbox: an agent can create any file there, and an orphan
whose agent did so must still die.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from swarm_operator.backend import BackendError, SandboxBackend
from swarm_operator.names import TAG_OPERATOR, TAG_UID
from swarm_operator.secrets import SecretKeyRef, SecretNotFound, SecretReader

logger = logging.getLogger("swarm_operator.sweeper")


@dataclass
class SweepReport:
    """What one sweep saw and did; counts feed the metrics."""

    examined: int = 0
    candidates: int = 0
    killed: list[str] = field(default_factory=list)
    released: int = 0
    errors: int = 0


@dataclass
class Sweeper:
    """Remembers candidates between sweeps, so only sandboxes orphaned for a whole grace die."""

    operator_id: str
    grace_s: float
    clock: Callable[[], float] = time.monotonic
    _first_seen: dict[str, float] = field(default_factory=dict)

    async def sweep(
        self,
        backends: Iterable[SandboxBackend],
        live_uids: Callable[[], Awaitable[set[str]]],
        released_ids: Callable[[], Awaitable[set[str]]],
    ) -> SweepReport:
        """One pass over every backend (one per API key in use). A record of releases that cannot be
        read stops this pass's kills (a released sandbox must never die of an API hiccup)."""
        report = SweepReport()
        tagged: list[tuple[SandboxBackend, str, str]] = []
        for backend in backends:
            try:
                for info in await backend.list({TAG_OPERATOR: self.operator_id}):
                    tagged.append((backend, info.id, info.metadata.get(TAG_UID, "")))
            except BackendError as exc:
                report.errors += 1
                logger.warning("sweep: listing sandboxes failed (%s: %s)", exc.reason, exc.message)
        report.examined = len(tagged)
        if not tagged:
            self._first_seen.clear()
            return report
        uids = await live_uids()  # listed after the sandboxes: see the module docstring
        released = await released_ids()
        now = self.clock()
        orphans = {
            sid: (backend, uid) for backend, sid, uid in tagged if uid not in uids and sid not in released
        }
        report.released = sum(1 for _, sid, _ in tagged if sid in released)
        for sid in list(self._first_seen):
            if sid not in orphans:
                del self._first_seen[sid]
        report.candidates = len(orphans)
        for sid, (backend, uid) in orphans.items():
            first = self._first_seen.setdefault(sid, now)
            if now - first < self.grace_s:
                continue
            try:
                await backend.kill(sid)
            except BackendError as exc:
                report.errors += 1
                logger.warning(
                    "sweep: %s failed (%s: %s)", sid, exc.reason, exc.message, extra={"sandbox_id": sid}
                )
                continue
            self._first_seen.pop(sid, None)
            report.killed.append(sid)
            logger.warning(
                "killed orphaned sandbox %s (resource uid %s no longer exists)",
                sid,
                uid,
                extra={"sandbox_id": sid},
            )
        return report


async def keys_in_use(known: Iterable[str], secrets: SecretReader, default: SecretKeyRef) -> set[str]:
    """Every API key a sweep must look under: those live resources were reconciled with, and the
    operator's default key (a resource whose key was never read by this process may still have a
    sandbox there). A default Secret that is missing or unreadable only narrows the sweep."""
    keys = set(known)
    try:
        keys.add(await secrets.read(default))
    except SecretNotFound:
        pass
    except Exception as exc:  # the API server being away must not end the loop
        logger.warning("sweep: cannot read the default API key (%s)", exc)
    return keys
