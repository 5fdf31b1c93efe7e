"""One resolution of a resource's E2B API key, shared by the lifecycle and the console: both read
the same Secret, through a real kubernetes client against the Kubernetes emulator, whether the
resource names its own key or uses the operator's default (moved by SWARM_* settings)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from swarm_operator import console
from swarm_operator.cluster import user as cluster
from swarm_operator.config import Settings
from swarm_operator.lifecycle import ResourceRef
from swarm_operator.lifecycle.agents import api_key_ref
from swarm_operator.model import SwarmSandboxSpec
from swarm_operator.secrets import SecretKeyRef

SPEC = {"agents": 1, "agent": {"command": "sleep"}, "coordinator": {"enabled": False}}


@pytest.fixture
def api(kube_emulator: Any) -> Iterator[Any]:
    client = cluster.user_client(kube_emulator.kubeconfig, in_cluster_fallback=False)
    try:
        yield client
    finally:
        client.close()


def _secret(api: Any, where: SecretKeyRef, value: str) -> None:
    try:
        cluster.create_namespace(api, where.namespace, timeout=10)
    except cluster.ClusterError as exc:
        assert exc.status == 409
    cluster.apply(
        api,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": where.name, "namespace": where.namespace},
            "data": {where.key: base64.b64encode(value.encode()).decode()},
        },
    )


@pytest.mark.parametrize(
    "e2b",
    [{"apiKeySecretRef": {"name": "team-key", "key": "token"}}, None],
    ids=["own-secret", "operator-default"],
)
def test_console_and_lifecycle_read_the_same_secret(
    api: Any, e2b: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_NAMESPACE", "ops")
    monkeypatch.setenv("SWARM_DEFAULT_API_KEY_SECRET", "shared-key")
    monkeypatch.setenv("SWARM_DEFAULT_API_KEY_SECRET_KEY", "e2b")
    body = {"metadata": {"namespace": "team", "name": "s"}, "spec": {**SPEC, **({"e2b": e2b} if e2b else {})}}
    where = api_key_ref(
        ResourceRef("team", "s", "uid-1", 1), SwarmSandboxSpec.from_body(body["spec"]), Settings.from_env()
    )
    expected = SecretKeyRef("team", "team-key", "token") if e2b else SecretKeyRef("ops", "shared-key", "e2b")
    assert where == expected
    # Decoys where a resolution that differed would look: the other Secret, and the default's
    # name in the resource's own namespace.
    _secret(api, SecretKeyRef("team", "team-key", "token"), "e2b_own")
    _secret(api, SecretKeyRef("ops", "shared-key", "e2b"), "e2b_default")
    _secret(api, SecretKeyRef("team", "shared-key", "e2b"), "e2b_wrong_namespace")
    assert console.api_key(console.Swarm(api, body)) == ("e2b_own" if e2b else "e2b_default")
