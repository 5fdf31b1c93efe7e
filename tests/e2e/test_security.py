"""The operator's own surface: metrics and the liveness probe expose no secret and no per-resource
data beyond names; debug logging never carries a request body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.test_operations import _free_port, _get_or_none

pytestmark = pytest.mark.e2e


def test_metrics_probe_and_debug_logs_hold_no_secret(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    canary = "canary-surface-5b7e1d93a2"
    metrics_port, probe_port = _free_port(), _free_port()
    operator = start_operator(
        "--all-namespaces",
        "--liveness",
        f"http://127.0.0.1:{probe_port}/healthz",
        SWARM_METRICS_PORT=str(metrics_port),
        SWARM_LOG_LEVEL="DEBUG",
    )
    cluster.secret("default", "agent-keys", {"token": canary})
    cluster.apply(
        swarm(
            "guarded",
            agents=1,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "env": [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-keys", "key": "token"}}}
                ],
            },
        )
    )
    cluster.wait_condition("default", "guarded", "Ready")
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    probe = wait_for(lambda: _get_or_none(f"http://127.0.0.1:{probe_port}/healthz"), 15, message="probe").text
    sandbox_id = cluster.status("default", "guarded")["sandbox"]["id"]
    uid = cluster.get("default", "guarded")["metadata"]["uid"]
    for surface in (metrics, probe):
        assert canary not in surface
        assert e2b_api_key not in surface
        assert sandbox_id not in surface and uid not in surface
    assert "guarded" not in metrics, "metrics carry no resource names either"
    log = operator.log()
    assert canary not in log and e2b_api_key not in log
    assert '"stringData"' not in log and '"data": {' not in log, "no request bodies in debug logs"
