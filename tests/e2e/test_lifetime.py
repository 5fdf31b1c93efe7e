"""The E2B plan's lifetime cap end to end: the real operator, the kube emulator, and the E2B
emulator on plan ``hobby`` with a short cap (E2B counts it from the sandbox's start; the emulator
cites e2b-dev/infra keep_alive.go and timeout_helper.go for it). The swarm is handed over to a new
Ready sandbox before the cap: never two sandboxes but during the hand-over, never none."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import E2E_OPT_INS, Cluster, swarm, wait_for

from swarm_operator import bootstrap

pytestmark = pytest.mark.e2e

CAP = 45  # seconds: the emulator's lifetime_cap_seconds, and the operator's setting
#: The operator scaled down: leases longer than the cap (so only the cap bounds them), renewals
#: every ~2 s, the hand-over 20 s before the cap.
SETTINGS = {
    "SWARM_SANDBOX_MAX_LIFETIME_SECONDS": str(CAP),
    "SWARM_SANDBOX_HANDOVER_LEAD_SECONDS": "20",
    "SWARM_LEASE_SECONDS": "60",
    "SWARM_LEASE_RENEW_SECONDS": "2",
}


@pytest.fixture()
def e2b(e2b_emulator_factory: Any, sandbox_home: Path) -> Any:
    """The harness's emulator, on Hobby with a 45 s lifetime cap."""
    return e2b_emulator_factory(
        home_template=sandbox_home, plan="hobby", lifetime_cap_seconds=CAP, **E2E_OPT_INS
    )


def _panes(e2b: Any, api_key: str, cluster: Cluster, name: str) -> list[str]:
    """The swarm's tmux panes, read through the official SDK (connect asks a timeout under the cap:
    the SDK's default of 300 s is a 400 on this emulator, as on E2B past the plan's cap)."""
    body = cluster.get("default", name)
    assert body is not None
    uid = body["metadata"]["uid"]
    session, socket = (
        bootstrap.session_name("default", name, uid),
        bootstrap.socket_name("default", name, uid),
    )
    sandbox = Sandbox.connect(
        body["status"]["sandbox"]["id"], timeout=10, api_key=api_key, api_url=e2b.url, sandbox_url=e2b.url
    )
    return sandbox.commands.run(
        f"tmux -L {socket} list-panes -s -t ={session} -F '#{{pane_dead}} #{{pane_current_command}}'",
        timeout=20,
    ).stdout.splitlines()


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_swarm_is_handed_over_to_a_new_ready_sandbox_before_the_plans_cap(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator(**SETTINGS)
    cluster.apply(swarm("capped", agents=2))
    cluster.wait_condition("default", "capped", "Ready", timeout=30)
    first = cluster.status("default", "capped")["sandbox"]
    [record] = [s for s in e2b.inspect() if s["alive"]]
    assert record["sandboxID"] == first["id"]
    # The create asked no more than the cap (a 60 s lease would be a 400), and expiresAt is the
    # real end: the cap counted from the sandbox's start, not the 60 s lease.
    assert record["createRequest"]["timeout"] == CAP
    assert _when(first["expiresAt"]) <= _when(record["startedAt"]) + timedelta(seconds=CAP + 1)

    # Watch every sandbox the emulator holds until the first one is gone and the swarm runs on.
    most_alive, none_alive, both_since, both_for = 0, False, None, 0.0
    seen_when_old_gone: dict[str, Any] | None = None
    deadline = time.monotonic() + CAP + 15
    while time.monotonic() < deadline:
        alive = [s["sandboxID"] for s in e2b.inspect() if s["alive"]]
        most_alive = max(most_alive, len(alive))
        none_alive = none_alive or not alive
        if len(alive) == 2:
            both_since = both_since or time.monotonic()
        elif both_since is not None:
            both_for, both_since = max(both_for, time.monotonic() - both_since), None
        if first["id"] not in alive:
            status = cluster.status("default", "capped")
            ready = cluster.condition("default", "capped", "Ready") or {}
            seen_when_old_gone = {
                "sandbox": status.get("sandbox") or {},
                "ready": ready.get("status"),
                "at": datetime.now(UTC),
            }
            break
        time.sleep(0.05)
    assert seen_when_old_gone is not None, "the first sandbox outlived the plan's cap"
    assert not none_alive, "a moment with no sandbox at all"
    assert most_alive <= 2, "at most one extra sandbox"
    # When the old sandbox died, the new one was already Ready and on record.
    new_id = seen_when_old_gone["sandbox"].get("id")
    assert new_id not in (None, first["id"]) and seen_when_old_gone["ready"] == "True"
    [old] = [s for s in e2b.inspect(include_dead=True) if s["sandboxID"] == first["id"]]
    assert old["state"] == "killed", "handed over, not ended by E2B at the cap"
    assert (seen_when_old_gone["at"] - _when(old["startedAt"])).total_seconds() < CAP
    # Two sandboxes only during the hand-over: the new one's create, identity check and setup.
    assert both_for < 15, f"two sandboxes for {both_for:.1f}s"
    wait_for(
        lambda: [s["sandboxID"] for s in e2b.inspect() if s["alive"]] == [new_id],
        5,
        message="only the new sandbox left",
    )
    status = cluster.status("default", "capped")
    assert status["phase"] == "Ready" and status["sandbox"]["startedAt"] == first["startedAt"]
    [new] = [s for s in e2b.inspect() if s["sandboxID"] == new_id]
    assert _when(status["sandbox"]["expiresAt"]) <= _when(new["startedAt"]) + timedelta(seconds=CAP + 1)
    assert _panes(e2b, e2b_api_key, cluster, "capped") == ["0 sleep"] * 2
    handovers = [e for e in cluster.events("default", "capped") if e.reason == "LifetimeHandover"]
    assert handovers and handovers[0].type == "Warning" and first["id"] in handovers[0].message
