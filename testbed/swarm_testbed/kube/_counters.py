"""Request counters by verb and resource — what tests and benchmarks assert on instead of a request log.

kmock keeps every request and rescans that log for each reaction on each request, so a long run measures
kmock instead of the operator. The emulator keeps only a short tail of requests and counts every request
here as it arrives: "how many writes did the operator make per SwarmSandbox" stays cheap to ask after a
million requests.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

WRITE_VERBS: frozenset[str] = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class RequestCounter:
    """Counts requests by ``(verb, resource)``.

    ``verb`` is the Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection)
    or, for paths that name no resource (discovery, /version), the lowercase HTTP method.
    ``resource`` is ``plural`` for the core group and ``plural.group`` otherwise, with ``/subresource``
    appended for subresources (``swarmsandboxes.claudeswarm.io/status``); for other paths, the path.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, verb: str, resource: str) -> None:
        self._counts[verb, resource] += 1

    def count(
        self,
        verb: str | Iterable[str] | None = None,
        resource: str | None = None,
        *,
        subresources: bool = True,
    ) -> int:
        """Requests matching a verb (or any of several) and a resource; ``None`` matches anything.

        With ``subresources`` (the default), ``resource="swarmsandboxes.claudeswarm.io"`` also counts
        requests to its ``/status``; pass a ``"…/status"`` resource to count only those.
        """
        verbs = {verb} if isinstance(verb, str) else (set(verb) if verb is not None else None)
        total = 0
        for (seen_verb, seen_resource), number in list(self._counts.items()):
            if verbs is not None and seen_verb not in verbs:
                continue
            if resource is not None and seen_resource != resource:
                if not (subresources and seen_resource.startswith(resource + "/")):
                    continue
            total += number
        return total

    def writes(self, resource: str | None = None) -> int:
        """Create/update/patch/delete requests, optionally for one resource (subresources included)."""
        return self.count(WRITE_VERBS, resource)

    def snapshot(self) -> dict[str, int]:
        """``{"verb resource": n}`` — stable and printable for benchmark reports."""
        return {f"{verb} {resource}": n for (verb, resource), n in sorted(self._counts.items())}

    def reset(self) -> None:
        self._counts.clear()

    def __repr__(self) -> str:
        return f"RequestCounter({self.snapshot()!r})"
