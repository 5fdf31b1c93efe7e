"""The Argo CD health check judged against status objects the running operator really wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
from tests.e2e.conftest import REPO, Cluster, swarm

pytestmark = pytest.mark.e2e

HEALTH_LUA = REPO / "charts" / "swarm-operator" / "docs" / "health.lua"


def _health(resource: dict[str, Any]) -> str:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    chunk = lua.execute(f"return function(obj)\n{Path(HEALTH_LUA).read_text()}\nend")
    return chunk(lua.table_from(resource, recursive=True))["status"]


def test_health_lua_on_live_statuses(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator()
    cluster.apply(
        swarm("healthy", agents=1),
        swarm("broken", coordinator={"enabled": True, "install": "claudeswarm"}),
        swarm("paused", agents=1, suspend=True),
        swarm(
            "waiting",
            agents=1,
            agent={
                "command": "sleep",
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
            },
        ),
    )
    cluster.wait_condition("default", "healthy", "Ready")
    cluster.wait_condition("default", "broken", "Ready", "False", reason="InvalidSpec")
    cluster.wait_condition("default", "paused", "Suspended", "True")
    cluster.wait_condition("default", "waiting", "Ready", "False", reason="SecretNotFound")
    verdicts = {
        name: _health(cluster.get("default", name)) for name in ("healthy", "broken", "paused", "waiting")
    }
    assert verdicts == {
        "healthy": "Healthy",
        "broken": "Degraded",
        "paused": "Suspended",
        "waiting": "Progressing",
    }
