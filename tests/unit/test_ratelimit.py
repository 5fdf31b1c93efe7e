"""CreationLimiter against a fake clock: rates, exact retry-after, namespace cap, FIFO fairness."""

from __future__ import annotations

from collections import Counter
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_operator.ratelimit import Admission, CreationLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(
    clock: FakeClock,
    per_minute: float | None = None,
    per_hour: float | None = None,
    per_namespace: int | None = None,
    **kw: float,
) -> CreationLimiter:
    return CreationLimiter(per_minute, per_hour, per_namespace, clock=clock, **kw)


def test_no_limits_grants_everything() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    assert all(lim.try_acquire(f"u{i}", "ns") for i in range(1000))
    assert lim.live("ns") == 1000
    assert lim.waiting() == []


def test_per_minute_burst_then_exact_retry_after() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=60)
    assert all(lim.try_acquire(f"u{i}", "ns") for i in range(60))
    refused = lim.try_acquire("late", "ns")
    assert refused == Admission(
        granted=False,
        scope="operator",
        retry_after_s=1.0,
        message="operator-wide creation limit of 60/min reached; next slot in 1.0 s",
    )
    assert not refused
    clock.advance(0.25)
    assert lim.try_acquire("late", "ns").retry_after_s == pytest.approx(0.75)
    clock.advance(0.75)
    assert lim.try_acquire("late", "ns").granted


def test_per_minute_rate_is_honoured_over_simulated_minutes() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=60)
    start, granted, i = clock.now, 0, 0
    # A caller that always comes back exactly when told gets the burst and then the rate.
    while clock.now - start <= 600.0:
        answer = lim.try_acquire(f"u{i}", "ns")
        if answer:
            granted += 1
            i += 1
        else:
            clock.advance(answer.retry_after_s)
    assert granted == 60 + 600


def test_per_hour_limit_and_the_binding_window_is_named() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=10, per_hour=20)
    assert all(lim.try_acquire(f"a{i}", "ns") for i in range(10))
    first = lim.try_acquire("x", "ns")
    assert first.retry_after_s == pytest.approx(6.0)  # the minute bucket refills first
    assert "10/min" in first.message
    clock.advance(60.0)
    assert all(lim.try_acquire(f"b{i}", "ns") for i in range(10))  # x is served first, then 9 more
    assert "x" not in lim.waiting()
    # Twenty in the first hour's burst; the hour bucket now holds 60 s of refill (1/3 token).
    refused = lim.try_acquire("y", "ns")
    assert refused.scope == "operator"
    assert "20/h" in refused.message
    assert refused.retry_after_s == pytest.approx((1 - 60 * 20 / 3600) * 3600 / 20)
    clock.advance(refused.retry_after_s)
    assert lim.try_acquire("y", "ns").granted


def test_fractional_rate() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=0.5)
    assert lim.try_acquire("a", "ns")
    refused = lim.try_acquire("b", "ns")
    assert refused.retry_after_s == pytest.approx(120.0)
    assert "0.5/min" in refused.message


def test_invalid_limits_are_refused() -> None:
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            CreationLimiter(bad, None, None)
    with pytest.raises(ValueError):
        CreationLimiter(None, None, -1)


def test_namespace_cap() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_namespace=2, namespace_retry_s=20.0)
    assert lim.try_acquire("a", "team-a")
    assert lim.try_acquire("b", "team-a")
    refused = lim.try_acquire("c", "team-a")
    assert refused == Admission(
        granted=False,
        scope="namespace",
        retry_after_s=20.0,
        message="namespace team-a already runs 2 sandboxes (limit 2); checking again in 20 s",
    )
    assert lim.try_acquire("d", "team-b")  # other namespaces are unaffected
    # A resource that already holds a slot (its sandbox vanished; it creates again) needs no new one.
    assert lim.try_acquire("a", "team-a")
    assert lim.live("team-a") == 2
    lim.release("a")
    assert lim.try_acquire("c", "team-a")
    assert lim.live("team-a") == 2


