"""Argo CD: the SwarmSandbox health.lua run under real Lua (lupa) against statuses built exactly as the
operator builds them (conditions.py + model/), the argocd-cm snippet in the docs, the example
Application."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import lupa
import pytest
import yaml
from test_chart_tools import CHART, ROOT, find, render

from swarm_operator import conditions as cond
from swarm_operator.conditions import ConditionType as T
from swarm_operator.conditions import Reason as R
from swarm_operator.model import AgentsStatus, Phase, SandboxStatus, SwarmSandboxStatus

HEALTH_LUA = CHART / "docs" / "health.lua"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
GEN = 3


def _status(
    steps: list[tuple[str, str, str]],
    *,
    generation: int = GEN,
    deleting: bool = False,
    agents: tuple[int, int] = (4, 0),
) -> dict[str, Any]:
    """A status as the operator writes it: conditions set one by one, Ready recomputed, phase derived,
    serialised through the model's own ``to_patch``."""
    conditions: list[Any] = []
    for type_, status, reason in steps:
        conditions = cond.set_condition(
            conditions,
            type_,
            status,
            reason,
            f"{reason} message",  # type: ignore[arg-type]
            observed_generation=generation,
            now=NOW,
        )
    conditions = cond.refresh_ready(conditions, observed_generation=generation, now=NOW)
    phase = cond.derive_phase(conditions, deleting=deleting)
    status = SwarmSandboxStatus(
        phase=phase,
        observed_generation=generation,
        message=f"{phase} summary",
        conditions=conditions,
        sandbox=SandboxStatus(id="sbx-1", template="base", started_at=NOW),
        agents=AgentsStatus(desired=agents[0], ready=agents[1]),
    )
    return status.to_patch()


CREATED = (T.SANDBOX_CREATED, "True", R.CREATING)
SYNCED = (T.SYNCED, "True", R.RECONCILED)

#: (fixture id, expected phase, status steps, expected Argo CD health)
FIXTURES: list[tuple[str, Phase, list[tuple[str, str, str]], str]] = [
    ("pending-secret", Phase.PENDING, [(T.SYNCED, "False", R.SECRET_NOT_FOUND)], "Progressing"),
    ("pending-quota", Phase.PENDING, [(T.SYNCED, "False", R.QUOTA_EXCEEDED)], "Progressing"),
    ("creating", Phase.CREATING, [(T.SANDBOX_CREATED, "False", R.CREATING)], "Progressing"),
    ("initializing", Phase.INITIALIZING, [CREATED, (T.AGENTS_READY, "False", R.INITIALIZING)], "Progressing"),
    ("ready", Phase.READY, [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), SYNCED], "Healthy"),
    (
        "ready-but-rate-limited",
        Phase.READY,
        [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), (T.SYNCED, "False", R.RATE_LIMITED)],
        "Healthy",
    ),
    ("degraded", Phase.DEGRADED, [CREATED, (T.AGENTS_READY, "False", R.AGENTS_DEGRADED), SYNCED], "Degraded"),
    (
        "suspended",
        Phase.SUSPENDED,
        [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), (T.SUSPENDED, "True", R.SUSPENDED)],
        "Suspended",
    ),
    (
        "succeeded",
        Phase.SUCCEEDED,
        [
            CREATED,
            (T.AGENTS_READY, "True", R.AVAILABLE),
            (T.SUSPENDED, "True", R.TASK_COMPLETED),
            (T.COMPLETED, "True", R.TASK_COMPLETED),
        ],
        "Healthy",
    ),
    (
        "succeeded-sandbox-killed",
        Phase.SUCCEEDED,
        [(T.SANDBOX_CREATED, "False", R.TASK_COMPLETED), (T.COMPLETED, "True", R.TASK_COMPLETED), SYNCED],
        "Healthy",
    ),
    (
        "resumed-after-completion",
        Phase.READY,
        [
            CREATED,
            (T.AGENTS_READY, "True", R.AVAILABLE),
            (T.COMPLETED, "False", R.RESUMED),
            (T.SUSPENDED, "False", R.RESUMED),
        ],
        "Healthy",
    ),
    *[
        (f"failed-{r.value}", Phase.FAILED, [(T.SYNCED, "False", r)], "Degraded")
        for r in sorted(cond.TERMINAL_REASONS, key=str)
    ],
    (
        "failed-after-ready",
        Phase.FAILED,
        [CREATED, (T.AGENTS_READY, "True", R.AVAILABLE), (T.SYNCED, "False", R.SANDBOX_EXPIRED)],
        "Degraded",
    ),
]


