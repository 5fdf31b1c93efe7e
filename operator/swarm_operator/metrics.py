"""Prometheus metrics of the operator, on a registry of its own.

One :class:`Metrics` holds every series; lifecycle code calls its small methods and the backend gets
:attr:`Metrics.e2b_observer`. The registry is passed in rather than the library's global one so that
tests, and several operators in one process (the playground, benchmarks), never collide on names.

Cardinality is bounded on purpose: no label ever carries a sandbox id, a resource name or a uid.
Every label whose values come from code paths we do not fully control (backend outcomes, step names
reported by the in-sandbox script, handler names) goes through :class:`_BoundedLabel`, which keeps the
known values, admits a few unknown well-formed ones, and folds the rest into ``"other"``: a bug or a
hostile sandbox report can add at most a handful of series, never one per call. The only label
with an open value set is ``namespace`` (on ``swarm_sandboxes`` and the cost series), bounded by the
cluster's namespaces.

Label choices:

- ``controller_runtime_reconcile_*`` keep controller-runtime's names and labels (``controller``,
  ``result``) so stock dashboards work, plus a ``handler`` label (``reconcile``, ``delete``,
  ``lease``, ``health``, ``sweep``): the handlers' durations differ by orders of magnitude (a lease
  renewal takes milliseconds, a create-and-initialise tens of seconds), and one histogram mixing them
  would answer no question. Summing ``by (controller)`` gives controller-runtime's series back.
- ``swarm_sandboxes{namespace,phase}`` is computed at scrape time from a uid → (namespace, phase)
  map, so a deleted resource simply stops counting; every phase of a namespace that has at least
  one resource is exported (zeros included, so ``rate``/alerts see a series), and a namespace
  without resources disappears.
- Cost series are computed at scrape time too, from the ledger (``status.cost``) the lifecycle last
  handed over per uid: ``swarm_sandbox_seconds_total`` and ``swarm_sandbox_estimated_usd_total`` grow
  every second between two status writes (the ledger's rate is known), and
  ``swarm_sandbox_rate_usd_per_hour`` sums the running sandboxes' rates. Counters count what accrued
  while this process watched: the first ledger seen for a uid is the baseline (after a restart its
  past spend is in status, not in a counter jump), and a deleted resource's share is kept.
"""

from __future__ import annotations

import platform
import re
import threading
from collections import Counter as _Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from swarm_operator import __version__
from swarm_operator.backend import BackendError
from swarm_operator.cost import estimate
from swarm_operator.logs import REDACTOR, Redactor
from swarm_operator.model import CostStatus, Phase

__all__ = [
    "CONTROLLER",
    "E2B_OPERATIONS",
    "HANDLERS",
    "RESULTS",
    "Metrics",
    "new_registry",
    "start_server",
]

#: The ``controller`` label of the reconcile series: one controller, named after the kind.
CONTROLLER = "swarmsandbox"
#: Handler kinds the ``handler`` label knows (see the module docstring).
HANDLERS = frozenset({"reconcile", "delete", "lease", "health", "sweep"})
#: Reconcile results, as controller-runtime spells them.
RESULTS = frozenset({"success", "error", "requeue"})
#: Operations the backend reports to its observer (``backend/_e2b.py``).
E2B_OPERATIONS = frozenset(
    {"create", "list", "get", "kill", "set_timeout", "run", "pause", "resume", "connect"}
)
THROTTLE_SCOPES = frozenset({"operator", "namespace"})
OTHER = "other"

# Sandbox create/init/steps last 0.05 s (a cached step) to 300 s (a slow coordinator install).
_SANDBOX_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# A reconcile that finds nothing to do takes milliseconds; one that creates a sandbox, minutes.
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025) + _SANDBOX_BUCKETS
# A control-plane call takes tens of milliseconds; a `run` up to the command timeout.
_E2B_BUCKETS = (0.01, 0.025) + _SANDBOX_BUCKETS
# From a spec applied to Ready: seconds for a warm template, many minutes for a big workspace clone.
_READY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


class _BoundedLabel:
    """Maps raw label values onto a bounded set: known values pass, up to ``extra`` unknown ones
    matching ``pattern`` pass on a first-come basis, everything else becomes ``"other"``.

    Admitting a few unknown values (rather than folding all of them) keeps a newly added backend
    reason or bootstrap step visible before this module learns its name, at a bounded cost.
    """

    def __init__(self, known: Iterable[str], extra: int, pattern: str = r"[A-Za-z][A-Za-z0-9_.]{0,47}"):
        self._known = frozenset(known)
        self._extra = extra
        self._pattern = re.compile(pattern)
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._known or value in self._admitted:
            return value
        if not isinstance(value, str) or not self._pattern.fullmatch(value):
            return OTHER
        with self._lock:
            if len(self._admitted) < self._extra:
                self._admitted.add(value)
                return value
        return OTHER