def test_track_and_release_are_idempotent_and_count_a_uid_once() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_namespace=2)
    lim.track("a", "ns")
    lim.track("a", "ns")
    assert lim.try_acquire("a", "ns")  # granting a tracked uid does not count it again
    assert lim.live("ns") == 1
    lim.track("b", "ns")
    lim.track("c", "ns")  # adoption beyond the cap is counted, never refused
    assert lim.live("ns") == 3
    assert lim.try_acquire("d", "ns").scope == "namespace"
    lim.release("c")
    lim.release("c")
    lim.release("never-tracked")
    assert lim.live("ns") == 2
    assert not lim.try_acquire("d", "ns")
    lim.release("b")
    assert lim.try_acquire("d", "ns")


def test_fifo_earlier_waiter_gets_the_next_token() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=1)
    assert lim.try_acquire("a", "ns")
    b = lim.try_acquire("b", "ns")
    assert b.retry_after_s == pytest.approx(60.0)
    clock.advance(30.0)
    c = lim.try_acquire("c", "ns")
    # c's token is the second to come: 1.5 tokens away at one per minute.
    assert c.retry_after_s == pytest.approx(90.0)
    assert c.message == (
        "operator-wide creation limit of 1/min reached; 1 earlier request waiting; next slot in 90.0 s"
    )
    assert lim.waiting() == ["b", "c"]
    clock.advance(30.0)
    assert not lim.try_acquire("c", "ns")  # the token that just arrived is b's
    assert lim.try_acquire("b", "ns")
    assert lim.waiting() == ["c"]
    clock.advance(59.0)
    assert not lim.try_acquire("c", "ns")
    clock.advance(1.0)
    assert lim.try_acquire("c", "ns")
    assert lim.waiting() == []


def test_surplus_tokens_are_not_held_back_by_waiters() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=10, stale_grace_s=60.0)
    assert all(lim.try_acquire(f"a{i}", "ns") for i in range(10))
    assert not lim.try_acquire("w", "ns")
    clock.advance(30.0)  # five tokens: one reserved for w, four for anyone
    assert all(lim.try_acquire(f"n{i}", "ns") for i in range(4))
    assert not lim.try_acquire("n4", "ns")
    assert lim.try_acquire("w", "ns")


def test_stale_waiter_stops_blocking_the_queue() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=1, stale_grace_s=10.0)
    assert lim.try_acquire("a", "ns")
    assert lim.try_acquire("gone", "ns").retry_after_s == pytest.approx(60.0)  # never asks again
    clock.advance(10.0)
    assert not lim.try_acquire("c", "ns")
    clock.advance(110.0)  # 120 s after gone's refusal: exactly 2 × its retry_after, not yet stale
    assert not lim.try_acquire("c", "ns")
    assert lim.waiting() == ["gone", "c"]
    clock.advance(0.5)
    assert lim.try_acquire("c", "ns")
    assert lim.waiting() == []


def test_waiter_that_asks_again_stays_in_line() -> None:
    clock = FakeClock(0.0)
    lim = limiter(clock, per_minute=1, stale_grace_s=10.0)
    assert lim.try_acquire("a", "ns")
    # b is refused first; the newcomer arrives a second later. Both come back when told to, the
    # newcomer first whenever they are due at the same time.
    due = {"b": 0.0, "newcomer": 1.0}
    order: list[str] = []
    while due:
        uid = min(due, key=lambda u: (due[u], u != "newcomer"))
        clock.now = due[uid]
        answer = lim.try_acquire(uid, "ns")
        if answer:
            order.append(uid)
            del due[uid]
        else:
            due[uid] = clock.now + answer.retry_after_s
    assert order == ["b", "newcomer"]
    assert clock.now == pytest.approx(120.0)  # b at 60 s, the newcomer one token later


