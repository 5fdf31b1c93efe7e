"""call_with_retry(): full-jitter backoff, bounded attempts, an overall deadline, no retry of
non-transient or over-long-backoff errors. Clock, sleep and randomness are injected: no real waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_operator.backend import (
    NO_RETRY,
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    QuotaExceeded,
    RateLimited,
    RetryPolicy,
    backoff_delay,
    call_with_retry,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Fails with the given errors in turn, then returns "done"; records each attempt's budget."""

    def __init__(self, *errors: BackendError, cost_s: float = 0.0, time: FakeTime | None = None):
        self.errors = list(errors)
        self.budgets: list[float] = []
        self.cost_s = cost_s
        self.time = time

    async def __call__(self, budget: float) -> str:
        self.budgets.append(budget)
        if self.time is not None:
            self.time.now += self.cost_s
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def run(fn: Flaky, time: FakeTime, policy: RetryPolicy, **kw: object) -> str:
    return await call_with_retry(
        fn,
        policy=policy,
        attempt_timeout_s=10.0,
        sleep=time.sleep,
        clock=time.clock,
        rng=lambda: 1.0,
        **kw,  # type: ignore[arg-type]
    )


async def test_transient_errors_are_retried_with_exponential_waits() -> None:
    time = FakeTime()
    fn = Flaky(BackendUnavailable("a"), RateLimited("b"))
    policy = RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=10, deadline_s=60)
    assert await run(fn, time, policy) == "done"
    assert len(fn.budgets) == 3
    assert time.sleeps == [0.5, 1.0]  # rng=1.0 gives the ceiling: base * 2**n


async def test_waits_are_capped() -> None:
    time = FakeTime()
    fn = Flaky(*[BackendUnavailable("x") for _ in range(5)])
    policy = RetryPolicy(attempts=6, base_delay_s=1, max_delay_s=3, deadline_s=600)
    await run(fn, time, policy)
    assert time.sleeps == [1, 2, 3, 3, 3]


async def test_non_transient_errors_raise_at_once() -> None:
    time = FakeTime()
    fn = Flaky(AuthenticationFailed("bad key"))
    with pytest.raises(AuthenticationFailed):
        await run(fn, time, RetryPolicy())
    assert len(fn.budgets) == 1 and time.sleeps == []


async def test_attempts_are_bounded() -> None:
    time = FakeTime()
    fn = Flaky(*[BackendUnavailable(str(i)) for i in range(10)])
    with pytest.raises(BackendUnavailable) as info:
        await run(fn, time, RetryPolicy(attempts=3, base_delay_s=0.01))
    assert len(fn.budgets) == 3
    assert info.value.message == "2"  # the last error is the one raised


async def test_no_retry_policy_tries_once() -> None:
    time = FakeTime()
    fn = Flaky(BackendUnavailable("x"))
    with pytest.raises(BackendUnavailable):
        await run(fn, time, NO_RETRY)
    assert len(fn.budgets) == 1


async def test_overall_deadline_stops_retrying_and_cuts_attempt_budgets() -> None:
    time = FakeTime()
    fn = Flaky(*[BackendUnavailable(str(i)) for i in range(10)], cost_s=4.0, time=time)
    policy = RetryPolicy(attempts=10, base_delay_s=1, max_delay_s=1, deadline_s=12)
    with pytest.raises(BackendUnavailable):
        await run(fn, time, policy)
    # t=0: attempt (4s) wait 1 -> t=5: attempt (4s) wait 1 -> t=10: attempt gets 2s, fails at 14.
    assert fn.budgets == [10.0, 7.0, 2.0]
    assert time.now <= 12 + 4


async def test_long_retry_after_is_left_to_the_caller() -> None:
    time = FakeTime()
    fn = Flaky(QuotaExceeded("full"))
    with pytest.raises(QuotaExceeded) as info:
        await run(fn, time, RetryPolicy(max_delay_s=5))
    assert info.value.retry_after_s == 60.0
    assert time.sleeps == []


async def test_short_retry_after_is_honoured() -> None:
    time = FakeTime()
    fn = Flaky(RateLimited("slow down", retry_after_s=2.5))
    await call_with_retry(
        fn,
        policy=RetryPolicy(base_delay_s=0.1, max_delay_s=5),
        attempt_timeout_s=1,
        sleep=time.sleep,
        clock=time.clock,
        rng=lambda: 0.0,
    )
    assert time.sleeps == [2.5]


async def test_should_retry_can_refuse_a_transient_error() -> None:
    time = FakeTime()
    fn = Flaky(BackendUnavailable("timed out", ambiguous=True))
    with pytest.raises(BackendUnavailable):
        await run(fn, time, RetryPolicy(), should_retry=lambda e: not e.ambiguous)
    assert len(fn.budgets) == 1


async def test_on_retry_hears_about_every_retry() -> None:
    time = FakeTime()
    heard: list[tuple[str, int, float]] = []
    fn = Flaky(BackendUnavailable("a"), BackendUnavailable("b"))
    await run(
        fn,
        time,
        RetryPolicy(base_delay_s=1),
        on_retry=lambda e, n, d: heard.append((e.message, n, d)),
    )
    assert heard == [("a", 1, 1.0), ("b", 2, 2.0)]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline_s=0)


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=100),
    r=st.floats(min_value=0, max_value=1),
)
def test_full_jitter_stays_within_its_ceiling(attempt: int, base: float, cap: float, r: float) -> None:
    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap)
    delay = backoff_delay(attempt, policy, lambda: r)
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt, 32)) + 1e-9
