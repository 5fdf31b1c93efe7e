"""``swarm-operator status`` reads the stored status through the status model, one top-level field at a
time: a valid status gives the page it always gave, a field the model cannot read (a newer operator's,
a hand edit) shows as ``-`` and is named, and ``-o json`` prints the status as stored, unread.
The page against a real operator is tests/e2e/test_cli.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_operator import swarmctl
from swarm_operator.console import ConsoleError, Swarm, format_status, read_status, status_json
from swarm_operator.model import SwarmSandboxStatus

NOW = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)


def _t(seconds_ago: int) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(kind: str, status: str, reason: str, message: str = "", ago: int = 30) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _t(ago),
    }


FULL: dict[str, Any] = {
    "phase": "Ready",
    "message": "2/2 agents running",
    "observedGeneration": 2,
    "conditions": [
        _cond("SandboxCreated", "True", "Created"),
        _cond("Ready", "True", "AgentsRunning", "all up", 4000),
        _cond("Suspended", "False", "Running"),
    ],
    "sandbox": {"id": "sbx-abc", "template": "swarm-base", "startedAt": _t(700), "expiresAt": _t(-3000)},
    "agents": {
        "desired": 2,
        "ready": 2,
        "summary": "2/2",
        "items": [
            {"id": 0, "pane": "%1", "state": "Running"},
            {"id": 1, "pane": "%2", "state": "Restarting", "restarts": 3},
        ],
    },
    "health": {
        "status": "Unhealthy",
        "lastProbeTime": _t(5),
        "reason": "agent-1 dead",
        "consecutiveFailures": 2,
    },
    # As the API server stores it: keys sorted, so a setup step can come before an operator step.
    "metrics": {
        "stepSeconds": {"create": 1.234, "init": 5, "init.clone": 2.5, "init.tools": 0.1, "lease": 0.02}
    },
    "workspace": {"repo": "https://g/r.git", "ref": "main", "commit": "a" * 40},
    "cost": {
        "sandboxSeconds": 600,
        "pausedSeconds": 30,
        "estimatedUSD": 0.0123,
        "asOf": _t(60),
        "state": "Running",
        "vcpu": 2,
        "memoryMiB": 1024,
        "rateUSDPerHour": 0.1,
    },
    "task": {"generation": 2, "deliveredAt": _t(90), "agents": [0, 1], "message": "pane 1 gone"},
    "progress": {
        "messages": 12,
        "lastMessageTime": _t(20),
        "commits": 3,
        "filesChanged": 7,
        "updatedAt": _t(10),
        "agents": [{"id": i, "lastOutputTime": _t(i * 100)} for i in range(11)],
    },
}
EVENTS = [
    {"time": _t(40), "type": "Normal", "reason": "Created", "message": "sandbox sbx-abc", "count": 1},
    {"time": _t(4000), "type": "Warning", "reason": "AgentDead", "message": "agent-1", "count": 3},
]
# The page the raw-dict reader printed for FULL (before the status model read it): kept byte for byte.
FULL_PAGE = """\
Name:       default/chat
Phase:      Ready — 2/2 agents running
Agents:     2/2 ready
Sandbox:    sbx-abc  (template swarm-base)
Started:    2026-11-05T11:48:20Z (11m40s ago)
Expires:    2026-11-05T12:50:00Z (in 50m00s)
Health:     Unhealthy, last probe 2026-11-05T11:59:55Z (5s ago), 2 failures in a row — agent-1 dead
Cost:       $0.0140 so far, $0.1000/hour now (running, 2 vCPU / 1024 MiB); 11m00s running, 30s paused
Task:       generation 2, delivered 90s ago to 2 pane(s) — last delivery failed: pane 1 gone
Progress:   12 messages (last 20s ago), 3 commits, 7 files changed (as of 10s ago)
Output:     agent-0 0s ago, agent-1 1m ago, agent-2 3m ago, agent-3 5m ago, agent-4 6m ago, \
agent-5 8m ago, agent-6 10m ago, agent-7 11m ago, and 3 more

AGENT    PANE  STATE       RESTARTS
agent-0  %1    Running     0
agent-1  %2    Restarting  3

CONDITION       STATUS  REASON         SINCE  MESSAGE
SandboxCreated  True    Created        30s
Ready           True    AgentsRunning  1h06m  all up
Suspended       False   Running        30s

Steps:      create 1.23s, init 5.00s, init.clone 2.50s, init.tools 0.10s, lease 0.02s