def test_a_late_waiter_keeps_its_place_within_the_grace() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=60, stale_grace_s=10.0)
    assert all(lim.try_acquire(f"a{i}", "ns") for i in range(60))
    assert lim.try_acquire("b", "ns").retry_after_s == pytest.approx(1.0)
    clock.advance(10.5)  # b was told 1 s; it is late, but within 1 s + 10 s of grace
    assert lim.try_acquire("c", "ns")  # any request drops stale waiters first
    assert lim.waiting() == ["b"]
    clock.advance(1.0)  # 11.5 s: b is stale now
    assert lim.try_acquire("d", "ns")
    assert lim.waiting() == []


def test_release_gives_up_the_place_in_line() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=1)
    assert lim.try_acquire("a", "ns")
    assert not lim.try_acquire("b", "ns")
    lim.release("b")  # b's resource was deleted while it waited
    clock.advance(60.0)
    assert lim.try_acquire("c", "ns")


def test_namespace_waiters_keep_their_place() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_namespace=1)
    assert lim.try_acquire("a", "ns")
    assert not lim.try_acquire("b", "ns")
    clock.advance(1.0)
    assert not lim.try_acquire("c", "ns")
    lim.release("a")
    clock.advance(1.0)
    refused = lim.try_acquire("c", "ns")
    assert refused.scope == "namespace"
    assert refused.message.startswith(
        "namespace ns already runs 0 sandboxes (limit 1); 1 earlier request waiting"
    )
    assert lim.try_acquire("b", "ns")


def test_namespace_waiters_do_not_hold_operator_tokens() -> None:
    clock = FakeClock()
    lim = limiter(clock, per_minute=1, per_namespace=1)
    assert lim.try_acquire("a", "full")
    clock.advance(60.0)
    assert lim.try_acquire("b", "full").scope == "namespace"
    assert lim.try_acquire("d", "other")  # the token is not reserved for b, who waits for a slot


# --------------------------------------------------------------------------- property


operations = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=45.0, allow_nan=False),
        st.sampled_from(["acquire", "acquire", "acquire", "track", "release"]),
        st.integers(min_value=0, max_value=7),
        st.integers(min_value=0, max_value=2),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=6),
    per_hour=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    per_namespace=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
    ops=operations,
)
def test_limits_hold_for_any_sequence(
    per_minute: int,
    per_hour: int | None,
    per_namespace: int | None,
    ops: list[tuple[float, str, int, int]],
) -> None:
    clock = FakeClock(0.0)
    lim = CreationLimiter(per_minute, per_hour, per_namespace, clock=clock)
    grants: list[float] = []
    live: dict[str, str] = {}  # the model: uid → namespace of every uid holding a slot
    for dt, kind, u, n in ops:
        clock.advance(dt)
        uid, ns = f"u{u}", f"ns{u % 3 if kind != 'acquire' else n}"
        if kind == "track":
            ns = live.get(uid, ns)
            lim.track(uid, ns)
            live[uid] = ns
        elif kind == "release":
            lim.release(uid)
            live.pop(uid, None)
        else:
            ns = live.get(uid, ns)  # a uid lives in one namespace
            others = Counter(v for k, v in live.items() if k != uid)[ns]
            answer = lim.try_acquire(uid, ns)
            if answer:
                grants.append(clock.now)
                if per_namespace is not None and uid not in live:
                    assert others < per_namespace
                live[uid] = ns
            else:
                assert answer.retry_after_s > 0
                assert answer.scope in ("operator", "namespace")
                if answer.scope == "namespace":
                    assert per_namespace is not None and uid not in live
        assert {k: lim.live(k) for k in ("ns0", "ns1", "ns2")} == {
            k: Counter(live.values())[k] for k in ("ns0", "ns1", "ns2")
        }
    for limit, window in ((per_minute, 60.0), (per_hour, 3600.0)):
        if limit is None:
            continue
        for start in grants:
            in_window = sum(1 for t in grants if start <= t < start + window)
            assert in_window <= 2 * limit  # the bucket's burst plus one window of refill
        # The bucket's exact promise: between any two grants, no more than a full bucket plus
        # what refilled in between.
        for i, first in enumerate(grants):
            for j in range(i, len(grants)):
                assert j - i + 1 <= limit + limit * (grants[j] - first) / window + 1e-6


