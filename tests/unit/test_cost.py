"""The cost ledger's arithmetic over hand-overs, pauses and operator restarts, as properties.

A "history" is what happened to a resource's sandboxes, second by second: intervals in which a
sandbox of some size was running, paused, or there was none. The ledger is fed the history the way the
lifecycle will feed it (one accrual per change, plus cadence refreshes at arbitrary moments, some
through a round trip to status and back as after an operator restart) and must agree with the plain
sum over the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_operator.config import Settings
from swarm_operator.cost import (
    E2B_USD_PER_GIB_SECOND,
    E2B_USD_PER_VCPU_SECOND,
    Meter,
    Prices,
    Size,
    accrue,
    check_budget,
    estimate,
    hourly_rate,
    seconds_until_exceeded,
    should_refresh,
)
from swarm_operator.model import BudgetSpec, CostStatus, SwarmSandboxSpec, SwarmSandboxStatus

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
PRICES = Prices()


@dataclass(frozen=True)
class Interval:
    meter: Meter
    size: Size | None
    seconds: float
    #: Moments (as fractions of the interval) at which a cadence refresh re-accrues in the same state.
    refreshes: tuple[float, ...]
    #: Whether the ledger goes through status (JSON) and back before the interval starts: a restart.
    reload: bool


sizes = st.builds(Size, vcpu=st.integers(1, 16), memory_mib=st.sampled_from([512, 1024, 2048, 4096, 8192]))
intervals = st.builds(
    Interval,
    meter=st.sampled_from(["Running", "Paused", "Stopped"]),
    size=sizes,
    seconds=st.floats(0, 7200, allow_nan=False),
    refreshes=st.lists(st.floats(0, 1), max_size=3).map(lambda xs: tuple(sorted(xs))),
    reload=st.booleans(),
)
histories = st.lists(intervals, min_size=1, max_size=12)
starts = st.floats(0, 1).map(lambda f: T0 + timedelta(seconds=f))


def _reload(ledger: CostStatus) -> CostStatus:
    """What an operator restarted from scratch reads: status written as JSON, read back."""
    patch = SwarmSandboxStatus(cost=ledger).to_patch()
    cost = SwarmSandboxStatus.from_body(patch).cost
    assert cost is not None
    return cost


def _replay(history: list[Interval], start: datetime) -> tuple[CostStatus, list[CostStatus]]:
    """Feed ``history`` to the ledger; returns the final ledger and every ledger seen on the way."""
    now = start
    ledger: CostStatus | None = None
    seen: list[CostStatus] = []
    for interval in history:
        if interval.reload and ledger is not None:
            ledger = _reload(ledger)
        ledger = accrue(ledger, now, interval.meter, interval.size, PRICES)
        seen.append(ledger)
        for fraction in interval.refreshes:
            moment = now + timedelta(seconds=interval.seconds * fraction)
            seen.append(estimate(ledger, moment))
            ledger = accrue(ledger, moment, interval.meter, interval.size, PRICES)
            seen.append(ledger)
        now += timedelta(seconds=interval.seconds)
    assert ledger is not None
    ledger = accrue(ledger, now, "Stopped", None, PRICES)
    seen.append(ledger)
    return ledger, seen


def _whole(moment: datetime) -> int:
    return math.floor((moment - T0).total_seconds())


def _expected(history: list[Interval], start: datetime) -> tuple[int, int, float]:
    """Running seconds, paused seconds and USD straight from the history. The ledger charges whole
    seconds between whole-second boundaries (asOf is stored in whole seconds)."""
    running = paused = 0
    usd = 0.0
    begin = start
    for interval in history:
        end = begin + timedelta(seconds=interval.seconds)
        seconds = _whole(end) - _whole(begin)
        if interval.meter == "Running":
            running += seconds
            usd += hourly_rate(interval.size, PRICES) * seconds / 3600  # type: ignore[arg-type]
        elif interval.meter == "Paused":
            paused += seconds
        begin = end
    return running, paused, usd


@settings(max_examples=300, deadline=None)
@given(history=histories, start=starts)
def test_spend_never_decreases(history: list[Interval], start: datetime) -> None:
    _, seen = _replay(history, start)
    for before, after in zip(seen, seen[1:], strict=False):
        assert after.sandbox_seconds >= before.sandbox_seconds
        assert after.paused_seconds >= before.paused_seconds
        assert after.estimated_usd >= before.estimated_usd
        assert after.as_of is not None and before.as_of is not None and after.as_of >= before.as_of


@settings(max_examples=300, deadline=None)
@given(history=histories, start=starts)
def test_totals_equal_the_history_summed_over_handovers_pauses_and_restarts(
    history: list[Interval], start: datetime
) -> None:
    """Hand-overs sum, paused time is counted apart and never billed, a reload resets nothing."""
    ledger, _ = _replay(history, start)
    running, paused, usd = _expected(history, start)
    assert ledger.sandbox_seconds == running
    assert ledger.paused_seconds == paused
    assert ledger.estimated_usd == pytest.approx(usd, rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(history=histories, start=starts)
def test_paused_and_stopped_time_is_never_billed(history: list[Interval], start: datetime) -> None:
    """The same history with every running interval removed costs nothing, however long it lasts."""
    idle = [
        Interval(i.meter if i.meter != "Running" else "Paused", i.size, i.seconds, i.refreshes, i.reload)
        for i in history
    ]
    ledger, seen = _replay(idle, start)
    assert ledger.estimated_usd == 0 and ledger.sandbox_seconds == 0
    assert all(s.rate_usd_per_hour == 0 for s in seen)


@settings(max_examples=200, deadline=None)
@given(history=histories, start=starts, downtime=st.floats(0, 3600))
def test_a_restart_neither_resets_nor_double_counts(
    history: list[Interval], start: datetime, downtime: float
) -> None:
    """The operator dies after its last write and a new one reloads the ledger later: the time in
    between is charged once, in the state the dead operator last recorded (E2B kept billing)."""
    ledger, _ = _replay(history[:-1] + [Interval(history[-1].meter, history[-1].size, 0, (), False)], start)
    # The replay stopped the meter at the end; restart from the last state actually metered.
    last = history[-1]
    before = accrue(ledger, ledger.as_of, last.meter, last.size, PRICES)  # type: ignore[arg-type]
    later = before.as_of + timedelta(seconds=downtime)  # type: ignore[operator]
    continuous = accrue(before, later, "Stopped", None, PRICES)
    restarted = accrue(_reload(before), later, "Stopped", None, PRICES)
    assert restarted == continuous
    # timedelta keeps whole microseconds (1.9999999999995 s is 2 s): the elapsed time is later - as_of.
    elapsed = (later - before.as_of).total_seconds()  # type: ignore[operator]
    assert restarted.sandbox_seconds - before.sandbox_seconds == (
        math.floor(elapsed) if last.meter == "Running" else 0
    )
    # Reloading again and accruing at the same moment adds nothing.
    assert accrue(_reload(restarted), later, "Stopped", None, PRICES) == restarted


@given(ledger_at=st.integers(0, 10_000), back=st.floats(0.001, 10_000))
def test_a_clock_stepping_back_charges_nothing(ledger_at: int, back: float) -> None:
    ledger = accrue(None, T0, "Running", Size(2, 512), PRICES)
    ledger = accrue(ledger, T0 + timedelta(seconds=ledger_at), "Running", Size(2, 512), PRICES)
    earlier = ledger.as_of - timedelta(seconds=back)  # type: ignore[operator]
    again = accrue(ledger, earlier, "Running", Size(2, 512), PRICES)
    assert again.as_of == ledger.as_of and again.sandbox_seconds == ledger.sandbox_seconds
    assert again.estimated_usd == ledger.estimated_usd
    assert estimate(ledger, earlier) == ledger


def test_e2b_published_examples() -> None:
    # e2b.dev/docs/faq/calculate-sandbox-price: the default 2 vCPU + 0.5 GiB is about $0.109/hour.
    assert hourly_rate(Size(2, 512), PRICES) == pytest.approx(0.1089)
    # e2b.dev/docs/billing: 8 vCPU and 4 GB RAM costs $0.468 per hour while running.
    assert hourly_rate(Size(8, 4096), PRICES) == pytest.approx(0.468)
    assert (E2B_USD_PER_VCPU_SECOND, E2B_USD_PER_GIB_SECOND) == (0.000014, 0.0000045)


def test_prices_come_from_the_settings_and_refuse_nonsense() -> None:
    defaults = Prices.from_settings(Settings.from_env({}))
    assert defaults == Prices()
    custom = Prices.from_settings(
        Settings.from_env(
            {"SWARM_PRICE_VCPU_USD_PER_SECOND": "1.4e-05", "SWARM_PRICE_MEMORY_USD_PER_GIB_SECOND": "0"}
        )
    )
    assert custom == Prices(0.000014, 0.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            Prices(bad, 0.0)
    with pytest.raises(ValueError):
        Size(-1, 512)


def test_one_hour_running_then_paused_reads_as_status_writes_it() -> None:
    ledger = accrue(None, T0, "Running", Size(2, 512), PRICES)
    assert ledger.rate_usd_per_hour == pytest.approx(0.1089) and ledger.estimated_usd == 0
    halfway = estimate(ledger, T0 + timedelta(minutes=30, seconds=0.9))
    assert halfway.sandbox_seconds == 1800 and halfway.estimated_usd == pytest.approx(0.1089 / 2)
    paused = accrue(ledger, T0 + timedelta(hours=1), "Paused", None, PRICES)
    later = estimate(paused, T0 + timedelta(hours=5))
    assert later.sandbox_seconds == 3600 and later.paused_seconds == 4 * 3600
    assert later.estimated_usd == pytest.approx(0.1089) and later.rate_usd_per_hour == 0
    assert (later.vcpu, later.memory_mib) == (2, 512)  # the size is kept for display while paused
    written = SwarmSandboxStatus(cost=paused).to_patch()["cost"]
    assert written == {
        "sandboxSeconds": 3600,
        "pausedSeconds": 0,
        "estimatedUSD": pytest.approx(0.1089),
        "asOf": "2026-11-29T13:00:00Z",
        "state": "Paused",
        "vcpu": 2,
        "memoryMiB": 512,
        "rateUSDPerHour": 0.0,
        "summary": "$0.1089",
    }


@pytest.mark.parametrize(
    ("usd", "summary"),
    [
        (0.0, "$0.0000"),
        (0.01234, "$0.0123"),
        (0.99994, "$0.9999"),
        (1.0, "$1.00"),
        (1234.567, "$1,234.57"),
    ],
)
def test_summary_column_follows_the_figure(usd: float, summary: str) -> None:
    assert CostStatus(estimated_usd=usd).summary == summary
    assert CostStatus.model_validate({"estimatedUSD": usd, "summary": "$999"}).summary == summary


def test_should_refresh_on_cadence_state_and_size_only() -> None:
    written = accrue(None, T0, "Running", Size(2, 512), PRICES)
    assert should_refresh(None, T0, 300, "Running", Size(2, 512))
    assert not should_refresh(written, T0 + timedelta(seconds=299.9), 300, "Running", Size(2, 512))
    assert not should_refresh(written, T0 + timedelta(seconds=299.9), 300, "Running", None)
    assert should_refresh(written, T0 + timedelta(seconds=300), 300, "Running", Size(2, 512))
    assert should_refresh(written, T0 + timedelta(seconds=1), 300, "Paused", Size(2, 512))
    assert should_refresh(written, T0 + timedelta(seconds=1), 300, "Running", Size(4, 512))
    assert should_refresh(CostStatus(), T0, 300, "Stopped", None)  # never brought up to date


def test_budget_by_usd_and_by_hours() -> None:
    ledger = accrue(None, T0, "Running", Size(2, 512), PRICES)  # $0.1089/hour
    budget = BudgetSpec(max_usd=0.1089, max_hours=2)
    assert not check_budget(budget, ledger, T0 + timedelta(seconds=3599)).exceeded
    verdict = check_budget(budget, ledger, T0 + timedelta(hours=1))
    assert verdict.exceeded
    assert "maxUSD $0.1089" in verdict.message and "Suspend" in verdict.message
    assert "maxHours" not in verdict.message  # only the limit reached is named
    hours_only = BudgetSpec.model_validate({"maxHours": 1, "action": "Delete"})
    paused = accrue(ledger, T0 + timedelta(minutes=30), "Paused", None, PRICES)
    # Paused time does not count toward maxHours, however long.
    assert not check_budget(hours_only, paused, T0 + timedelta(days=3)).exceeded
    gone = check_budget(hours_only, ledger, T0 + timedelta(hours=1))
    assert gone.exceeded and "killed" in gone.message and "Delete" in gone.message
    assert not check_budget(None, ledger, T0 + timedelta(days=9)).exceeded
    assert not check_budget(BudgetSpec(), ledger, T0 + timedelta(days=9)).exceeded  # limits cleared
    assert check_budget(BudgetSpec(max_usd=0), None, T0).exceeded  # 0: at once


@given(
    max_usd=st.floats(0.001, 10),
    max_hours=st.one_of(st.none(), st.floats(0.01, 100)),
    size=sizes,
    spent=st.integers(0, 100_000),
)
def test_seconds_until_exceeded_is_when_check_budget_turns(
    max_usd: float, max_hours: float | None, size: Size, spent: int
) -> None:
    start = accrue(None, T0, "Running", size, PRICES)
    budget = BudgetSpec(max_usd=max_usd, max_hours=max_hours)
    now = T0 + timedelta(seconds=spent)
    wait = seconds_until_exceeded(budget, start, now)
    assert wait is not None
    if wait == 0:
        assert check_budget(budget, start, now).exceeded
        return
    assert check_budget(budget, start, now + timedelta(seconds=math.ceil(wait) + 1)).exceeded
    if wait > 2:
        assert not check_budget(budget, start, now + timedelta(seconds=math.floor(wait) - 1)).exceeded
    paused = accrue(start, now, "Paused", None, PRICES)
    assert seconds_until_exceeded(budget, paused, now + timedelta(hours=1)) is None


def test_budget_spec_is_validated_like_the_rest_of_the_spec() -> None:
    spec = SwarmSandboxSpec.from_body({"budget": {"maxUSD": 5, "maxHours": 1.5}})
    assert spec.budget == BudgetSpec(max_usd=5.0, max_hours=1.5, action="Suspend")
    for bad, field in (
        ({"maxUSD": -1}, "maxUSD"),
        ({"action": "Stop"}, "action"),
        ({"maxUsd": 1}, "maxUsd"),
        ({"maxHours": "1"}, "maxHours"),
    ):
        with pytest.raises(ValueError, match=f"spec.budget.{field}"):
            SwarmSandboxSpec.from_body({"budget": bad})


def test_an_unknown_size_reuses_the_last_known_one() -> None:
    """A resume (or a create whose size E2B has not reported yet) is priced at the last known size,
    never at zero once a size was seen; with none ever seen the rate is zero until one is."""
    ledger = accrue(None, T0, "Running", Size(8, 4096), PRICES)
    paused = accrue(ledger, T0 + timedelta(minutes=1), "Paused", None, PRICES)
    resumed = accrue(paused, T0 + timedelta(minutes=2), "Running", None, PRICES)
    assert resumed.rate_usd_per_hour == pytest.approx(0.468)
    assert (resumed.vcpu, resumed.memory_mib) == (8, 4096)
    blind = accrue(None, T0, "Running", None, PRICES)
    assert blind.rate_usd_per_hour == 0 and blind.vcpu is None
    assert accrue(blind, T0 + timedelta(seconds=5), "Running", Size(2, 512), PRICES).rate_usd_per_hour > 0
