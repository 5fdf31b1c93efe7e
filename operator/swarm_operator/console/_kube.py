"""The Kubernetes side of the console: the user's client, the resource, its Events and its E2B key.

Every call goes through the user's own kubeconfig via :mod:`swarm_operator.cluster.user`, bounded by
``KUBE_TIMEOUT``; transport and authorisation failures become one :class:`ConsoleError` line
(:func:`kube_errors`), which :mod:`swarm_operator.swarmctl` uses for its own calls too.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from swarm_operator.cluster import user as cluster
from swarm_operator.console._swarm import ConsoleError, Swarm

__all__ = ["api_key", "events", "kube_client", "kube_errors", "load_swarm"]

_KUBE_TIMEOUT = (5, 15)  # (connect, read) seconds for every Kubernetes call


def kube_client(kubeconfig: str | None = None, context: str | None = None) -> cluster.ApiClient:
    """A client for the user's current (or named) kubeconfig context, in-cluster config as a fallback."""
    try:
        # retries=1: a cluster that is down should say so at once, not after a retry loop.
        return cluster.user_client(kubeconfig, context, retries=1)
    except cluster.KubeconfigError as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConsoleError(
            f"no usable kubeconfig at {where} ({exc}); set KUBECONFIG "
            "or pass --kubeconfig (the playground prints its path)"
        ) from None


@contextlib.contextmanager
def kube_errors(api: cluster.ApiClient, what: str) -> Iterator[None]:
    """Turn transport and authorisation failures of ``what`` into one actionable line."""
    try:
        yield
    except cluster.ClusterUnreachable as exc:
        raise ConsoleError(
            f"cannot reach the cluster at {api.configuration.host} "
            f"({exc.reason}); is it (or `swarm-operator dev`) running?"
        ) from None
    except cluster.ClusterError as exc:
        if exc.status in (401, 403):
            raise ConsoleError(
                f"the cluster refused to let you read {what} (HTTP {exc.status}); "
                "check your kubeconfig's user and its RBAC"
            ) from None
        if exc.status == 0:
            raise ConsoleError(
                f"cannot reach the cluster at {api.configuration.host}: {exc.reason}"
            ) from None
        raise


def load_swarm(name: str, namespace: str, *, kubeconfig: str | None = None) -> Swarm:
    """Read the resource ``namespace/name``; a missing one is a :class:`ConsoleError`."""
    api = kube_client(kubeconfig)
    with kube_errors(api, f"swarm {namespace}/{name}"):
        try:
            body = cluster.get_swarm(api, namespace, name, timeout=_KUBE_TIMEOUT)
        except cluster.ClusterError as exc:
            if exc.status != 404:
                raise
            raise ConsoleError(
                f"swarm {namespace}/{name} not found; list them with "
                f"`kubectl get swarm -n {namespace}` (or -A)"
            ) from None
    return Swarm(api=api, body=body)


def events(swarm: Swarm, limit: int = 8) -> list[dict[str, Any]]:
    """The resource's most recent Events, oldest first (as ``kubectl describe`` shows them)."""
    with kube_errors(swarm.api, f"the Events of {swarm.namespace}/{swarm.name}"):
        found = cluster.list_events(swarm.api, swarm.namespace, swarm.name, timeout=_KUBE_TIMEOUT)
    mine = [
        e
        for e in found
        if e.involved_object is not None
        and e.involved_object.name == swarm.name
        and e.involved_object.uid in (None, swarm.uid)
    ]
    mine.sort(key=lambda e: _event_time(e) or datetime.min.replace(tzinfo=UTC))
    return [
        {
            "time": _event_time(e),
            "type": e.type or "",
            "reason": e.reason or "",
            "message": (e.message or "").strip(),
            "count": e.count or 1,
        }
        for e in mine[-limit:]
    ]


def _event_time(event: Any) -> datetime | None:
    for value in (
        event.last_timestamp,
        event.event_time,
        event.first_timestamp,
        event.metadata.creation_timestamp if event.metadata else None,
    ):
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def api_key(swarm: Swarm) -> str:
    """The E2B API key the operator uses for this resource: its own Secret ref, or the default one.

    The default Secret's place comes from the same ``SWARM_*`` settings the operator reads, so a
    user who configured the operator differently can point this command at it the same way.
    """
    from swarm_operator.config import Settings, SettingsError
    from swarm_operator.secrets import SecretKeyRef, api_key_ref

    raw = ((swarm.body.get("spec") or {}).get("e2b") or {}).get("apiKeySecretRef")
    own = SecretKeyRef(swarm.namespace, str(raw["name"]), str(raw.get("key") or "api-key")) if raw else None
    try:
        where = api_key_ref(swarm.namespace, own, Settings.from_env())
    except SettingsError as exc:
        raise ConsoleError(f"bad setting: {exc}") from None
    namespace, name, key = where.namespace, where.name, where.key
    with kube_errors(swarm.api, f"Secret {namespace}/{name}"):
        try:
            secret = cluster.read_secret(swarm.api, namespace, name, timeout=_KUBE_TIMEOUT)
        except cluster.ClusterError as exc:
            if exc.status != 404:
                raise
            raise ConsoleError(
                f"Secret {namespace}/{name} with the E2B API key not found; create it: kubectl create "
                f"secret generic {name} -n {namespace} --from-literal={key}=<your E2B API key>"
            ) from None
    value = (secret.data or {}).get(key)
    if value is None:
        raise ConsoleError(f"Secret {namespace}/{name} has no key {key!r}; add the E2B API key under it")
    return base64.b64decode(value).decode().strip()
