"""The operator's one :class:`Metrics` object: the series of ``_series.py`` and the collectors of
``_collectors.py`` on one registry, behind the small methods the lifecycle and the backend call.

Every method maps its raw inputs through a :class:`BoundedLabel` first, so that no caller can
grow a label's set of values beyond its bound.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swarm_operator import __version__
from swarm_operator.logs import REDACTOR, Redactor
from swarm_operator.model import CostStatus, Phase

from ._collectors import CostCollector, PhaseCollector
from ._labels import (
    CONTROLLER,
    E2B_OPERATIONS,
    HANDLERS,
    RESULTS,
    THROTTLE_SCOPES,
    BoundedLabel,
    backend_reasons,
)
from ._series import SERIES

__all__ = ["Metrics"]


class Metrics:
    """Every series the operator exports, registered on ``registry`` (one instance per registry)."""

    # One attribute per row of SERIES (set in __init__ from the table).
    reconcile_total: Counter
    reconcile_errors_total: Counter
    reconcile_time_seconds: Histogram
    sandbox_create_seconds: Histogram
    sandbox_init_seconds: Histogram
    sandbox_step_seconds: Histogram
    ready_seconds: Histogram
    e2b_calls_total: Counter
    e2b_call_seconds: Histogram
    creations_throttled_total: Counter
    sandboxes_adopted_total: Counter
    orphans_killed_total: Counter
    untracked_sandboxes: Gauge
    duplicates_killed_total: Counter
    agent_restarts_total: Counter
    redacted_values: Gauge
    redaction_scopes: Gauge
    build_info: Gauge

    def __init__(
        self,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        redactor: Redactor = REDACTOR,
    ) -> None:
        self.registry = registry
        self._handler = BoundedLabel(HANDLERS, extra=4, pattern=r"[a-z][a-z0-9_]{0,31}")
        self._result = BoundedLabel(RESULTS, extra=0)
        self._operation = BoundedLabel(E2B_OPERATIONS, extra=8, pattern=r"[a-z][a-z0-9_]{0,31}")
        self._outcome = BoundedLabel({"ok"} | backend_reasons(), extra=8)
        # Step names partly come from the report of a script running inside the sandbox.
        self._step = BoundedLabel((), extra=32)
        self._phase = BoundedLabel((p.value for p in Phase), extra=0)
        self._scope = BoundedLabel(THROTTLE_SCOPES, extra=0)

        for series in SERIES:
            setattr(self, series.attr, series.register(registry))
        self._phases = PhaseCollector()
        registry.register(self._phases)
        self._cost = CostCollector(clock)
        registry.register(self._cost)
        self.redacted_values.set_function(lambda: len(redactor))
        self.redaction_scopes.set_function(lambda: len(redactor.scopes()))
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
