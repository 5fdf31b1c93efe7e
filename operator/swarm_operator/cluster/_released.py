"""The operator's own record of the sandboxes it released (``deletionPolicy: Orphan``).

The orphan sweeper kills every tagged sandbox whose resource is gone, except those released on
purpose. It must learn which they are from something the agents cannot write: E2B metadata cannot
change after create, and a mark inside the sandbox is forged by any agent that creates the file (and
so keeps its sandbox alive after its resource is gone, unswept). So the record is a ConfigMap in the
operator's own namespace, which no tenant's RBAC reaches and only the operator writes:
``<operator id>-released``, one key per released sandbox id holding who released it and until when.

Bounded: an entry outlives its sandbox by nothing — E2B kills a released sandbox when its orphan
timeout (``SWARM_ORPHAN_TIMEOUT_SECONDS``) passes, and each write drops the entries past theirs —
and the record holds at most :data:`MAX_ENTRIES` (a ConfigMap holds 1 MiB); a release that finds it
full waits (the delete is retried) until old entries expire.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import kubernetes

from swarm_operator.lifecycle import ResourceRef

__all__ = ["MAX_ENTRIES", "ConfigMapReleaseRecord", "RecordFull", "record_name"]

#: Entries of ~150 bytes: well inside a ConfigMap's 1 MiB.
MAX_ENTRIES = 4000


class RecordFull(RuntimeError):
    """The record holds MAX_ENTRIES unexpired releases; a new one waits for old ones to expire."""


def record_name(operator_id: str) -> str:
    """The ConfigMap's name: one per operator id, so side-by-side releases keep separate records."""
    return f"{operator_id}-released"[:253]


class ConfigMapReleaseRecord:
    """Released sandbox ids in a ConfigMap the operator owns (see the module docstring)."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        namespace: str,
        operator_id: str,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = kubernetes.client.CoreV1Api(client)
        self._namespace = namespace
        self._name = record_name(operator_id)
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()

    async def record(self, sandbox_id: str, ref: ResourceRef, until: float) -> None:
        """Add one release (``until``: epoch seconds its orphan timeout ends); drop expired ones."""
        async with self._lock:  # one writer in this process: no lost update between two releases
            await asyncio.to_thread(self._record, sandbox_id, ref, until)

    async def ids(self) -> set[str]:
        """Sandbox ids released and not yet past their orphan timeout."""
        now = self._clock()
        return {sid for sid, until in (await asyncio.to_thread(self._entries)).items() if until > now}

    def _read(self) -> dict[str, str] | None:
        try:
            found = self._api.read_namespaced_config_map(
                self._name, self._namespace, _request_timeout=self._timeout_s
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.data or {})

    def _entries(self) -> dict[str, float]:
        return {sid: _until(text) for sid, text in (self._read() or {}).items()}

    def _record(self, sandbox_id: str, ref: ResourceRef, until: float) -> None:
        now = self._clock()
        value = json.dumps(
            {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid, "until": round(until)},
            sort_keys=True,
        )
        data = self._read()
        if data is None:
            body = kubernetes.client.V1ConfigMap(
                metadata=kubernetes.client.V1ObjectMeta(
                    name=self._name,
                    namespace=self._namespace,
                    labels={"app.kubernetes.io/managed-by": "swarm-operator"},
                ),
                data={sandbox_id: value},
            )
            try:
                self._api.create_namespaced_config_map(
                    self._namespace, body, _request_timeout=self._timeout_s
                )
                return
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise
                data = self._read() or {}
        expired = [sid for sid, text in data.items() if _until(text) <= now and sid != sandbox_id]
        if len(data) - len(expired) + (sandbox_id not in data) > MAX_ENTRIES:
            raise RecordFull(f"the release record holds {MAX_ENTRIES} unexpired releases")
        patch: dict[str, Any] = {"data": {**dict.fromkeys(expired), sandbox_id: value}}
        self._api.patch_namespaced_config_map(
            self._name,
            self._namespace,
            patch,
            _request_timeout=self._timeout_s,
            _content_type="application/merge-patch+json",
        )


def _until(text: str) -> float:
    """An entry's end; one the operator did not write (unparsable) counts as expired."""
    try:
        return float(json.loads(text)["until"])
    except (ValueError, KeyError, TypeError):
        return 0.0