AGE    TYPE     REASON     MESSAGE
40s    Normal   Created    sandbox sbx-abc
1h06m  Warning  AgentDead  agent-1 (x3)"""


def _swarm(status: Any, spec: dict[str, Any] | None = None) -> Swarm:
    meta = {"name": "chat", "namespace": "default", "uid": "u-1"}
    return Swarm(api=None, body={"metadata": meta, "spec": spec or {}, "status": status})  # type: ignore[arg-type]


def test_a_valid_status_gives_the_same_page() -> None:
    assert read_status(FULL).unreadable == frozenset()
    assert format_status(_swarm(FULL), EVENTS, NOW) == FULL_PAGE
    # What the operator writes (through the model) reads back to the same page.
    written = SwarmSandboxStatus.from_body(FULL).to_patch()
    assert format_status(_swarm(written), EVENTS, NOW) == FULL_PAGE


def test_empty_parts_are_shown_as_absent() -> None:
    empty = {"phase": "Failed", "sandbox": {}, "health": {}, "cost": {}, "progress": {}, "task": {}}
    assert format_status(_swarm(empty), [], NOW).splitlines()[:10] == [
        "Name:       default/chat",
        "Phase:      Failed",
        "Agents:     0/0 ready",
        "Sandbox:    -",
        "Started:    -",
        "Expires:    -",
        "Health:     Unknown",
        "Cost:       -",
        "Progress:   -",
        "",
    ]
    assert format_status(_swarm(None), [], NOW).splitlines()[1] == "Phase:      Pending"


UNREADABLE = [
    ("phase", "Hibernating", "Phase:      -"),
    ("message", 5, "Phase:      -"),  # the message is left out; the phase line is checked below
    ("sandbox", {"id": "sbx-abc", "startedAt": "yesterday"}, "Sandbox:    -"),
    ("agents", {"ready": -1}, "Agents:     -"),
    ("health", {"status": "Sleepy"}, "Health:     -"),
    ("cost", {"state": "Frozen"}, "Cost:       -"),
    ("conditions", [{"type": "Ready", "status": "True"}], "Conditions: -"),
    ("metrics", {"stepSeconds": "fast"}, "Steps:      -"),
    ("progress", {"messages": "many"}, "Progress:   -"),
    ("task", {"generation": "x"}, "Progress:   12 messages"),  # no Task: line
]


@pytest.mark.parametrize(("field", "value", "shown"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_a_field_the_model_cannot_read_is_a_dash_and_named(field: str, value: Any, shown: str) -> None:
    status = {**copy.deepcopy(FULL), field: value}
    if field == "message":
        status["phase"] = "Hibernating"
    assert read_status(status).unreadable == ({field} if field != "message" else {"message", "phase"})
    page = format_status(_swarm(status), EVENTS, NOW)
    lines = page.splitlines()
    assert any(line.startswith(shown) for line in lines), page
    assert f"Unreadable: status.{field}" in page or field == "message", page
    assert "(see: swarm-operator status chat -o json)" in page
    if field == "message":
        assert "Phase:      -" in lines and "2/2 agents running" not in page
    if field == "task":
        assert not any(line.startswith("Task:") for line in lines)
    # Everything else is still read: a field the model reads is shown as it always was.
    kept = [
        line for line in FULL_PAGE.splitlines() if line.startswith(("Name:", "AGE    TYPE", "1h06m  Warning"))
    ]
    assert all(line in lines for line in kept), page
    if field != "sandbox":
        assert "Sandbox:    sbx-abc  (template swarm-base)" in lines, page
    if field not in ("agents",):
        assert "agent-1  %2    Restarting  3" in lines, page


def test_a_status_that_is_not_an_object_still_gives_a_page() -> None:
    page = format_status(_swarm(["not", "an", "object"]), [], NOW)
    assert "Unreadable: status (see: swarm-operator status chat -o json)" in page
    assert "Phase:      Pending" in page and "Sandbox:    -" in page


def test_json_prints_the_status_as_stored() -> None:
    status = {**FULL, "phase": "Hibernating", "newerField": {"x": 1}, "cost": {"state": "Frozen"}}
    assert json.loads(status_json(_swarm(status))) == status


def test_the_other_readers_go_through_the_model(tmp_path: Path) -> None:
    with pytest.raises(ConsoleError, match="cannot read its status.sandbox"):
        _ = _swarm({"sandbox": {"id": 7}}).sandbox_id
    with pytest.raises(ConsoleError, match=r"no sandbox yet \(phase -\)"):
        _ = _swarm({"phase": "Hibernating"}).sandbox_id
    assert _swarm(FULL).sandbox_id == "sbx-abc"
    suspended = {**FULL, "conditions": [_cond("Suspended", "True", "Budget", "over budget")]}
    with pytest.raises(ConsoleError, match="is suspended"):
        swarmctl.pull(_swarm(suspended, {"workspace": {"repo": "r"}}), tmp_path)  # api=None: no call made
    with pytest.raises(ConsoleError, match=r"is not Ready \(phase -\)"):
        swarmctl.pull(_swarm({**FULL, "phase": "Hibernating"}, {"workspace": {"repo": "r"}}), tmp_path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = [*FULL, "mcp", "network", "secrets"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6),
    st.sampled_from([None, *FULL]),
    st.sampled_from([None, "x", "startedAt", "state", "items", "lastTransitionTime", "9999-12-31T23:59:59Z"]),
)
def test_any_status_gives_a_page_never_a_traceback(
    junk: dict[str, Any], spoil: str | None, key: str | None
) -> None:
    """Whatever is stored under the status's fields (or one of FULL's spoiled), the page renders."""
    status = {**copy.deepcopy(FULL), **junk}
    if spoil is not None and key is not None and isinstance(status.get(spoil), dict):
        status[spoil][key] = key
    page = format_status(_swarm(status), EVENTS, NOW)
    assert page.startswith("Name:       default/chat\nPhase:      ")
