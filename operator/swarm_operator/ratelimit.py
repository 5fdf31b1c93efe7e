"""Operator-wide limits on sandbox creation: a rate (per minute and per hour) and a per-namespace cap
on live sandboxes.

Why here and not only at E2B: E2B's own 429s protect E2B, not the user's bill or plan. A
misconfigured controller that creates and deletes resources in a loop should stall at a limit the
operator's owner chose, with a condition that says so, instead of burning sandbox-hours.

Rate. Each window is a token bucket holding at most ``limit`` tokens, refilled continuously at
``limit`` per window; a creation takes one token from every bucket. So a full bucket allows a burst
of ``limit`` and then ``limit`` per window steadily; in any window of that length at most
``2 × limit`` are granted (the burst plus the refill), which is the bucket's known trade-off for
smoothness and fractional rates (0.5/min works). ``retry_after_s`` is exact: the time until the
buckets hold the token this caller needs.

Fairness. A refused caller keeps its place: refusals enter a FIFO of waiters (by first refusal),
and tokens (or namespace slots) are reserved for earlier waiters — a caller is granted only if what
is available exceeds what the waiters ahead of it need. A waiter that does not ask again within
``max(2 × retry_after, retry_after + stale_grace_s)`` of its last refusal is dropped (its resource
was deleted, or its handler gave up), so a vanished resource cannot block the queue for longer
than that; the grace lets a handler that comes back a little late (kopf's own scheduling, a slow
reconcile in between) keep its place even when told to retry in a fraction of a second.

Namespace cap. A namespace may hold at most ``per_namespace`` live sandboxes. A grant reserves the
slot at once (the create awaits for seconds, and without the reservation ten concurrent creates
would all pass a cap of ten minus one); :meth:`track` counts adopted sandboxes, :meth:`release`
frees the slot. A uid counts once, whatever is called how often. When the cap is reached nothing
in the limiter knows when a slot will free, so ``retry_after_s`` is the fixed
``namespace_retry_s``.

Restarts. A new process starts with full buckets, so an operator that crash-loops would get a
fresh burst each time. :meth:`seed` replays the creations E2B still knows about (the start times
of this operator's tagged sandboxes, from the list call at start-up) into the buckets;
:meth:`drain` empties them when that list cannot be read (unknown history: assume the worst, wait
one refill). Sandboxes already gone from E2B are not seen: the replay is a lower bound.

Everything is synchronous and runs on the operator's event loop: no awaits inside, so no locks.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Admission", "CreationLimiter", "Scope"]

Scope = Literal["operator", "namespace"]

# Float slack when comparing token counts: refills computed from float clocks land a hair below an
# integer exactly when retry_after says they should reach it.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Admission:
    """The answer to one creation request. Truthy when granted."""

    granted: bool
    scope: Scope | None = None
    retry_after_s: float = 0.0
    message: str = ""

    def __bool__(self) -> bool:
        return self.granted


_GRANTED = Admission(granted=True)


class _Bucket:
    """A token bucket of ``capacity`` tokens refilled at ``capacity`` per ``window_s``."""

    def __init__(self, limit: float, window_s: float, unit: str, now: float) -> None:
        if not (limit > 0 and math.isfinite(limit)):
            raise ValueError(f"a creation rate must be a positive number, not {limit!r}")
        self.limit = limit
        self.unit = unit
        # A bucket smaller than one token could never grant anything.
        self.capacity = max(limit, 1.0)
        self.rate = limit / window_s  # tokens per second
        self.window_s = window_s
        self.tokens = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def has(self, needed: int) -> bool:
        return self.tokens + _EPSILON >= needed

    def wait_for(self, needed: int) -> float:
        """Seconds until the bucket holds ``needed`` tokens, if nobody else takes any."""
        return max(0.0, (needed - self.tokens) / self.rate)

    def describe(self) -> str:
        return f"{self.limit:g}/{self.unit}"


@dataclass
class _Waiter:
    seq: int
    namespace: str
    scope: Scope
    last_seen: float
    stale_after_s: float


class CreationLimiter:
    """Decides whether a resource may create a sandbox now. See the module docstring."""

    def __init__(
        self,
        per_minute: float | None,
        per_hour: float | None,
        per_namespace: int | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        namespace_retry_s: float = 15.0,
        stale_grace_s: float = 10.0,
    ) -> None:
        if per_namespace is not None and per_namespace < 0:
            raise ValueError(f"per_namespace must be >= 0, not {per_namespace!r}")
        self._clock = clock
        now = clock()
        self._buckets = [
            _Bucket(limit, window, unit, now)
            for limit, window, unit in ((per_minute, 60.0, "min"), (per_hour, 3600.0, "h"))
            if limit is not None
        ]
        self._per_namespace = per_namespace
        self._namespace_retry_s = namespace_retry_s
        self._stale_grace_s = stale_grace_s
        self._live: dict[str, str] = {}  # uid → namespace, for every uid holding a slot
        self._live_per_namespace: Counter[str] = Counter()
        self._waiters: dict[str, _Waiter] = {}  # insertion order is irrelevant: seq orders them
        self._tickets = itertools.count()

    # ------------------------------------------------------------------ admission

    def try_acquire(self, uid: str, namespace: str) -> Admission:
        """Ask to create a sandbox for ``uid`` now. A grant takes a token from every rate bucket
        and reserves a slot in ``namespace``; a refusal keeps (or takes) ``uid``'s place in line."""
        now = self._clock()
        self._expire(now)
        waiter = self._waiters.get(uid)
        seq = waiter.seq if waiter is not None else math.inf

        if self._per_namespace is not None and uid not in self._live:
            ahead = sum(
                1
                for other_uid, w in self._waiters.items()
                if w.namespace == namespace and w.seq < seq and other_uid not in self._live
            )
            live = self._live_per_namespace[namespace]
            if self._per_namespace - live <= ahead:
                retry = self._namespace_retry_s
                self._wait(uid, namespace, "namespace", now, retry)
                queue = f"; {ahead} earlier request{'s' if ahead != 1 else ''} waiting" if ahead else ""
                return Admission(
                    granted=False,
                    scope="namespace",
                    retry_after_s=retry,
                    message=(
                        f"namespace {namespace} already runs {live} sandbox{'es' if live != 1 else ''}"
                        f" (limit {self._per_namespace}){queue}; checking again in {retry:g} s"
                    ),
                )

        for bucket in self._buckets:
            bucket.refill(now)
        ahead = sum(1 for w in self._waiters.values() if w.scope == "operator" and w.seq < seq)
        needed = ahead + 1
        short = [b for b in self._buckets if not b.has(needed)]
        if short:
            binding = max(short, key=lambda b: b.wait_for(needed))
            retry = binding.wait_for(needed)
            self._wait(uid, namespace, "operator", now, retry)
            queue = f"; {ahead} earlier request{'s' if ahead != 1 else ''} waiting" if ahead else ""
            return Admission(
                granted=False,
                scope="operator",
                retry_after_s=retry,
                message=(
                    f"operator-wide creation limit of {binding.describe()} reached{queue};"
                    f" next slot in {retry:.1f} s"
                ),
            )

        for bucket in self._buckets:
            bucket.tokens -= 1.0
        self._waiters.pop(uid, None)
        self.track(uid, namespace)
        return _GRANTED

    def _wait(self, uid: str, namespace: str, scope: Scope, now: float, retry_after_s: float) -> None:
        stale_after = max(2.0 * retry_after_s, retry_after_s + self._stale_grace_s)
        waiter = self._waiters.get(uid)
        if waiter is None:
            self._waiters[uid] = _Waiter(next(self._tickets), namespace, scope, now, stale_after)
        else:
            waiter.namespace, waiter.scope = namespace, scope
            waiter.last_seen, waiter.stale_after_s = now, stale_after

    def _expire(self, now: float) -> None:
        stale = [uid for uid, w in self._waiters.items() if now - w.last_seen > w.stale_after_s]
        for uid in stale:
            del self._waiters[uid]

    # ------------------------------------------------------------------ restarts

    def seed(self, ages_s: Iterable[float]) -> None:
        """Replay creations made ``ages_s`` seconds ago (by an earlier process) into every bucket,
        as if this limiter had granted them: each takes one token at its time, and the bucket
        refills from there. A bucket refills completely within its window, so older ones do not
        matter. Tokens may go below zero (several processes created more than one would have
        allowed): later grants then wait until the debt is refilled."""
        now = self._clock()
        for bucket in self._buckets:
            recent = sorted(now - age for age in ages_s if 0 <= age < bucket.window_s)
            tokens, at = bucket.capacity, now - bucket.window_s
            for when in recent:
                tokens = min(bucket.capacity, tokens + (when - at) * bucket.rate) - 1.0
                at = when
            bucket.tokens = min(bucket.capacity, tokens + (now - at) * bucket.rate)
            bucket.at = now

    def drain(self) -> None:
        """Empty every bucket: the history is unknown, so the next grant waits for one refill."""
        now = self._clock()
        for bucket in self._buckets:
            bucket.tokens, bucket.at = 0.0, now

    # ------------------------------------------------------------------ live sandboxes

    def track(self, uid: str, namespace: str) -> None:
        """``uid`` has a sandbox (created or adopted). Idempotent; it never refuses: an adopted
        sandbox exists whether or not the cap allows it, and it must count against the cap."""
        self._waiters.pop(uid, None)
        old = self._live.get(uid)
        if old == namespace:
            return
        if old is not None:
            self._drop(uid)
        self._live[uid] = namespace
        self._live_per_namespace[namespace] += 1

    def release(self, uid: str) -> None:
        """``uid`` no longer has a sandbox (deleted, orphaned, or its creation failed and nothing
        was left behind). Idempotent; also gives up its place in line."""
        self._waiters.pop(uid, None)
        if uid in self._live:
            self._drop(uid)

    def _drop(self, uid: str) -> None:
        namespace = self._live.pop(uid)
        self._live_per_namespace[namespace] -= 1
        if self._live_per_namespace[namespace] <= 0:
            del self._live_per_namespace[namespace]

    # ------------------------------------------------------------------ introspection

    def live(self, namespace: str) -> int:
        """Sandboxes counted against ``namespace``'s cap."""
        return self._live_per_namespace[namespace]

    def waiting(self) -> list[str]:
        """Uids in line, earliest first (stale ones included until the next request drops them)."""
        return [uid for uid, _ in sorted(self._waiters.items(), key=lambda item: item[1].seq)]
