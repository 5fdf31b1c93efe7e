"""Issue 16, hole 7 end to end: with the coordinator enabled, Ready needs every agent registered."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import FIXTURE_BIN, Cluster, swarm, wait_for

from swarm_operator.model import COORDINATOR_PIN

pytestmark = pytest.mark.e2e

#: A coordinator that registers every agent but the last (a registry that lost one).
_SHORT_COORDINATOR = """#!/bin/bash
# Test double: the stand-in claudeswarm, except that discover-agents drops the last agent.
real="$HOME/.local/bin/claudeswarm-real"
if [[ ${{1-}} == discover-agents && ${{2-}} == --json ]]; then
    "$real" "$@" | python3 -c '
import json, sys
registry = json.loads(sys.stdin.read())
registry["agents"] = registry["agents"][:-1]
print(json.dumps(registry))'
    exit
fi
exec "$real" "$@"
"""


@pytest.fixture()
def sandbox_home(tmp_path: Path) -> Path:
    """The usual sandbox home, with a coordinator that registers N-1 of N agents."""
    home = tmp_path / "sandbox-home"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')
    for tool in FIXTURE_BIN.iterdir():  # copies: a checkout under /tmp is hidden in a sandbox
        shutil.copy2(tool, bin_dir / ("claudeswarm-real" if tool.name == "claudeswarm" else tool.name))
    short = bin_dir / "claudeswarm"
    short.write_text(_SHORT_COORDINATOR.format())
    short.chmod(0o755)
    # The pin a prebuilt template records: the default coordinator.install is satisfied.
    (home / ".swarm-template").mkdir()
    (home / ".swarm-template" / "coordinator").write_text(COORDINATOR_PIN)
    return home


def test_a_coordinator_registering_n_minus_1_of_n_agents_is_not_ready(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator(SWARM_INIT_ATTEMPTS="2")
    cluster.apply(swarm("short", agents=3, coordinator={"enabled": True}))
    seen: set[str] = set()

    def ended() -> dict[str, Any] | None:
        agents = cluster.condition("default", "short", "AgentsReady") or {}
        seen.add(agents.get("reason", ""))
        assert agents.get("status") != "True", "Ready with an agent missing from the registry"
        ready = cluster.condition("default", "short", "Ready") or {}
        return ready if ready.get("reason") == "InitFailed" else None

    ready = wait_for(ended, 90, interval=0.1, message="InitFailed")
    # (Between attempts AgentsReady says AgentsNotRegistered; polling may or may not catch it.)
    assert "2/3 agents registered with the coordinator" in ready["message"]
    assert [s["sandboxID"] for s in e2b.inspect() if s["alive"]] == []
