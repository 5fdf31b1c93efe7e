"""Prometheus metrics of the operator, on a registry of its own.

One :class:`Metrics` holds every series; lifecycle code calls its small methods and the backend gets
:attr:`Metrics.e2b_observer`. The registry is passed in rather than the library's global one so that
tests, and several operators in one process (the playground, benchmarks), never collide on names.

Cardinality is bounded on purpose: no label ever carries a sandbox id, a resource name or a uid.
Every label whose values come from code paths we do not fully control (backend outcomes, step names
reported by the in-sandbox script, handler names) goes through :class:`BoundedLabel` (``_labels.py``), which keeps the
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

from ._exposition import new_registry, start_server
from ._labels import CONTROLLER, E2B_OPERATIONS, HANDLERS, RESULTS
from ._metrics import Metrics

__all__ = [
    "CONTROLLER",
    "E2B_OPERATIONS",
    "HANDLERS",
    "RESULTS",
    "Metrics",
    "new_registry",
    "start_server",
]
