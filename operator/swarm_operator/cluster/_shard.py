"""The shard labeller's Kubernetes calls: a list-then-watch of the resources no shard serves, the
conditional label write, and its Warning Events (see :mod:`swarm_operator.lifecycle.shard`).

kopf's one watch per resource kind carries the shard's own selector, so this is a second, separate
watch with the labeller's selector. The synchronous client's watch blocks, so it runs in a daemon
thread per scope (the cluster, or each watched namespace) that hands objects to the event loop; each
watch ends within ``WATCH_SECONDS`` and is re-listed, so a missed event is found within that bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kubernetes

from swarm_operator.cluster._operator import json_object
from swarm_operator.names import GROUP, KIND, PLURAL, VERSION

logger = logging.getLogger("swarm_operator.cluster")

#: Server-side timeout of one watch; then the scope is listed afresh.
WATCH_SECONDS = 60


class KubeShardLabeller:
    """Lists and watches SwarmSandboxes by a label selector; writes one label conditionally."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        namespaces: Sequence[str] | None,
        timeout_s: float,
        retry_s: float = 5.0,
    ) -> None:
        self._api = kubernetes.client.CustomObjectsApi(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._namespaces = list(namespaces) if namespaces else None
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._stop = threading.Event()

    async def unassigned(self, selector: str) -> AsyncIterator[Mapping[str, Any]]:
        """Every resource matching ``selector`` now, then each one added or changed to match it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        scopes: list[str | None] = [*self._namespaces] if self._namespaces else [None]
        for namespace in scopes:
            if namespace is not None and any(c in namespace for c in "*?["):
                # kopf expands patterns by listing namespaces; the labeller watches by name only.
                logger.error("shard labeller: namespace pattern %r not watched; name namespaces", namespace)
                continue
            threading.Thread(
                target=self._watch_forever,
                args=(namespace, selector, lambda obj: loop.call_soon_threadsafe(queue.put_nowait, obj)),
                name=f"shard-watch-{namespace or 'cluster'}",
                daemon=True,  # blocked in a socket read at exit: must not hold the process
            ).start()
        try:
            while True:
                yield await queue.get()
        finally:
            self._stop.set()

    async def label(self, body: Mapping[str, Any], key: str, value: str) -> bool:
        return await asyncio.to_thread(self._label, body, key, value)

    def _label(self, body: Mapping[str, Any], key: str, value: str) -> bool:
        meta = body["metadata"]
        # resourceVersion in a merge patch is a precondition: a label (or anything) written since
        # this body was read makes it a 409, and nothing is overwritten.
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "labels": {key: value}}}
        try:
            self._api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                patch,
                _request_timeout=self._timeout_s,
                _content_type="application/merge-patch+json",
            )
        except kubernetes.client.ApiException as exc:
            if exc.status in (404, 409):  # gone, or changed since: the watch shows what it is now
                return False
            raise
        return True

    async def warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        await asyncio.to_thread(self._warn, body, reason, message)

    def _warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        meta = body["metadata"]
        now = datetime.now(UTC)
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
            ),
            reason=reason,
            message=message,
            type="Warning",
            source=kubernetes.client.V1EventSource(component="swarm-operator"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        self._core.create_namespaced_event(meta["namespace"], event, _request_timeout=self._timeout_s)

    def _watch_forever(self, namespace: str | None, selector: str, emit: Any) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch(namespace, selector, emit)
            except Exception as exc:  # the API server away or refusing: list again shortly
                logger.warning("shard label watch failed: %s", exc)
                self._stop.wait(self._retry_s)

    def _list_and_watch(self, namespace: str | None, selector: str, emit: Any) -> None:
        # The two list calls differ in arity; watch.stream takes either with its arguments.
        call: Any = self._api.list_namespaced_custom_object
        scope: tuple[str, ...] = (GROUP, VERSION, namespace or "", PLURAL)
        if namespace is None:
            call = self._api.list_cluster_custom_object
            scope = (GROUP, VERSION, PLURAL)
        listing = json_object(call(*scope, label_selector=selector, _request_timeout=self._timeout_s))
        for item in listing.get("items", []):
            emit(item)
        watch = kubernetes.watch.Watch()
        for event in watch.stream(
            call,
            *scope,
            label_selector=selector,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + self._timeout_s,
        ):
            if self._stop.is_set():
                watch.stop()
                return
            if event["type"] in ("ADDED", "MODIFIED"):
                emit(event["object"])