def _backend_reasons() -> set[str]:
    """Every ``reason`` a :class:`BackendError` subclass can carry: the backend's outcome set."""
    reasons: set[str] = set()
    pending: list[type[BackendError]] = [BackendError]
    while pending:
        cls = pending.pop()
        reasons.add(cls.reason)
        pending.extend(cls.__subclasses__())
    return reasons


class _PhaseCollector(Collector):
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


class _CostCollector(Collector):
    """Spend counters and the rate gauge by namespace, estimated at scrape time from each live
    resource's ledger (see the module docstring). Locked like :class:`_PhaseCollector`."""

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


def new_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors the global one would have
    (memory, CPU, open fds: what you look at first when an operator misbehaves)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Metrics:
    """Every series the operator exports, registered on ``registry`` (one instance per registry)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        redactor: Redactor = REDACTOR,
    ) -> None:
        self.registry = registry
        self._handler = _BoundedLabel(HANDLERS, extra=4, pattern=r"[a-z][a-z0-9_]{0,31}")
        self._result = _BoundedLabel(RESULTS, extra=0)
        self._operation = _BoundedLabel(E2B_OPERATIONS, extra=8, pattern=r"[a-z][a-z0-9_]{0,31}")
        self._outcome = _BoundedLabel({"ok"} | _backend_reasons(), extra=8)
        # Step names partly come from the report of a script running inside the sandbox.
        self._step = _BoundedLabel((), extra=32)
        self._phase = _BoundedLabel((p.value for p in Phase), extra=0)
        self._scope = _BoundedLabel(THROTTLE_SCOPES, extra=0)

        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Reconciliations by controller, handler and result.",
            ("controller", "handler", "result"),
            registry=registry,
        )
        self.reconcile_errors_total = Counter(
            "controller_runtime_reconcile_errors_total",
            "Reconciliations that ended in an error.",
            ("controller", "handler"),
            registry=registry,
        )
        self.reconcile_time_seconds = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Time one reconciliation took.",
            ("controller", "handler"),
            buckets=_RECONCILE_BUCKETS,
            registry=registry,
        )
        self.sandbox_create_seconds = Histogram(
            "swarm_sandbox_create_seconds",
            "Time from deciding to create a sandbox to having it running (adoptions excluded).",
            buckets=_SANDBOX_BUCKETS,
            registry=registry,
        )
        self.sandbox_init_seconds = Histogram(
            "swarm_sandbox_init_seconds",
            "Time the setup script took to bring a sandbox's agents up.",
            buckets=_SANDBOX_BUCKETS,
            registry=registry,
        )
        self.sandbox_step_seconds = Histogram(
            "swarm_sandbox_step_seconds",
            "Time of one lifecycle or setup-script step.",
            ("step",),
            buckets=_SANDBOX_BUCKETS,
            registry=registry,
        )
        self.ready_seconds = Histogram(
            "swarm_ready_seconds",
            "Time from a spec generation being applied to the resource being Ready with it.",
            buckets=_READY_BUCKETS,
            registry=registry,
        )
        self._phases = _PhaseCollector()
        registry.register(self._phases)
        self._cost = _CostCollector(clock)
        registry.register(self._cost)
        self.e2b_calls_total = Counter(
            "swarm_e2b_calls_total",
            "Calls to E2B (every attempt, every list page) by operation and outcome (ok or reason).",
            ("operation", "outcome"),
            registry=registry,
        )
        self.e2b_call_seconds = Histogram(
            "swarm_e2b_call_seconds",
            "Time one call to E2B took.",
            ("operation",),
            buckets=_E2B_BUCKETS,
            registry=registry,
        )
        self.creations_throttled_total = Counter(
            "swarm_creations_throttled_total",
            "Sandbox creations deferred by the operator's own limits.",
            ("scope",),
            registry=registry,
        )
        self.sandboxes_adopted_total = Counter(
            "swarm_sandboxes_adopted_total",
            "Existing sandboxes adopted by uid tag instead of creating new ones.",
            registry=registry,
        )
        self.orphans_killed_total = Counter(
            "swarm_orphans_killed_total",
            "Tagged sandboxes killed because their resource no longer exists.",
            registry=registry,
        )
        self.untracked_sandboxes = Gauge(
            "swarm_untracked_sandboxes",
            "Sandboxes tagged by this operator that no SwarmSandbox tracks, at the last sweep (killed "
            "once untracked for the sweep grace; a value that stays up means they are not).",
            registry=registry,
        )
        self.duplicates_killed_total = Counter(
            "swarm_duplicates_killed_total",
            "Extra sandboxes of one resource killed during adoption.",
            registry=registry,
        )
        self.agent_restarts_total = Counter(
            "swarm_agent_restarts_total",
            "Dead agents restarted by the health check.",
            registry=registry,
        )
        # The redactor holds every secret value read, per resource, until the resource is deleted:
        # what it holds (memory, and work on every log line) is worth watching for growth.
        self.redacted_values = Gauge(
            "swarm_redactor_values",
            "Secret values the log redactor holds, all resources together; back to its baseline once "
            "the resources that named them are deleted.",
            registry=registry,
        )
        self.redacted_values.set_function(lambda: len(redactor))
        self.redaction_scopes = Gauge(
            "swarm_redactor_scopes",
            "Resources (plus the operator itself) whose Secret values the log redactor holds.",
            registry=registry,
        )
        self.redaction_scopes.set_function(lambda: len(redactor.scopes()))
        self.build_info = Gauge(
            "swarm_build_info",
            "Always 1; the labels say which build runs.",
            ("version", "python"),
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

        # Export the small fixed label sets at zero from the start, so that `rate()` and
        # "absent" alerts see a series before the first event.
        for handler in sorted(HANDLERS):
            for result in sorted(RESULTS):
                self.reconcile_total.labels(CONTROLLER, handler, result)
            self.reconcile_errors_total.labels(CONTROLLER, handler)
        for scope in sorted(THROTTLE_SCOPES):
            self.creations_throttled_total.labels(scope)

    # ------------------------------------------------------------ called by the lifecycle

    def reconciled(self, handler: str, result: str, seconds: float) -> None:
        """One handler run ended: ``result`` is ``success``, ``error`` or ``requeue`` (a deliberate
        retry later, e.g. throttled or waiting for agents — not an error)."""
        handler = self._handler(handler)
        result = self._result(result)
        self.reconcile_total.labels(CONTROLLER, handler, result).inc()
        if result == "error":
            self.reconcile_errors_total.labels(CONTROLLER, handler).inc()
        self.reconcile_time_seconds.labels(CONTROLLER, handler).observe(max(seconds, 0.0))

    def sandbox_created(self, seconds: float) -> None:
        """A new sandbox is running (not for adoptions: they would skew the distribution)."""
        self.sandbox_create_seconds.observe(max(seconds, 0.0))

    def sandbox_initialised(self, seconds: float) -> None:
        """The setup script finished and its report was read."""
        self.sandbox_init_seconds.observe(max(seconds, 0.0))

    def step(self, name: str, seconds: float) -> None:
        """A named step took ``seconds`` (``create``, ``init``, ``init.tmux``…)."""
        self.sandbox_step_seconds.labels(self._step(name)).observe(max(seconds, 0.0))

    def observe_phase(self, uid: str, namespace: str, phase: Phase | str) -> None:
        """The resource ``uid`` is now in ``phase``; call on every status write (cheap, idempotent)."""
        value = phase.value if isinstance(phase, Phase) else str(phase)
        self._phases.observe(uid, namespace, self._phase(value))

    def forget(self, uid: str) -> None:
        """The resource is gone (deleted, or no longer ours): it stops counting in any phase, and its
        spend so far stays in its namespace's counters."""
        self._phases.forget(uid)
        self._cost.forget(uid)

    def observe_cost(self, uid: str, namespace: str, ledger: CostStatus) -> None:
        """The resource ``uid``'s cost ledger is now ``ledger``: call with every ledger the lifecycle
        reads back or writes (cheap, idempotent). Between calls the counters grow at its rate."""
        self._cost.observe(uid, namespace, ledger)

    def became_ready(self, seconds: float) -> None:
        """A spec generation reached Ready ``seconds`` after it was applied (creation or change)."""
        self.ready_seconds.observe(max(seconds, 0.0))

    def throttled(self, scope: str) -> None:
        """A creation was deferred by :class:`~swarm_operator.ratelimit.CreationLimiter`."""
        self.creations_throttled_total.labels(self._scope(scope)).inc()

    def adopted(self) -> None:
        self.sandboxes_adopted_total.inc()

    def untracked(self, count: int) -> None:
        """The last sweep found ``count`` of this operator's sandboxes with no resource."""
        self.untracked_sandboxes.set(max(count, 0))

    def orphan_killed(self, count: int = 1) -> None:
        self.orphans_killed_total.inc(count)

    def duplicate_killed(self, count: int = 1) -> None:
        self.duplicates_killed_total.inc(count)

    def agents_restarted(self, count: int = 1) -> None:
        self.agent_restarts_total.inc(count)

    # ------------------------------------------------------------ called by the backend

    def e2b_observer(self, operation: str, outcome: str, seconds: float) -> None:
        """The backend's :class:`~swarm_operator.backend.CallObserver`. Never raises."""
        try:
            op = self._operation(operation)
            self.e2b_calls_total.labels(op, self._outcome(outcome)).inc()
            self.e2b_call_seconds.labels(op).observe(max(float(seconds), 0.0))
        except Exception:  # noqa: BLE001 - a metrics bug must never fail a sandbox call
            pass


def start_server(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread; returns a closer that
    stops the server and frees the port. Port 0 means metrics are off: nothing is served and the
    closer does nothing (not "any free port", which nobody could scrape)."""
    if port == 0:
        return lambda: None
    server, thread = start_http_server(port, addr=addr, registry=registry)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)

    return close
