"""The series computed at scrape time: resources by phase, and the cost counters and rate.

They are collectors rather than plain series because their values follow from state the lifecycle
hands over (a uid's phase, a uid's ledger), which a deleted resource simply stops contributing to;
each is locked, because the HTTP server scrapes from its own thread while the event loop updates.
"""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm_operator.cost import estimate
from swarm_operator.model import CostStatus, Phase

__all__ = ["CostCollector", "PhaseCollector"]


class PhaseCollector(Collector):
    """``swarm_sandboxes{namespace,phase}``, counted from the lifecycle's uid → (namespace, phase)
    map. Counts are kept incrementally under a lock, because the HTTP server scrapes from its own
    thread while the event loop updates the map."""

    NAME = "swarm_sandboxes"
    HELP = "SwarmSandbox resources by namespace and phase."
    _PHASES = tuple(p.value for p in Phase)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._where: dict[str, tuple[str, str]] = {}
        self._counts: _Tally[tuple[str, str]] = _Tally()
        self._per_namespace: _Tally[str] = _Tally()

    def observe(self, uid: str, namespace: str, phase: str) -> None:
        with self._lock:
            old = self._where.get(uid)
            new = (namespace, phase)
            if old == new:
                return
            if old is not None:
                self._drop(old)
            self._where[uid] = new
            self._counts[new] += 1
            self._per_namespace[namespace] += 1

    def forget(self, uid: str) -> None:
        with self._lock:
            old = self._where.pop(uid, None)
            if old is not None:
                self._drop(old)

    def _drop(self, key: tuple[str, str]) -> None:
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]
        self._per_namespace[key[0]] -= 1
        if self._per_namespace[key[0]] <= 0:
            del self._per_namespace[key[0]]

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=("namespace", "phase"))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
            namespaces = sorted(self._per_namespace)
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=("namespace", "phase"))
        for namespace in namespaces:
            phases = list(self._PHASES) + sorted(
                {p for (ns, p) in counts if ns == namespace} - set(self._PHASES)
            )
            for phase in phases:
                family.add_metric((namespace, phase), counts.get((namespace, phase), 0))
        yield family


@dataclass
class _Meter:
    """One resource's ledger as last handed over, and what has been exported for it so far."""

    namespace: str
    ledger: CostStatus
    base_seconds: float
    base_usd: float
    seconds: float = 0.0  # exported so far (a high-water mark: counters never go down)
    usd: float = 0.0


class CostCollector(Collector):
    """Spend counters and the rate gauge by namespace, estimated at scrape time from each live
    resource's ledger (see the module docstring). Locked like :class:`PhaseCollector`."""

    SECONDS = "swarm_sandbox_seconds_total"
    USD = "swarm_sandbox_estimated_usd_total"
    RATE = "swarm_sandbox_rate_usd_per_hour"
    _SECONDS_HELP = "Running (billed) sandbox-seconds accrued while this operator watched, by namespace."
    _USD_HELP = "Estimated sandbox compute spend in USD accrued while this operator watched, by namespace."
    _RATE_HELP = "Estimated USD per hour of the running sandboxes, by namespace."

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, _Meter] = {}
        self._closed: dict[str, tuple[float, float]] = {}

    def observe(self, uid: str, namespace: str, ledger: CostStatus) -> None:
        now = self._clock()
        with self._lock:
            meter = self._live.get(uid)
            if meter is not None and meter.namespace != namespace:
                self._close(self._live.pop(uid), now)
                meter = None
            if meter is None:
                base = estimate(ledger, now)
                self._live[uid] = _Meter(namespace, ledger, base.sandbox_seconds, base.estimated_usd)
            else:
                meter.ledger = ledger

    def forget(self, uid: str) -> None:
        now = self._clock()
        with self._lock:
            meter = self._live.pop(uid, None)
            if meter is not None:
                self._close(meter, now)

    def _counted(self, meter: _Meter, now: datetime) -> tuple[float, float]:
        figures = estimate(meter.ledger, now)
        meter.seconds = max(meter.seconds, figures.sandbox_seconds - meter.base_seconds)
        meter.usd = max(meter.usd, figures.estimated_usd - meter.base_usd)
        return meter.seconds, meter.usd

    def _close(self, meter: _Meter, now: datetime) -> None:
        seconds, usd = self._counted(meter, now)
        before = self._closed.get(meter.namespace, (0.0, 0.0))
        self._closed[meter.namespace] = (before[0] + seconds, before[1] + usd)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.SECONDS, self._SECONDS_HELP, labels=("namespace",))
        yield CounterMetricFamily(self.USD, self._USD_HELP, labels=("namespace",))
        yield GaugeMetricFamily(self.RATE, self._RATE_HELP, labels=("namespace",))

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        with self._lock:
            totals = dict(self._closed)
            rates: dict[str, float] = {}
            for meter in self._live.values():
                seconds, usd = self._counted(meter, now)
                before = totals.get(meter.namespace, (0.0, 0.0))
                totals[meter.namespace] = (before[0] + seconds, before[1] + usd)
                running = meter.ledger.state == "Running"
                rates[meter.namespace] = rates.get(meter.namespace, 0.0) + (
                    meter.ledger.rate_usd_per_hour if running else 0.0
                )
        seconds_family = CounterMetricFamily(self.SECONDS, self._SECONDS_HELP, labels=("namespace",))
        usd_family = CounterMetricFamily(self.USD, self._USD_HELP, labels=("namespace",))
        for namespace in sorted(totals):
            seconds_family.add_metric((namespace,), totals[namespace][0])
            usd_family.add_metric((namespace,), totals[namespace][1])
        rate_family = GaugeMetricFamily(self.RATE, self._RATE_HELP, labels=("namespace",))
        for namespace in sorted(rates):
            rate_family.add_metric((namespace,), rates[namespace])
        yield seconds_family
        yield usd_family
        yield rate_family
