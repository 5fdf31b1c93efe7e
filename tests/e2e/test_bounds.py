"""Issue 16 end to end: every path ends Ready, Failed (sandbox killed) or gone, within its bound —
the real operator process, kubectl, both emulators."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import Cluster, swarm, wait_for

from swarm_operator.config import Settings
from swarm_operator.lifecycle import bounds
from swarm_operator.names import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.e2e


def _created(e2b: Any) -> list[dict[str, Any]]:
    """Every sandbox the emulator ever created (dead ones too)."""
    return list(e2b.inspect(include_dead=True))


def _alive(e2b: Any) -> list[str]:
    return [s["sandboxID"] for s in e2b.inspect() if s["alive"]]


def test_an_oversized_spec_is_invalid_and_the_emulator_saw_no_create(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    # Aggregate sizes the per-field schema lets through: the CRD's CEL rule refuses them (422).
    refused = cluster.kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        check=False,
        input=json.dumps(swarm("wordy", agent={"command": "sleep", "args": ["a" * 4096] * 30})),
    )
    assert refused.returncode != 0 and "agent.args may hold at most 32768 characters" in refused.stderr
    # What no schema can see (a ConfigMap's size): rendered and measured before any create.
    cluster.core.create_namespaced_config_map(
        "default", {"metadata": {"name": "big-config"}, "data": {"notes.md": "x" * 200_000}}
    )
    cluster.apply(swarm("big", agent={"command": "claude", "config": {"configMapName": "big-config"}}))
    cond = cluster.wait_condition("default", "big", "Ready", "False", reason="InvalidSpec")
    assert "bytes one command can carry" in cond["message"] and "ConfigMap" in cond["message"]
    assert cluster.status("default", "big")["phase"] == "Failed"
    time.sleep(1)
    assert _created(e2b) == []


@pytest.fixture()
def silent_https() -> Iterator[str]:
    """An HTTPS URL on 127.0.0.1 whose server accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)  # kept open, never read, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}/repo.git"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def test_a_workspace_clone_that_hangs_ends_failed_naming_the_step_with_the_sandbox_killed(
    cluster: Cluster, e2b: Any, start_operator: Any, silent_https: str
) -> None:
    settings = {
        "SWARM_COMMAND_TIMEOUT_SECONDS": "5",
        "SWARM_READY_TIMEOUT_SECONDS": "5",
        "SWARM_INIT_ATTEMPTS": "2",
    }
    start_operator(**settings)
    bound = bounds.init_bound_seconds(
        Settings.from_env(
            {**settings, "SWARM_MAX_RETRY_DELAY_SECONDS": "3", "SWARM_INIT_BACKOFF_SECONDS": "0.2"}
        )
    )
    started = time.monotonic()
    cluster.apply(swarm("hung", workspace={"repo": silent_https, "ref": "a" * 40}))
    cond = cluster.wait_condition(
        "default", "hung", "Ready", "False", reason="InitFailed", timeout=bound + 30
    )
    took = time.monotonic() - started
    assert took <= bound, (took, bound)
    assert "workspace" in cond["message"] and "timed out" in cond["message"], cond["message"]
    status = cluster.status("default", "hung")
    assert status["phase"] == "Failed" and "sandbox" not in status
    [made] = _created(e2b)
    assert not made["alive"], "the sandbox was killed"


def test_a_forged_status_sandbox_id_kills_nothing_of_the_other_resource(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator(SWARM_LEASE_RENEW_SECONDS="1")
    cluster.apply(swarm("tenant-a"), swarm("tenant-b"))
    cluster.wait_condition("default", "tenant-a", "Ready")
    cluster.wait_condition("default", "tenant-b", "Ready")
    a_id = cluster.status("default", "tenant-a")["sandbox"]["id"]
    b_id = cluster.status("default", "tenant-b")["sandbox"]["id"]
    # A tenant able to patch status points its resource at the other one's sandbox.
    cluster.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "tenant-a", {"status": {"sandbox": {"id": b_id}}}
    )
    # The next lease tick finds E2B's uid tag disagreeing: the hint is dropped, its own is adopted.
    wait_for(
        lambda: (cluster.status("default", "tenant-a").get("sandbox") or {}).get("id") == a_id,
        30,
        message="tenant-a back on its own sandbox",
    )
    assert any(e.reason == "SandboxNotFound" for e in cluster.events("default", "tenant-a"))
    cluster.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "tenant-a", {"status": {"sandbox": {"id": b_id}}}
    )
    cluster.kubectl("delete", "swarm", "tenant-a", "--wait=true")
    wait_for(lambda: a_id not in _alive(e2b), 30, message="tenant-a's own sandbox killed")
    assert b_id in _alive(e2b)
    time.sleep(2)  # a few more lease ticks of tenant-b
    assert b_id in _alive(e2b)
    assert (cluster.condition("default", "tenant-b", "Ready") or {}).get("status") == "True"


def test_a_template_change_waits_for_a_creation_token_across_an_operator_restart(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    operator = start_operator(SWARM_CREATIONS_PER_MINUTE="1", SWARM_REPLACE_DEBOUNCE_SECONDS="0")
    cluster.apply(swarm("moving", template="base"))
    cluster.wait_condition("default", "moving", "Ready")  # took the minute's only token
    first_create = time.monotonic()
    cluster.kubectl("patch", "swarm", "moving", "--type=merge", "-p", '{"spec": {"template": "other"}}')
    synced = cluster.wait_condition("default", "moving", "Synced", "False", reason="RateLimited")
    assert "waits for a creation slot" in synced["message"]
    assert len(_created(e2b)) == 1
    # A restart must not hand out a fresh allowance: the new process replays E2B's start times.
    operator.stop()
    start_operator(SWARM_CREATIONS_PER_MINUTE="1", SWARM_REPLACE_DEBOUNCE_SECONDS="0")
    while time.monotonic() - first_create < 40:
        assert len(_created(e2b)) == 1, "a create before the minute's token was back"
        time.sleep(0.5)
    wait_for(
        lambda: (cluster.status("default", "moving").get("sandbox") or {}).get("template") == "other",
        60,
        message="moved once a token was back",
    )
    assert len(_created(e2b)) == 2
    assert time.monotonic() - first_create >= 45
