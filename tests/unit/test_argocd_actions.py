"""Argo CD resource actions (suspend, resume) run under real Lua (lupa), the way Argo CD runs them: the
resource as the global ``obj``, ``discovery.lua`` returning the actions table, each ``action.lua``
returning the changed resource — on resources whose statuses are built as the operator builds them."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import lupa
import pytest
import yaml
from test_argocd import CREATED, _resource, _status
from test_chart_tools import CHART

from swarm_operator.conditions import ConditionType as T
from swarm_operator.conditions import Reason as R
from swarm_operator.model import SwarmSandboxSpec
from swarm_operator.names import RESUME_ANNOTATION

ACTIONS = CHART / "docs" / "actions"
READY = [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), (T.SYNCED, "True", R.RECONCILED)]


def _paused(reason: R) -> list[tuple[str, str, str]]:
    return [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), (T.SUSPENDED, "True", reason)]


def _python(value: Any, was: Any = None) -> Any:
    """A Lua value as the JSON Argo CD makes of it: tables with keys 1..n are arrays, and an empty
    table where the resource had an array stays an array (Argo CD's ``cleanReturnedObj``)."""
    if lupa.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if not items and isinstance(was, list):
        return []
    if items and list(items) == list(range(1, len(items) + 1)):
        old = was if isinstance(was, list) else []
        return [_python(v, old[i] if i < len(old) else None) for i, v in enumerate(items.values())]
    old_map = was if isinstance(was, dict) else {}
    return {k: _python(v, old_map.get(k)) for k, v in items.items()}


@pytest.fixture(scope="module")
def run() -> Any:
    """Run one script of ``actions/`` with a resource as ``obj``; returns what the script returns."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def call(script: str, resource: dict[str, Any]) -> Any:
        chunk = lua.execute(f"return function(obj)\n{(ACTIONS / script).read_text()}\nend")
        return _python(chunk(lua.table_from(copy.deepcopy(resource), recursive=True)), resource)

    return call


def _swarm(steps: list[Any] | None, *, suspend: bool | None = None, deleting: bool = False) -> dict[str, Any]:
    body = _resource(None if steps is None else _status(steps), deleting=deleting)
    body["spec"] = {"agents": 2, "agent": {"command": "claude"}}
    if suspend is not None:
        body["spec"]["suspend"] = suspend
    return body


@pytest.mark.parametrize(
    ("case", "body", "suspend_enabled", "resume_enabled"),
    [
        ("no-status-yet", _swarm(None), True, False),
        ("ready", _swarm(READY), True, False),
        ("ready-suspend-false", _swarm(READY, suspend=False), True, False),
        ("suspended", _swarm(_paused(R.SUSPENDED), suspend=True), False, True),
        ("suspend-asked-not-yet-paused", _swarm(READY, suspend=True), False, True),
        ("idle", _swarm(_paused(R.IDLE)), True, True),
        ("budget", _swarm(_paused(R.BUDGET_EXCEEDED)), True, False),
        ("deleting", _swarm(READY, suspend=True, deleting=True), False, False),
    ],
)
def test_discovery(
    run: Any, case: str, body: dict[str, Any], suspend_enabled: bool, resume_enabled: bool
) -> None:
    actions = run("discovery.lua", body)
    assert set(actions) == {"suspend", "resume"}, case
    assert actions["suspend"]["disabled"] is (not suspend_enabled), case
    assert actions["resume"]["disabled"] is (not resume_enabled), case
    assert all(a["iconClass"].startswith("fa ") for a in actions.values())


def test_suspend_sets_spec_suspend_and_nothing_else(run: Any) -> None:
    body = _swarm(READY)
    changed = run("suspend/action.lua", body)
    assert changed["spec"]["suspend"] is True
    changed["spec"].pop("suspend")
    assert changed == body
    SwarmSandboxSpec.model_validate(run("suspend/action.lua", body)["spec"])  # still a valid spec
    assert run("suspend/action.lua", {k: v for k, v in body.items() if k != "spec"})["spec"] == {
        "suspend": True
    }


def test_resume_clears_spec_suspend_and_asks_to_lift_an_idle_pause(run: Any) -> None:
    body = _swarm(_paused(R.SUSPENDED), suspend=True)
    body["metadata"]["annotations"] = {"team": "red"}
    before = datetime.now(UTC).replace(microsecond=0)
    changed = run("resume/action.lua", body)
    assert changed["spec"]["suspend"] is False
    annotations = changed["metadata"].pop("annotations")
    assert annotations["team"] == "red"
    stamp = annotations[RESUME_ANNOTATION]  # the annotation the operator watches (handlers.py)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert before <= datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= before + timedelta(seconds=5)
    del body["metadata"]["annotations"]
    changed["spec"]["suspend"] = True
    assert changed == body  # nothing else moved
    idle = run("resume/action.lua", _swarm(_paused(R.IDLE)))  # no spec.suspend: none is added
    assert "suspend" not in idle["spec"] and RESUME_ANNOTATION in idle["metadata"]["annotations"]


def test_docs_snippet_is_the_scripts() -> None:
    text = (CHART / "docs" / "argocd.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    [cm] = [b for b in blocks if "resource.customizations.actions.claudeswarm.io_SwarmSandbox" in b["data"]]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    actions = yaml.safe_load(cm["data"]["resource.customizations.actions.claudeswarm.io_SwarmSandbox"])
    assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    assert {d["name"]: d["action.lua"] for d in actions["definitions"]} == {
        name: (ACTIONS / name / "action.lua").read_text() for name in ("suspend", "resume")
    }
