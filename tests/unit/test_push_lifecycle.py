"""lifecycle.results through the lifecycle's own entry points, on the scripted fake backend: the
push runs before the kill (TTL), is retried and reported when it fails (and the kill still
happens), never goes to an unverified sandbox, and a new sandbox is told to start from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from test_lifecycle import REF, FakeBackend, Recorder, _runtime, _spec, _status

from swarm_operator import bootstrap, lifecycle
from swarm_operator.backend import CommandResult
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END
from swarm_operator.lifecycle import results
from swarm_operator.lifecycle.status import StatusBook

SHA = "a" * 40
SPEC = {
    "agents": 2,
    "agent": {"command": "sleep"},
    "coordinator": {"enabled": False},
    "ttlSeconds": 3600,
    "workspace": {"repo": "https://git.example.com/r.git", "ref": SHA, "push": {"branch": "out"}},
}


def _push_report(**fields: Any) -> str:
    body = {"kind": "push", "version": 1, "branch": "out", "head": "b" * 40, **fields}
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


@dataclass
class PushingBackend(FakeBackend):
    """Answers the push script from ``push_answers`` (the last one repeats); logs every call."""

    push_answers: list[str] = field(
        default_factory=lambda: [_push_report(commit="c" * 40, pushed="c" * 40, wip=True)]
    )
    calls: list[str] = field(default_factory=list)

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if "# ---- push:" in script:
            self.calls.append(f"push {sandbox_id}")
            answer = self.push_answers.pop(0) if len(self.push_answers) > 1 else self.push_answers[0]
            return CommandResult(0, answer)
        return await super().run(sandbox_id, script, envs, **kw)

    async def kill(self, sandbox_id: str, **kw: Any) -> bool:
        self.calls.append(f"kill {sandbox_id}")
        return await super().kill(sandbox_id, **kw)


async def _ready(backend: PushingBackend, recorder: Recorder) -> tuple[Any, Any]:
    runtime = _runtime(backend, recorder, SWARM_DELETE_TIMEOUT_SECONDS="10")
    spec = _spec(SPEC)
    await lifecycle.reconcile(REF, spec, _status(None), runtime)
    return runtime, spec


def _expired(recorder: Recorder) -> Any:
    status = _status(recorder.status())
    assert status.sandbox is not None
    status.sandbox.started_at = datetime.now(UTC) - timedelta(hours=2)
    return status


async def test_a_ttl_expiry_pushes_then_kills() -> None:
    backend, recorder = PushingBackend(), Recorder()
    runtime, spec = await _ready(backend, recorder)
    await lifecycle.renew_lease(REF, spec, _expired(recorder), runtime)
    assert backend.calls == ["push sbx-1", "kill sbx-1"]
    pushed = recorder.status()["workspace"]["push"]
    assert pushed["commit"] == "c" * 40 and pushed["wip"] is True and pushed["sandbox"] == "sbx-1"
    [(kind, _, message)] = [e for e in recorder.events if e[1] == "ResultsPushed"]
    assert kind == "Normal" and "ttlSeconds" in message


async def test_a_failing_push_is_retried_reported_and_the_kill_still_happens() -> None:
    backend, recorder = (
        PushingBackend(push_answers=[_push_report(error="git push to out failed: refused")]),
        Recorder(),
    )
    runtime, spec = await _ready(backend, recorder)
    await lifecycle.renew_lease(REF, spec, _expired(recorder), runtime)
    assert backend.calls == ["push sbx-1"] * results.PUSH_ATTEMPTS + ["kill sbx-1"]
    record = recorder.status()["workspace"]["push"]
    assert "refused" in record["error"] and record.get("commit") is None
    [(kind, _, message)] = [e for e in recorder.events if e[1] == "PushFailed"]
    assert kind == "Warning" and "DATA LOSS RISK" in message and "nothing was ever pushed" in message


async def test_an_unverified_sandbox_gets_no_push() -> None:
    backend, recorder = PushingBackend(), Recorder()
    runtime, spec = await _ready(backend, recorder)
    runtime.remember(REF.uid).verified = None
    await lifecycle.renew_lease(REF, spec, _expired(recorder), runtime)
    assert backend.calls == ["kill sbx-1"]


async def test_the_ttl_margin_and_where_a_new_sandbox_starts() -> None:
    backend, recorder = PushingBackend(), Recorder()
    runtime, spec = await _ready(backend, recorder)
    settings = runtime.settings
    assert (
        results.ttl_margin(spec, settings) == settings.lease_renew_seconds * 1.1 + results.TTL_PUSH_MARGIN_S
    )
    assert (
        results.ttl_margin(
            _spec({**SPEC, "workspace": {"repo": SPEC["workspace"]["repo"], "ref": SHA}}), settings
        )
        == 0
    )
    book = StatusBook(REF, _status(recorder.status()), runtime)
    plan = bootstrap.BootstrapPlan(
        session="s", socket="s", agents=1, command="true", workspace_repo="https://g/r.git"
    )
    assert results.with_start(plan, book).workspace_start == ""  # nothing pushed yet
    await results.push(book, backend, "sbx-1", why="(test)")
    assert results.with_start(plan, book).workspace_start == "c" * 40
