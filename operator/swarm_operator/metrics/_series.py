"""Every plain series the operator exports, as a table: attribute, kind, name, help, labels, buckets.

A table rather than one constructor call per series so that the set of series reads at a glance
(and the chart's alerts and the dashboard can be checked against it), and adding one is one row.
The series computed at scrape time are ``_collectors.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SERIES", "Series"]

# Sandbox create/init/steps last 0.05 s (a cached step) to 300 s (a slow coordinator install).
_SANDBOX_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# A reconcile that finds nothing to do takes milliseconds; one that creates a sandbox, minutes.
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025) + _SANDBOX_BUCKETS
# A control-plane call takes tens of milliseconds; a `run` up to the command timeout.
_E2B_BUCKETS = (0.01, 0.025) + _SANDBOX_BUCKETS
# From a spec applied to Ready: seconds for a warm template, many minutes for a big workspace clone.
_READY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class Series:
    """One series: the :class:`~swarm_operator.metrics.Metrics` attribute that holds it, and how
    it is registered."""

    attr: str
    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def register(self, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
        if self.kind is Histogram:
            assert self.buckets is not None, self.name
            return Histogram(self.name, self.help, self.labels, buckets=self.buckets, registry=registry)
        return self.kind(self.name, self.help, self.labels, registry=registry)


_CONTROLLER_HANDLER = ("controller", "handler")

SERIES: tuple[Series, ...] = (
    Series(
        "reconcile_total",
        Counter,
        "controller_runtime_reconcile_total",
        "Reconciliations by controller, handler and result.",
        ("controller", "handler", "result"),
    ),
    Series(
        "reconcile_errors_total",
        Counter,
        "controller_runtime_reconcile_errors_total",
        "Reconciliations that ended in an error.",
        _CONTROLLER_HANDLER,
    ),
    Series(
        "reconcile_time_seconds",
        Histogram,
        "controller_runtime_reconcile_time_seconds",
        "Time one reconciliation took.",
        _CONTROLLER_HANDLER,
        _RECONCILE_BUCKETS,
    ),
    Series(
        "sandbox_create_seconds",
        Histogram,
        "swarm_sandbox_create_seconds",
        "Time from deciding to create a sandbox to having it running (adoptions excluded).",
        buckets=_SANDBOX_BUCKETS,
    ),
    Series(
        "sandbox_init_seconds",
        Histogram,
        "swarm_sandbox_init_seconds",
        "Time the setup script took to bring a sandbox's agents up.",
        buckets=_SANDBOX_BUCKETS,
    ),
    Series(
        "sandbox_step_seconds",
        Histogram,
        "swarm_sandbox_step_seconds",
        "Time of one lifecycle or setup-script step.",
        ("step",),
        _SANDBOX_BUCKETS,
    ),
    Series(
        "ready_seconds",
        Histogram,
        "swarm_ready_seconds",
        "Time from a spec generation being applied to the resource being Ready with it.",
        buckets=_READY_BUCKETS,
    ),
    Series(
        "e2b_calls_total",
        Counter,
        "swarm_e2b_calls_total",
        "Calls to E2B (every attempt, every list page) by operation and outcome (ok or reason).",
        ("operation", "outcome"),
    ),
    Series(
        "e2b_call_seconds",
        Histogram,
        "swarm_e2b_call_seconds",
        "Time one call to E2B took.",
        ("operation",),
        _E2B_BUCKETS,
    ),
    Series(
        "creations_throttled_total",
        Counter,
        "swarm_creations_throttled_total",
        "Sandbox creations deferred by the operator's own limits.",
        ("scope",),
    ),
    Series(
        "sandboxes_adopted_total",
        Counter,
        "swarm_sandboxes_adopted_total",
        "Existing sandboxes adopted by uid tag instead of creating new ones.",
    ),
    Series(
        "orphans_killed_total",
        Counter,
        "swarm_orphans_killed_total",
        "Tagged sandboxes killed because their resource no longer exists.",
    ),
    Series(
        "untracked_sandboxes",
        Gauge,
        "swarm_untracked_sandboxes",
        "Sandboxes tagged by this operator that no SwarmSandbox tracks, at the last sweep (killed "
        "once untracked for the sweep grace; a value that stays up means they are not).",
    ),
    Series(
        "duplicates_killed_total",
        Counter,
        "swarm_duplicates_killed_total",
        "Extra sandboxes of one resource killed during adoption.",
    ),
    Series(
        "agent_restarts_total",
        Counter,
        "swarm_agent_restarts_total",
        "Dead agents restarted by the health check.",
    ),
    # The redactor holds every secret value read, per resource, until the resource is deleted:
    # what it holds (memory, and work on every log line) is worth watching for growth.
    Series(
        "redacted_values",
        Gauge,
        "swarm_redactor_values",
        "Secret values the log redactor holds, all resources together; back to its baseline once "
        "the resources that named them are deleted.",
    ),
    Series(
        "redaction_scopes",
        Gauge,
        "swarm_redactor_scopes",
        "Resources (plus the operator itself) whose Secret values the log redactor holds.",
    ),
    Series(
        "build_info",
        Gauge,
        "swarm_build_info",
        "Always 1; the labels say which build runs.",
        ("version", "python"),
    ),
)
