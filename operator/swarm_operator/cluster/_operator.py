"""The operator's own Kubernetes API calls (see :mod:`swarm_operator.cluster`).

kopf watches and patches through its own async client; what it does not do for us — reading
Secrets and writing status mid-handler (the sandbox id must be on record before initialising) — goes
through here. Every call runs in a worker thread, so the event loop that serves every other resource
never waits on the API server, and every call carries a request timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import kubernetes

from swarm_operator.names import GROUP, PLURAL, VERSION

if TYPE_CHECKING:
    from swarm_operator.lifecycle import ResourceRef

#: The client handle callers pass back in; its ``configuration.host`` names the cluster.
ApiClient = kubernetes.client.ApiClient


def api_client(*, pool_size: int = 4) -> kubernetes.client.ApiClient:
    """A client for the cluster the operator runs in, or else the current kubeconfig context.

    The configuration is built explicitly (not loaded into the client's global default) so the
    operator's client can never be switched by another library loading a different kubeconfig.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    # Never log request or response bodies: they carry Secrets.
    configuration.debug = False
    # One connection per worker thread, so concurrent calls do not queue for a socket.
    configuration.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(configuration)


class KubeStatusWriter:
    """Writes status merge patches to the ``status`` subresource."""

    def __init__(self, client: kubernetes.client.ApiClient, *, timeout_s: float) -> None:
        self._api = kubernetes.client.CustomObjectsApi(client)
        self._timeout_s = timeout_s

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> None:
        await asyncio.to_thread(
            self._api.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            {"status": dict(patch)},
            _request_timeout=self._timeout_s,
            _content_type="application/merge-patch+json",
        )


class KubeResourceLister:
    """Lists the uids of every SwarmSandbox the operator may own (for the orphan sweeper)."""

    def __init__(
        self, client: kubernetes.client.ApiClient, *, namespaces: Sequence[str] | None, timeout_s: float
    ) -> None:
        self._api = kubernetes.client.CustomObjectsApi(client)
        self._namespaces = list(namespaces) if namespaces else None
        self._timeout_s = timeout_s

    async def uids(self) -> set[str]:
        return await asyncio.to_thread(self._uids)

    def _uids(self) -> set[str]:
        if self._namespaces is None:
            pages = [
                self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=self._timeout_s)
            ]
        else:
            pages = [
                self._api.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, _request_timeout=self._timeout_s
                )
                for namespace in self._namespaces
            ]
        return {item["metadata"]["uid"] for page in pages for item in json_object(page).get("items", [])}


def json_object(value: object) -> dict[str, Any]:
    """A custom-object call's answer (the client types it ``object``): the decoded JSON object."""
    if not isinstance(value, dict):
        raise TypeError(f"the API server answered {type(value).__name__}, not a JSON object")
    return value


def core_api(client: ApiClient) -> kubernetes.client.CoreV1Api:
    """The core API (Secrets, ConfigMaps) on ``client``, which the operator's Secret reader uses."""
    return kubernetes.client.CoreV1Api(client)