@pytest.fixture(scope="module")
def health() -> Any:
    """health.lua as a function of the resource, called the way Argo CD calls it (global ``obj``)."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    source = HEALTH_LUA.read_text()
    # Argo CD runs the script with the resource as the global ``obj``; a wrapping function is the same.
    chunk = lua.execute(f"return function(obj)\n{source}\nend")

    def run(resource: dict[str, Any]) -> tuple[str, str]:
        result = chunk(lua.table_from(resource, recursive=True))
        return result["status"], result["message"]

    return run


def _resource(
    status: dict[str, Any] | None, *, generation: int = GEN, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "s", "namespace": "n", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-01T00:00:00Z"
    body: dict[str, Any] = {"apiVersion": "claudeswarm.io/v1alpha1", "kind": "SwarmSandbox", "metadata": meta}
    if status is not None:
        body["status"] = status
    return body


def test_fixtures_cover_every_phase() -> None:
    assert {phase for _, phase, _, _ in FIXTURES} | {Phase.TERMINATING} == set(Phase)


@pytest.mark.parametrize(
    ("phase", "steps", "expected"), [f[1:] for f in FIXTURES], ids=[f[0] for f in FIXTURES]
)
def test_health_of_each_phase(health: Any, phase: Phase, steps: list[Any], expected: str) -> None:
    status = _status(steps)
    assert status["phase"] == phase.value  # the fixture really is in that phase, by the operator's rules
    verdict, message = health(_resource(status))
    assert verdict == expected, message
    assert message


def test_terminating_is_progressing(health: Any) -> None:
    status = _status([CREATED, (T.AGENTS_READY, "True", R.AVAILABLE)], deleting=True)
    assert status["phase"] == "Terminating"
    assert health(_resource(status, deleting=True))[0] == "Progressing"


def test_no_status_yet_is_progressing(health: Any) -> None:
    assert health(_resource(None))[0] == "Progressing"
    assert health(_resource({}))[0] == "Progressing"


@pytest.mark.parametrize("steps", [f[2] for f in FIXTURES], ids=[f[0] for f in FIXTURES])
def test_spec_not_yet_observed_is_progressing(health: Any, steps: list[Any]) -> None:
    """observedGeneration behind generation: whatever the old status says, the new spec is in flight."""
    status = _status(steps, generation=GEN)
    assert health(_resource(status, generation=GEN + 1))[0] == "Progressing"


def test_terminal_reasons_match_the_operator() -> None:
    table = re.search(r"local terminal = \{(.*?)\}", HEALTH_LUA.read_text(), re.S)
    assert table is not None
    assert set(re.findall(r"(\w+) = true", table.group(1))) == {str(r) for r in cond.TERMINAL_REASONS}


def test_docs_snippet_is_the_script() -> None:
    text = (CHART / "docs" / "argocd.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    cm = yaml.safe_load(block.group(1))
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.claudeswarm.io_SwarmSandbox"] == HEALTH_LUA.read_text()


def test_example_applications() -> None:
    apps = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "examples" / "argocd-application.yaml").read_text())
        if d
    }
    operator, swarms = apps["swarm-operator"], apps["swarms"]
    wave = lambda a: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])  # noqa: E731
    assert wave(operator) < wave(swarms)
    source = operator["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    # skipCrds is only safe when the chart renders the CRD itself; the values must render and lint.
    assert source["helm"]["skipCrds"] is True and source["helm"]["valuesObject"]["crds"]["templated"] is True
    objects = render(source["helm"]["valuesObject"], namespace=operator["spec"]["destination"]["namespace"])
    (crd,) = find(objects, "CustomResourceDefinition")
    assert int(crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]
    assert "SkipDryRunOnMissingResource=true" in swarms["spec"]["syncPolicy"]["syncOptions"]
    include = swarms["spec"]["source"]["directory"]["include"].strip("{}").split(",")
    assert all((ROOT / swarms["spec"]["source"]["path"] / name).is_file() for name in include)
