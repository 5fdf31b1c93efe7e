"""The metrics' label vocabulary, and the guard that keeps every label's set of values bounded.

Every label whose values come from code paths we do not fully control (backend outcomes, step names
reported by the in-sandbox script, handler names) goes through :class:`BoundedLabel`: a bug or a
hostile sandbox report can add at most a handful of series, never one per call.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from swarm_operator.backend import BackendError

__all__ = [
    "CONTROLLER",
    "E2B_OPERATIONS",
    "HANDLERS",
    "OTHER",
    "RESULTS",
    "THROTTLE_SCOPES",
    "BoundedLabel",
    "backend_reasons",
]

#: The ``controller`` label of the reconcile series: one controller, named after the kind.
CONTROLLER = "swarmsandbox"
#: Handler kinds the ``handler`` label knows (see the module docstring).
HANDLERS = frozenset({"reconcile", "delete", "lease", "health", "sweep"})
#: Reconcile results, as controller-runtime spells them.
RESULTS = frozenset({"success", "error", "requeue"})
#: Operations the backend reports to its observer (``backend/_calls.py``).
E2B_OPERATIONS = frozenset(
    {"create", "list", "get", "kill", "set_timeout", "run", "pause", "resume", "connect"}
)
THROTTLE_SCOPES = frozenset({"operator", "namespace"})
OTHER = "other"


class BoundedLabel:
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


def backend_reasons() -> set[str]:
    """Every ``reason`` a :class:`BackendError` subclass can carry: the backend's outcome set."""
    reasons: set[str] = set()
    pending: list[type[BackendError]] = [BackendError]
    while pending:
        cls = pending.pop()
        reasons.add(cls.reason)
        pending.extend(cls.__subclasses__())
    return reasons
