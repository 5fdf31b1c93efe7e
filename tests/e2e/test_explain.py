"""`kubectl explain` reads well: every field of the SwarmSandbox carries a description.

kubectl explain reads the OpenAPI v3 document the (emulated) API server publishes for the CRD, so
this proves what a user sees: each object's page lists its fields, none "<no description>".
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.conftest import Cluster

from swarm_operator import _crd

pytestmark = pytest.mark.e2e


def _object_paths(schema: dict[str, Any], path: str) -> list[str]:
    found = [path]
    for name, sub in (schema.get("properties") or {}).items():
        if sub.get("type") == "object" and sub.get("properties"):
            found += _object_paths(sub, f"{path}.{name}")
        elif sub.get("type") == "array" and (sub.get("items") or {}).get("properties"):
            found += _object_paths(sub["items"], f"{path}.{name}")
    return found


def test_every_field_is_described_in_kubectl_explain(cluster: Cluster) -> None:
    schema = _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    paths = [p for p in _object_paths(schema, "swarm") if p != "swarm"]
    assert "swarm.spec.agent" in paths and "swarm.status.conditions" in paths
    for path in paths:
        out = cluster.kubectl("explain", path).stdout
        assert "FIELDS:" in out, path
        assert "<no description>" not in out, f"{path}:\n{out}"
    top = cluster.kubectl("explain", "swarm").stdout
    assert "KIND:       SwarmSandbox" in top and "A swarm of coding agents" in top