# -- issue 16, hole 4: a restart does not reset the allowance


def test_seed_replays_earlier_creations_so_a_restart_gets_no_fresh_burst() -> None:
    clock = [1000.0]
    limiter = CreationLimiter(2, 3, None, clock=lambda: clock[0])
    limiter.seed([10.0, 20.0, 4000.0])  # two within the minute, one older than the hour
    refused = limiter.try_acquire("u", "ns")
    assert not refused and refused.scope == "operator"
    # Per minute: 2 tokens, two taken 20 s and 10 s ago, refilled at 2/min since -> 0.67 tokens
    # now; per hour: 3 tokens, two taken -> ~1.01. The minute bucket binds: 1 token in ~10 s.
    assert 9.0 < refused.retry_after_s < 11.0
    clock[0] += refused.retry_after_s
    assert limiter.try_acquire("u", "ns")


def test_seed_ignores_creations_older_than_every_window() -> None:
    limiter = CreationLimiter(1, None, None, clock=lambda: 0.0)
    limiter.seed([61.0, 3600.0])
    assert limiter.try_acquire("u", "ns")


def test_seed_keeps_the_debt_of_more_creations_than_the_limit_allowed() -> None:
    clock = [0.0]
    limiter = CreationLimiter(1, None, None, clock=lambda: clock[0])
    limiter.seed([1.0, 2.0, 3.0])  # three in a minute under a 1/min limit (several processes)
    refused = limiter.try_acquire("u", "ns")
    assert not refused and refused.retry_after_s > 60


def test_drain_makes_the_next_create_wait_one_refill() -> None:
    clock = [0.0]
    limiter = CreationLimiter(6, None, None, clock=lambda: clock[0])
    limiter.drain()
    refused = limiter.try_acquire("u", "ns")
    assert not refused and refused.retry_after_s == pytest.approx(10.0)


async def test_the_operator_seeds_its_limiter_from_e2bs_list_at_start() -> None:
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from swarm_operator.backend import BackendUnavailable
    from swarm_operator.config import Settings
    from swarm_operator.lifecycle.startup import seed_limiter
    from swarm_operator.names import TAG_OPERATOR

    now = datetime.now(UTC)
    sandboxes = [
        SimpleNamespace(started_at=now - timedelta(seconds=s), metadata={TAG_OPERATOR: "op"}) for s in (5, 15)
    ]
    seen: list[dict[str, str]] = []

    class Backend:
        error: Exception | None = None

        async def list(self, metadata: dict[str, str], **_: object) -> list[SimpleNamespace]:
            seen.append(dict(metadata))
            if self.error:
                raise self.error
            return sandboxes

    class Secrets:
        async def read_many(self, refs: object, **_: object) -> dict[object, str]:
            return {"ref": "e2b_key"}

    backend = Backend()
    runtime = SimpleNamespace(
        settings=Settings(operator_id="op"),
        secrets=Secrets(),
        backends=SimpleNamespace(for_key=lambda key: backend),
        limiter=CreationLimiter(2, None, None),
    )
    assert await seed_limiter(runtime, timeout_s=5) == 2  # type: ignore[arg-type]
    assert seen == [{TAG_OPERATOR: "op"}]
    assert not runtime.limiter.try_acquire("u", "ns")
    backend.error = BackendUnavailable("E2B answered 502")
    runtime.limiter = CreationLimiter(2, None, None)
    assert await seed_limiter(runtime, timeout_s=5) is None  # type: ignore[arg-type]
    assert not runtime.limiter.try_acquire("u", "ns")  # drained: unknown history
