"""Kubernetes calls made as the kubeconfig's user: the console, the playground, the CLI.

Not part of the in-cluster operator (tests/unit/test_rbac.py derives the operator's role from the
modules ``swarm-operator run`` imports; this one is not among them). Each failure is raised as
:class:`ClusterError` (HTTP status, reason) or :class:`ClusterUnreachable`, which the callers turn
into their one-line messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

from swarm_operator.cluster._operator import json_object
from swarm_operator.names import GROUP, PLURAL, VERSION

#: The client handle callers pass back in; its ``configuration.host`` names the cluster.
ApiClient = kubernetes.client.ApiClient


class KubeconfigError(Exception):
    """No usable kubeconfig (nor in-cluster configuration); ``str()`` is the loader's first line."""


class ClusterError(Exception):
    """The API server answered a call with an error: ``status`` (HTTP; 0 when no status came back)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class ClusterUnreachable(ClusterError):
    """The call never got an answer (connection refused, DNS, TLS, timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    from kubernetes.dynamic.exceptions import DynamicApiError

    try:
        yield
    except DynamicApiError as exc:
        raise ClusterError(int(exc.status or 0), exc.summary()) from None
    except kubernetes.client.ApiException as exc:
        raise ClusterError(int(exc.status or 0), str(exc.reason)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterUnreachable(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def user_client(
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    *,
    in_cluster_fallback: bool = True,
    retries: int | None = None,
) -> ApiClient:
    """A client for the user's current (or named) kubeconfig context, else (if allowed) in-cluster."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(
            config_file=None if kubeconfig is None else str(kubeconfig),
            context=context,
            client_configuration=configuration,
        )
    except (kubernetes.config.ConfigException, FileNotFoundError, OSError) as exc:
        if not in_cluster_fallback:
            raise KubeconfigError(_first_line(exc)) from None
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            raise KubeconfigError(_first_line(exc)) from None
    configuration.debug = False  # never log bodies: they carry Secrets
    if retries is not None:
        configuration.retries = retries
    return kubernetes.client.ApiClient(configuration)


def context_namespace(kubeconfig: str | None) -> str:
    """The current context's namespace, as kubectl picks it; ``default`` when unset or unreadable."""
    try:
        _, context = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # no kubeconfig: whoever loads it next reports that properly
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")


def get_swarm(api: ApiClient, namespace: str, name: str, *, timeout: Any) -> dict[str, Any]:
    """One SwarmSandbox's body."""
    with _api_errors():
        body = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=timeout
        )
    return json_object(body)


def annotate_swarm(
    api: ApiClient, namespace: str, name: str, annotations: Mapping[str, str], *, timeout: Any
) -> None:
    """Set annotations on one SwarmSandbox (a merge patch of its metadata only)."""
    patch_swarm(api, namespace, name, {"metadata": {"annotations": dict(annotations)}}, timeout=timeout)


def patch_swarm(
    api: ApiClient, namespace: str, name: str, patch: Mapping[str, Any], *, timeout: Any
) -> dict[str, Any]:
    """Merge-patch one SwarmSandbox (``kubectl patch --type=merge``); returns the new body. One call
    can set a spec field and an annotation together, so the operator sees a single change."""
    with _api_errors():
        body = kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(patch),
            _content_type="application/merge-patch+json",
            _request_timeout=timeout,
        )
    return json_object(body)


def list_swarms(api: ApiClient, *, timeout: Any) -> list[dict[str, Any]]:
    """Every SwarmSandbox in the cluster."""
    with _api_errors():
        listed = kubernetes.client.CustomObjectsApi(api).list_cluster_custom_object(
            GROUP, VERSION, PLURAL, _request_timeout=timeout
        )
    return [json_object(item) for item in json_object(listed).get("items") or []]


def delete_swarm(api: ApiClient, namespace: str, name: str, *, timeout: Any) -> None:
    with _api_errors():
        kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=timeout
        )


def list_events(api: ApiClient, namespace: str, involved_name: str, *, timeout: Any) -> list[Any]:
    """The Events about objects named ``involved_name`` in ``namespace`` (``V1Event`` objects)."""
    with _api_errors():
        return list(
            kubernetes.client.CoreV1Api(api)
            .list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={involved_name}", _request_timeout=timeout
            )
            .items
        )


def read_secret(api: ApiClient, namespace: str, name: str, *, timeout: Any) -> Any:
    """The Secret (a ``V1Secret``: ``.data`` holds base64 values)."""
    with _api_errors():
        core = kubernetes.client.CoreV1Api(api)
        return core.read_namespaced_secret(name, namespace, _request_timeout=timeout)


def create_namespace(api: ApiClient, name: str, *, timeout: Any) -> None:
    with _api_errors():
        namespace = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
        kubernetes.client.CoreV1Api(api).create_namespace(namespace, _request_timeout=timeout)


class UnknownKind(Exception):
    """The cluster serves no such apiVersion/kind."""


def apply(
    api: ApiClient, document: Mapping[str, Any], *, before_create: Callable[[str], None] | None = None
) -> None:
    """Create the object, or merge-patch it when it exists: ``kubectl apply`` for the playground's needs.

    Raises :class:`UnknownKind` or :class:`ClusterError`. ``before_create`` is told a namespaced
    object's namespace first (the playground creates it).
    """
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    kind, meta = document.get("kind"), document.get("metadata") or {}
    with _api_errors():
        try:
            resource = DynamicClient(api).resources.get(api_version=document.get("apiVersion"), kind=kind)
        except ResourceNotFoundError:
            raise UnknownKind(f"{document.get('apiVersion')} {kind}") from None
    namespace = None
    if resource.namespaced:
        namespace = meta.get("namespace") or "default"
        if before_create is not None:
            before_create(namespace)
    try:
        with _api_errors():
            resource.create(body=dict(document), namespace=namespace)
    except ClusterError as exc:
        if exc.status != 409:
            raise
        with _api_errors():
            resource.patch(
                body=dict(document),
                name=meta.get("name"),
                namespace=namespace,
                content_type="application/merge-patch+json",
            )
