"""Bounded retries with exponential backoff and full jitter.

The SDK's own response retries are switched off (``retries=0``) so that this module is the one place
deciding: the SDK would otherwise wait up to 10 s per attempt on a 429 meant for the concurrency cap
and repeat a ``create`` whose 502 may have started a sandbox. Connection failures *before* a request
was written are still retried inside the SDK's transport; those can never have reached the server.

Full jitter (a delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``) spreads the retries
of many resources failing together — the usual case when E2B has a hiccup — instead of having them
return in lockstep.

Why not tenacity: it has the pieces (``wait_random_exponential``, ``stop_after_attempt``,
``stop_before_delay``), but what this module adds is exactly what tenacity leaves to the caller: each
attempt is *given* its time budget (its timeout cut to what is left of the deadline), a ``Retry-After``
is a floor on the wait and one longer than ``max_delay_s`` is raised at once for the lifecycle to
schedule, and the clock, sleep and randomness are injected so tests/unit/test_backend_retry.py runs
the schedule deterministically without waiting. Expressing that in tenacity takes a custom wait, a
custom stop, a budget closure and a clock it cannot be given — more code than this loop — and would
add a runtime dependency to the image's hash-locked set.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._errors import BackendError

__all__ = ["NO_RETRY", "RetryPolicy", "backoff_delay", "call_with_retry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one backend call tries before giving up.

    ``attempts`` counts the first try. ``deadline_s`` bounds the whole call, waits included: no
    attempt starts after it and each attempt's own timeout is cut to what is left of it. A failure
    whose ``retry_after_s`` exceeds ``max_delay_s`` (the quota's long backoff) is not waited for
    within the call: it is raised for the caller to schedule.
    """

    attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    deadline_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try and must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.deadline_s <= 0:
            raise ValueError("delays must be non-negative and the deadline positive")


NO_RETRY = RetryPolicy(attempts=1)
"""For calls that must not be repeated (e.g. a script that is not idempotent)."""


def backoff_delay(attempt: int, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> float:
    """The full-jitter wait before retry number ``attempt`` (0 for the first retry)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2.0 ** min(attempt, 32)))
    return ceiling * rng()


async def call_with_retry(
    attempt_fn: Callable[[float], Awaitable[T]],
    *,
    policy: RetryPolicy,
    attempt_timeout_s: float,
    should_retry: Callable[[BackendError], bool] = lambda e: e.transient,
    on_retry: Callable[[BackendError, int, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``attempt_fn(timeout_s)`` until it returns, or raise its last :class:`BackendError`.

    ``attempt_fn`` gets the time budget of its attempt — ``attempt_timeout_s`` cut to what is left
    of the policy's deadline — and must raise only :class:`BackendError` (already classified).
    ``should_retry`` narrows the transient errors further (``create`` refuses ambiguous ones).
    ``on_retry(error, attempt, delay)`` is told about every retry before its wait.
    """
    deadline = clock() + policy.deadline_s
    attempt = 0
    while True:
        remaining = deadline - clock()
        try:
            return await attempt_fn(max(0.001, min(attempt_timeout_s, remaining)))
        except BackendError as err:
            attempt += 1
            if attempt >= policy.attempts or not err.transient or not should_retry(err):
                raise
            if err.retry_after_s is not None and err.retry_after_s > policy.max_delay_s:
                raise
            delay = max(err.retry_after_s or 0.0, backoff_delay(attempt - 1, policy, rng))
            if clock() + delay >= deadline:
                raise
            if on_retry is not None:
                on_retry(err, attempt, delay)
            await sleep(delay)
