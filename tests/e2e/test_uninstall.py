"""The README's uninstall order, run for real: resources first (the operator kills each sandbox and
drops its finalizer), then the operator, then the CRD. And the way out when the order was wrong."""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.conftest import Cluster, swarm, wait_for

pytestmark = pytest.mark.e2e


def _alive(e2b: Any) -> list[dict[str, Any]]:
    return [s for s in e2b.inspect() if s["alive"]]


def test_documented_order_leaves_nothing(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    operator = start_operator()
    cluster.namespace("team-a")
    cluster.apply(swarm("one", agents=1), swarm("two", "team-a", agents=1))
    cluster.wait_condition("default", "one", "Ready")
    cluster.wait_condition("team-a", "two", "Ready")
    cluster.kubectl("delete", "swarmsandboxes", "--all", "-A", "--wait", "--timeout=60s", timeout=70)
    assert not _alive(e2b)
    assert operator.stop() == 0
    cluster.kubectl("delete", "crd", "swarmsandboxes.claudeswarm.io", "--timeout=30s", timeout=40)
    assert "swarmsandboxes" not in cluster.kubectl("api-resources").stdout


def test_operator_removed_first_then_finalizer_removed_by_hand(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    operator = start_operator(SWARM_LEASE_SECONDS="8", SWARM_LEASE_RENEW_SECONDS="2")
    cluster.apply(swarm("stuck", agents=1))
    cluster.wait_condition("default", "stuck", "Ready")
    assert operator.stop() == 0
    cluster.kubectl("delete", "swarm", "stuck", "--wait=false")
    body = wait_for(
        lambda: (
            (cluster.get("default", "stuck") or {}).get("metadata", {}).get("deletionTimestamp")
            and cluster.get("default", "stuck")
        ),
        10,
        message="Terminating",
    )
    assert body["metadata"]["finalizers"], "held by the finalizer while no operator runs"
    cluster.kubectl("patch", "swarm", "stuck", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: cluster.get("default", "stuck") is None, 10, message="gone")
    # Nobody kills the sandbox now; the lease does, as the README says.
    wait_for(lambda: not _alive(e2b), 15, message="sandbox expired with its lease")
