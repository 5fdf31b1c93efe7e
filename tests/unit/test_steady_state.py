"""Issue 19's steady-state budget, as behaviour: what a quiet resource costs the API server and E2B.

A lease renewal with nothing else changed writes no status; ``expiresAt`` is rewritten only before
the next renewal could find it passed (or when the real end comes earlier), carrying the spend
refresh in the same write; health probes never come more often than one per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from tests.unit.test_lifecycle import REF, SPEC, FakeBackend, Recorder, _ready, _runtime, _spec, _status

from swarm_operator import lifecycle
from swarm_operator.config import Settings
from swarm_operator.lifecycle.keeper import Clock, _Phased, run
from swarm_operator.lifecycle.lease import expiry_due


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_a_renewal_with_nothing_else_changed_writes_no_status() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime, sid = await _ready(backend, recorder)
    writes = len(recorder.patches)
    for _ in range(3):  # what three renewals in a row (≈ 360 s apart in life) see: the end as written
        await lifecycle.renew_lease(REF, _spec(SPEC), _status(recorder.status()), runtime)
    assert [s for s, _ in backend.timeouts] == [sid] * 3  # the lease was renewed each time (E2B) ...
    assert len(recorder.patches) == writes  # ... and the API server saw nothing


async def test_expires_at_is_rewritten_before_the_next_renewal_could_find_it_passed() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime, sid = await _ready(backend, recorder)
    status = recorder.status()
    # The end as written is 100 s away: the next renewal may come 132 s from now (120 s ± 10 %).
    near = datetime.now(UTC) + timedelta(seconds=100)
    old_cost = status["cost"]
    status["sandbox"] = {**status["sandbox"], "expiresAt": near.isoformat()}
    status["cost"] = {**old_cost, "asOf": (datetime.now(UTC) - timedelta(seconds=200)).isoformat()}
    writes = len(recorder.patches)
    await lifecycle.renew_lease(REF, _spec(SPEC), _status(status), runtime)
    [patch] = recorder.patches[writes:]
    assert _when(patch["sandbox"]["expiresAt"]) >= datetime.now(UTC) + timedelta(seconds=590)
    # The spend refresh rides in the same write: its clock restarts, no second write follows.
    assert _when(patch["cost"]["asOf"]) >= datetime.now(UTC) - timedelta(seconds=2)
    assert patch["phase"] == "Ready"


def test_with_the_defaults_a_renewing_lease_writes_at_most_once_per_500_s_and_never_shows_a_past_end() -> (
    None
):
    settings = Settings()
    rng = random.Random(19)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    written, now, writes, horizon = t0 + timedelta(seconds=settings.lease_seconds), t0, 0, 36_000
    while (now - t0).total_seconds() < horizon:
        now += timedelta(seconds=settings.lease_renew_seconds * rng.uniform(0.9, 1.1))  # the daemon
        assert written > now, "status showed a lease end that had passed while renewals ran"
        expires = now + timedelta(seconds=settings.lease_seconds)
        if expiry_due(written, expires, now, settings.lease_renew_seconds):
            written, writes = expires, writes + 1
    assert writes <= horizon / 500  # 2 writes/s per 1,000 resources, the spend refresh included
    # The spend refresh's own cadence is longer, so with the lease renewing it never fires alone.
    assert settings.cost_refresh_minutes * 60 > settings.lease_seconds - settings.lease_renew_seconds


def test_an_end_moved_earlier_is_always_written() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    written = now + timedelta(seconds=600)
    assert expiry_due(written, now + timedelta(seconds=300), now, 120)  # the cap shortened it
    assert not expiry_due(written, now + timedelta(seconds=600), now, 120)
    assert expiry_due(None, now + timedelta(seconds=600), now, 120)


@pytest.mark.parametrize("interval", [5.0, 30.0, 300.0])
def test_probes_never_come_more_often_than_one_per_interval(interval: float) -> None:
    random.seed(19)
    starts = [_Phased() for _ in range(1000)]  # a thousand resources' daemons started together
    first = [phased(interval) for phased in starts]
    later = [phased(interval) for phased in starts for _ in range(20)]
    assert all(pause == interval for pause in later)  # never shorter, so ≤ one probe per interval
    # The first pauses spread the probes evenly over one interval (an operator restart).
    assert all(0 <= pause < interval for pause in first)
    assert statistics.mean(first) == pytest.approx(interval / 2, rel=0.05)
    buckets = [sum(1 for p in first if k * interval / 10 <= p < (k + 1) * interval / 10) for k in range(10)]
    assert min(buckets) > 60 and max(buckets) < 140, buckets


async def test_ready_records_the_setup_runs_verdict_so_the_first_quiet_probe_writes_nothing() -> None:
    from tests.unit.test_health import CountingBackend, _check, _probe
    from tests.unit.test_quarantine import _ready as _ready_probed

    backend, recorder = CountingBackend(), Recorder()
    runtime = await _ready_probed(backend, recorder)
    health = recorder.status()["health"]
    assert health["status"] == "Healthy" and health["lastProbeTime"]
    writes = len(recorder.patches)
    backend.probes = [_probe(alive=2)]
    await _check(runtime, recorder)
    assert len(recorder.patches) == writes, "the first quiet probe after Ready wrote status"


class _Flag:
    """kopf's DaemonStopped as the keeper uses it: truthy once set, and a wait with a timeout."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)


async def test_one_keeper_runs_each_clock_at_its_own_cadence_one_at_a_time() -> None:
    runtime = _runtime(FakeBackend(), Recorder())
    body = {"metadata": {"namespace": "ns", "name": "swarm", "uid": "uid-1", "generation": 1}, "spec": SPEC}
    runs: list[str] = []
    busy = [False]

    def work(name: str) -> Any:
        async def run(*_: Any) -> None:
            assert not busy[0], "two clocks ran at once"
            busy[0] = True
            runs.append(name)
            await asyncio.sleep(0.01)
            busy[0] = False

        return run

    clocks = [Clock("fast", work("fast"), lambda: 0.05), Clock("slow", work("slow"), lambda: 0.2)]
    stopped = _Flag()
    loop = asyncio.create_task(run(stopped, asyncio.Event(), kopf.Body(body), runtime, clocks))
    await asyncio.sleep(1.0)
    stopped.event.set()
    await asyncio.wait_for(loop, 1.0)  # ends as soon as the daemon is stopped
    fast, slow = runs.count("fast"), runs.count("slow")
    assert fast <= 1.0 / 0.05 and slow <= 1.0 / 0.2, runs  # never more often than its interval
    assert fast > 2 * slow >= 4, runs  # each at its own cadence (late under load, never early)


def test_the_operator_registers_one_daemon_per_resource() -> None:
    import swarm_operator.handlers  # noqa: F401  (registers with kopf's default registry)

    daemons = [h for h in kopf.get_default_registry()._spawning.get_all_handlers() if h.id]
    assert [h.id for h in daemons] == ["keeper"]
