"""What a resource's sandboxes cost: pure arithmetic over the ledger kept in ``status.cost``.

E2B bills per second while a sandbox runs, for the vCPU and memory *allocated* to it, whatever the
code inside uses; paused and killed sandboxes are not billed (e2b.dev/docs/faq/calculate-sandbox-price:
``cost = (vCPU x vCPU_rate + RAM_in_GiB x RAM_rate) x seconds_running``). The operator cannot read the
bill, so it keeps an estimate with that formula and a price table that is an operator setting.

Spend grows every second but status must not be written every second, so the ledger
(:class:`~swarm_operator.model.CostStatus`) records figures *up to* ``asOf`` and the state and rate
*since* then. :func:`accrue` charges the time since ``asOf`` at the recorded state and rate, then
switches to the new state and size; :func:`estimate` gives the figures at any later moment without
changing anything; :func:`should_refresh` says when the written figures are due (a coarse cadence,
and every change of state or size). Because the ledger is read back from status, an operator restart
neither resets it nor counts a second twice: the next accrual charges exactly ``now - asOf``, which
covers the time the operator was away (the sandbox kept running, and billing, meanwhile). A hand-over
to a new sandbox is one more accrual with the new size: the sums carry on.

``asOf`` is stored in whole seconds (Kubernetes' time format), so accrual charges whole seconds up to
``now`` truncated; the fraction is charged by the next accrual rather than lost or counted twice.

Nothing here does I/O or reads the clock: callers pass ``now``, which is what makes the properties
above testable (tests/unit/test_cost.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from swarm_operator.config import Settings
from swarm_operator.model import BudgetSpec, CostStatus

__all__ = [
    "E2B_USD_PER_GIB_SECOND",
    "E2B_USD_PER_VCPU_SECOND",
    "BudgetVerdict",
    "Meter",
    "Prices",
    "Size",
    "accrue",
    "check_budget",
    "estimate",
    "hourly_rate",
    "seconds_until_exceeded",
    "should_refresh",
    "spent_today",
    "with_day",
]

#: E2B's published compute prices, read on 2026-11-29 from e2b.dev/docs/faq/calculate-sandbox-price
#: (added by e2b-dev/docs#330, merged 2026-08-06, "rates verified against the live pricing page"):
#: $0.000014 per vCPU per second ($0.0504/hour) and $0.0000045 per GiB of RAM per second
#: ($0.0162/hour); disk is included. The billing page's example agrees: 8 vCPU + 4 GB is $0.468/hour
#: (8 x 0.0504 + 4 x 0.0162). e2b.dev/pricing itself could not be read from here; it is the source
#: of truth and prices can change: override them with SWARM_PRICE_* settings.
E2B_USD_PER_VCPU_SECOND = 0.000014
E2B_USD_PER_GIB_SECOND = 0.0000045

#: What the meter counts from ``asOf`` on: billed, counted apart, or nothing (no sandbox).
Meter = Literal["Running", "Paused", "Stopped"]


@dataclass(frozen=True)
class Prices:
    """The price table: USD per second for one vCPU and for one GiB of memory."""

    usd_per_vcpu_second: float = E2B_USD_PER_VCPU_SECOND
    usd_per_gib_second: float = E2B_USD_PER_GIB_SECOND

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        """The operator's price table (``SWARM_PRICE_*``)."""
        return cls(settings.price_vcpu_usd_per_second, settings.price_memory_usd_per_gib_second)

    def __post_init__(self) -> None:
        for name in ("usd_per_vcpu_second", "usd_per_gib_second"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite price >= 0, got {value!r}")


@dataclass(frozen=True)
class Size:
    """A sandbox's allocated compute, as E2B's sandbox info reports it (``cpu_count``, ``memory_mb``;
    E2B's "MB" are MiB: the default sandbox has 512 of them, "0.5 GiB" in E2B's own price example)."""

    vcpu: int
    memory_mib: int

    def __post_init__(self) -> None:
        if self.vcpu < 0 or self.memory_mib < 0:
            raise ValueError(f"a sandbox size cannot be negative: {self}")


def hourly_rate(size: Size, prices: Prices) -> float:
    """USD per hour for one running sandbox of ``size``."""
    per_second = size.vcpu * prices.usd_per_vcpu_second + size.memory_mib / 1024 * prices.usd_per_gib_second
    return per_second * 3600.0


def _whole_seconds(now: datetime) -> datetime:
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def _advance(ledger: CostStatus, now: datetime) -> tuple[datetime, int, int, float]:
    """The ledger's sums brought up to ``now`` at its recorded state and rate; never backwards (a
    clock that steps back, or a stale ``now``, charges nothing and keeps ``asOf``)."""
    now = _whole_seconds(now)
    if ledger.as_of is None:
        return now, ledger.sandbox_seconds, ledger.paused_seconds, ledger.estimated_usd
    elapsed = int((now - ledger.as_of).total_seconds())
    if elapsed <= 0:
        return ledger.as_of, ledger.sandbox_seconds, ledger.paused_seconds, ledger.estimated_usd
    running, paused, usd = ledger.sandbox_seconds, ledger.paused_seconds, ledger.estimated_usd
    if ledger.state == "Running":
        running += elapsed
        usd += ledger.rate_usd_per_hour * elapsed / 3600.0
    elif ledger.state == "Paused":
        paused += elapsed
    return now, running, paused, usd


def accrue(
    ledger: CostStatus | None, now: datetime, meter: Meter, size: Size | None, prices: Prices
) -> CostStatus:
    """The ledger with the time since ``asOf`` charged at its recorded state and rate, and metering
    from ``now`` on in state ``meter`` for a sandbox of ``size``.

    Call it on every change of state (created, adopted, paused, resumed, killed, handed over) and
    whenever the written figures are due (:func:`should_refresh`). ``size=None`` means "not known
    now" (a resume, or a create whose size E2B has not reported yet): the last known size is used,
    because under-pricing would let a budget overrun. With no size ever known a running sandbox is
    priced at zero, and the caller should learn its size (E2B's sandbox info) and accrue again.
    """
    ledger = ledger or CostStatus()
    as_of, running, paused, usd = _advance(ledger, now)
    if size is None and ledger.vcpu is not None and ledger.memory_mib is not None:
        size = Size(ledger.vcpu, ledger.memory_mib)
    vcpu = size.vcpu if size is not None else None
    memory_mib = size.memory_mib if size is not None else None
    rate = hourly_rate(size, prices) if meter == "Running" and size is not None else 0.0
    return CostStatus(
        sandbox_seconds=running,
        paused_seconds=paused,
        estimated_usd=usd,
        as_of=as_of,
        state=meter,
        vcpu=vcpu,
        memory_mib=memory_mib,
        rate_usd_per_hour=rate,
    )


def estimate(ledger: CostStatus, now: datetime) -> CostStatus:
    """The figures at ``now`` without a state change: what :func:`accrue` would write if nothing
    changed. For metrics, the CLI and budget checks between two status writes."""
    as_of, running, paused, usd = _advance(ledger, now)
    return CostStatus.model_validate(
        {
            **ledger.model_dump(),
            "as_of": as_of,
            "sandbox_seconds": running,
            "paused_seconds": paused,
            "estimated_usd": usd,
        }
    )


def _midnight(now: datetime) -> datetime:
    return _whole_seconds(now).replace(hour=0, minute=0, second=0)


def with_day(ledger: CostStatus, now: datetime, previous: CostStatus | None) -> CostStatus:
    """``ledger`` (just accrued from ``previous``) with the day's starting figure carried over, or
    started anew on the first accrual of a UTC day: the estimate at midnight (the previous ledger
    still covers midnight, since every accrual rolls the day)."""
    today = _midnight(now)
    if (
        previous is not None
        and previous.day == today.date().isoformat()
        and previous.day_start_usd is not None
    ):
        start = previous.day_start_usd
    elif previous is not None and previous.as_of is not None and previous.as_of <= today:
        start = estimate(previous, today).estimated_usd
    else:
        start = (previous or ledger).estimated_usd
    return ledger.model_copy(update={"day": today.date().isoformat(), "day_start_usd": start})


def spent_today(ledger: CostStatus, now: datetime) -> float:
    """Estimated USD spent since the UTC day of ``now`` began (never negative)."""
    today = _midnight(now)
    figure = estimate(ledger, now).estimated_usd
    if ledger.day == today.date().isoformat() and ledger.day_start_usd is not None:
        start = ledger.day_start_usd
    elif ledger.as_of is not None and ledger.as_of <= today:
        start = estimate(ledger, today).estimated_usd
    else:
        start = ledger.estimated_usd  # metered since a later moment today, without a day mark
    return max(figure - start, 0.0)


def should_refresh(
    written: CostStatus | None, now: datetime, cadence_seconds: float, meter: Meter, size: Size | None
) -> bool:
    """Whether the written figures are due: never written, the metering state or the known size
    changed, or ``cadence_seconds`` passed since ``asOf``. Otherwise a probe or reconcile leaves
    ``status.cost`` alone, so a quiet resource costs no status writes between cadence ticks."""
    if written is None or written.as_of is None:
        return True
    if written.state != meter:
        return True
    if size is not None and (size.vcpu, size.memory_mib) != (written.vcpu, written.memory_mib):
        return True
    return (_whole_seconds(now) - written.as_of).total_seconds() >= cadence_seconds


@dataclass(frozen=True)
class BudgetVerdict:
    """Whether a budget is exceeded, and a message fit for a ``BudgetExceeded`` condition/Event."""

    exceeded: bool
    message: str


def check_budget(budget: BudgetSpec | None, ledger: CostStatus | None, now: datetime) -> BudgetVerdict:
    """Compare the spend at ``now`` with ``spec.budget``. A limit is reached when the figure is at or
    above it. Paused time never counts toward ``maxHours``."""
    if budget is None or (budget.max_usd is None and budget.max_hours is None):
        return BudgetVerdict(False, "no budget")
    figures = estimate(ledger, now) if ledger is not None else CostStatus()
    hours = figures.sandbox_seconds / 3600.0
    reached: list[str] = []
    within: list[str] = []
    if budget.max_usd is not None:
        text = f"estimated spend ${figures.estimated_usd:.4f} of maxUSD ${budget.max_usd:g}"
        (reached if figures.estimated_usd >= budget.max_usd else within).append(text)
    if budget.max_hours is not None:
        text = f"sandbox time {hours:.2f} h of maxHours {budget.max_hours:g} h"
        (reached if hours >= budget.max_hours else within).append(text)
    if reached:
        action = (
            "the sandbox is paused until a limit is raised or cleared"
            if budget.action == "Suspend"
            else "the sandbox is killed"
        )
        return BudgetVerdict(
            True, f"budget exceeded: {'; '.join(reached)}; {action} (spec.budget.action: {budget.action})"
        )
    return BudgetVerdict(False, "within budget: " + "; ".join(within))


def seconds_until_exceeded(
    budget: BudgetSpec | None, ledger: CostStatus | None, now: datetime
) -> float | None:
    """How long until the budget is reached if nothing changes: 0 when already reached, ``None``
    when it never will be (no limit, or the meter is not running). Lets the caller look again in
    time instead of only at its next periodic check."""
    if budget is None or ledger is None:
        return None
    if check_budget(budget, ledger, now).exceeded:
        return 0.0
    if ledger.state != "Running":
        return None
    figures = estimate(ledger, now)
    waits: list[float] = []
    if budget.max_hours is not None:
        waits.append(budget.max_hours * 3600.0 - figures.sandbox_seconds)
    if budget.max_usd is not None and ledger.rate_usd_per_hour > 0:
        waits.append((budget.max_usd - figures.estimated_usd) / ledger.rate_usd_per_hour * 3600.0)
    return max(min(waits), 0.0) if waits else None
