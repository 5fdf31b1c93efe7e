"""The health probe's circuit breaker: a sandbox that keeps misbehaving (output past the cap, a hang
to the probe timeout, an unreadable report) is counted, backed off from, then killed with its
resource Failed (SandboxQuarantined); E2B's own failures neither count nor reset the streak. And
sandbox text reaching status.mcp / status.workspace is redacted and bounded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.unit.test_lifecycle import REF, SPEC, FakeBackend, Recorder, _conditions, _runtime, _spec, _status

from swarm_operator import bootstrap, lifecycle, logs
from swarm_operator.backend import (
    BackendUnavailable,
    CommandResult,
    CommandTimeout,
    OutputLimitExceeded,
)
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END
from swarm_operator.lifecycle.report import mcp_items, record_tools
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SwarmSandboxSpec

PROBE_MARK = "---- probe:"


def _probe_report(alive: int = 2) -> str:
    panes = [
        {
            "index": i,
            "target": f"s:0.{i}",
            "pane_id": f"%{i}",
            "pid": 100 + i,
            "alive": i < alive,
            "dead": i >= alive,
            "exit_status": None,
            "command": "sleep",
            "restarts": 0,
        }
        for i in range(2)
    ]
    body = {
        "kind": "probe",
        "version": 1,
        "session": "s",
        "server": True,
        "agents": {"desired": 2, "alive": alive, "dead": 2 - alive},
        "missing": [],
        "extra": 0,
        "panes": panes,
        "registry": None,
        "mcp": None,
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


@dataclass
class ProbedBackend(FakeBackend):
    """Answers each probe with the next scripted answer (an exception is raised)."""

    probes: list[Any] = field(default_factory=list)
    probe_timeouts: list[float] = field(default_factory=list)
    kill_error: Exception | None = None

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if PROBE_MARK not in script:
            return await super().run(sandbox_id, script, envs, **kw)
        self.probe_timeouts.append(kw["timeout_s"])
        answer = self.probes.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(0, answer)

    async def kill(self, sandbox_id: str, **kw: Any) -> bool:
        if self.kill_error is not None:
            raise self.kill_error
        return await super().kill(sandbox_id, **kw)


async def _ready(backend: ProbedBackend, recorder: Recorder, **settings: Any) -> Any:
    runtime = _runtime(backend, recorder, **settings)
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), runtime)
    assert recorder.status()["phase"] == "Ready"
    return runtime


async def _probe(runtime: Any, recorder: Recorder) -> dict[str, Any]:
    await lifecycle.check_health(REF, _spec(SPEC), _status(recorder.status()), runtime)
    return recorder.status()


def _flood() -> OutputLimitExceeded:
    return OutputLimitExceeded(
        "a command printed more than 1048576 bytes on stdout and was killed", operation="run"
    )


async def test_a_sandbox_that_keeps_misbehaving_degrades_backs_off_then_is_quarantined() -> None:
    backend, recorder = ProbedBackend(), Recorder()
    runtime = await _ready(backend, recorder, SWARM_QUARANTINE_AFTER="3", SWARM_PROBE_TIMEOUT_SECONDS="7")
    sandbox_id = recorder.status()["sandbox"]["id"]
    spec = _spec({**SPEC, "healthCheck": {"intervalSeconds": 10}})
    assert lifecycle.probe_interval(spec, _status(recorder.status())) == 10
    backend.probes = [
        _flood(),
        CommandTimeout("did not finish within 7s", operation="run"),
        "no report at all\n",
    ]
    status = await _probe(runtime, recorder)
    assert status["phase"] == "Degraded" and status["health"]["sandboxFaults"] == 1
    agents = _conditions(status)["AgentsReady"]
    assert agents["reason"] == "OutputLimitExceeded" and "at 3 in a row" in agents["message"]
    assert recorder.events[-1][0] == "Warning"  # Ready -> Degraded is worth a person's look
    assert lifecycle.probe_interval(spec, _status(status)) == 20  # backed off
    status = await _probe(runtime, recorder)
    assert (
        status["health"]["sandboxFaults"] == 2
        and _conditions(status)["AgentsReady"]["reason"] == "CommandTimeout"
    )
    assert lifecycle.probe_interval(spec, _status(status)) == 40
    assert not backend.killed
    status = await _probe(runtime, recorder)  # the third: an unreadable report
    assert backend.killed == [sandbox_id]
    assert status["phase"] == "Failed" and recorder.patches[-1]["sandbox"] is None
    ready = _conditions(status)["Ready"]
    assert ready["reason"] == "SandboxQuarantined"
    assert "3 health probes in a row" in ready["message"] and "ProbeFailed" in ready["message"]
    assert backend.probe_timeouts == [7, 7, 7]  # SWARM_PROBE_TIMEOUT_SECONDS
    # Failed and sandbox-less: the next tick does nothing at all.
    await lifecycle.check_health(REF, _spec(SPEC), _status({**status, "sandbox": None}), runtime)
    assert backend.probes == [] and backend.killed == [sandbox_id]


async def test_e2b_failures_neither_count_nor_reset_and_an_answer_resets() -> None:
    backend, recorder = ProbedBackend(), Recorder()
    runtime = await _ready(backend, recorder, SWARM_QUARANTINE_AFTER="3")
    backend.probes = [
        _flood(),
        BackendUnavailable("E2B is down", operation="run"),
        _flood(),
        _probe_report(2),
        _flood(),
    ]
    faults = [(await _probe(runtime, recorder))["health"]["sandboxFaults"] for _ in range(5)]
    assert faults == [1, 1, 2, 0, 1]
    assert not backend.killed
    # The healthy answer in between brought the resource back to Ready.
    assert recorder.status()["phase"] == "Degraded"
    assert any(p.get("phase") == "Ready" for p in recorder.patches[-3:])


async def test_the_count_survives_an_operator_restart_and_a_failed_kill_is_retried() -> None:
    backend, recorder = ProbedBackend(), Recorder()
    runtime = await _ready(backend, recorder, SWARM_QUARANTINE_AFTER="2")
    backend.probes = [_flood(), _flood()]
    backend.kill_error = BackendUnavailable("E2B is down", operation="kill")
    await _probe(runtime, recorder)
    status = await _probe(runtime, recorder)
    assert status["health"]["sandboxFaults"] == 2 and status["phase"] == "Degraded"
    assert status["sandbox"]["id"] in backend.sandboxes  # the kill failed: nothing recorded as gone
    # A new operator process (empty memory) reads the count from status and kills without probing.
    backend.kill_error = None
    fresh = _runtime(backend, recorder, SWARM_QUARANTINE_AFTER="2")
    fresh.remember(REF.uid).api_key = runtime.api_key(REF.uid)
    status = await _probe(fresh, recorder)
    assert backend.probes == [] and not backend.sandboxes
    assert status["phase"] == "Failed" and _conditions(status)["Ready"]["reason"] == "SandboxQuarantined"
    assert status["health"]["sandboxFaults"] == 0  # the next sandbox starts from zero


def test_gateway_and_workspace_text_is_redacted_and_bounded() -> None:
    secret = "mcp-token-" + "q" * 30
    logs.REDACTOR.register(REF.uid, [secret])
    try:
        spec = SwarmSandboxSpec.from_body(
            {**SPEC, "mcp": [{"name": "gh", "type": "github", "tokenSecretRef": {"name": "g", "key": "k"}}]}
        )
        gateway = bootstrap.McpReport(
            gateway=False, error=f"gateway died: token={secret} \x1b[31m" + "x" * 5000
        )
        [item] = mcp_items(spec, gateway, REF.uid)
        assert secret not in item.message and logs.REDACTED in item.message
        assert "\x1b" not in item.message and len(item.message) <= 1024
        # Another resource's scope does not know the value: not redacted there (scoped redaction).
        [other] = mcp_items(spec, gateway, "another-uid")
        assert secret in other.message
        book = StatusBook(REF, _status(None), _runtime(FakeBackend(), Recorder()))
        report = bootstrap.parse_report(
            _setup_with_workspace(path="/home/user/" + "p" * 9000, ref=f"main-{secret}")
        )
        record_tools(
            book,
            _spec(
                {
                    **SPEC,
                    "workspace": {"repo": "https://github.com/o/r", "ref": "main", "allowFloatingRef": True},
                }
            ),
            report,
        )
        workspace = book.status.workspace
        assert workspace is not None and len(workspace.path or "") <= 4096
        assert secret not in (workspace.ref or "") and logs.REDACTED in (workspace.ref or "")
    finally:
        logs.REDACTOR.clear(REF.uid)


def _setup_with_workspace(*, path: str, ref: str) -> str:
    body = {
        "kind": "setup",
        "version": 1,
        "session": "s",
        "socket": "s",
        "state_dir": ".swarm/s",
        "server": True,
        "agents": {"desired": 2, "ready": 2, "failed": 0},
        "panes": [],
        "created": [],
        "removed": [],
        "restarted": [],
        "env_missing": [],
        "timed_out": False,
        "coordinator": {"enabled": False, "installed": False, "discovered": None, "error": None},
        "steps": {},
        "errors": [],
        "workspace": {"repo": "https://github.com/o/r", "ref": ref, "path": path, "commit": "a" * 40},
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


def test_the_redactor_gauges_follow_its_size() -> None:
    from prometheus_client import generate_latest

    from swarm_operator.metrics import Metrics, new_registry

    redactor = logs.Redactor()
    registry = new_registry()
    Metrics(registry, redactor=redactor)

    def shown() -> tuple[float, float]:
        text = generate_latest(registry).decode()
        values = next(line for line in text.splitlines() if line.startswith("swarm_redactor_values "))
        scopes = next(line for line in text.splitlines() if line.startswith("swarm_redactor_scopes "))
        return float(values.split()[1]), float(scopes.split()[1])

    assert shown() == (0, 0)
    redactor.add("operator-key-" + "k" * 20)
    redactor.register("uid-a", ["Ready", "a-long-secret-value"])  # "Ready" is too short to hold
    assert shown() == (2, 2)
    redactor.clear("uid-a")
    assert shown() == (1, 1)


@dataclass
class FloodingSetup(FakeBackend):
    """Every setup run floods past the output cap (the identity check still answers)."""

    runs: int = 0

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if "swarm-identity" in script:
            return await super().run(sandbox_id, script, envs, **kw)
        self.runs += 1
        raise _flood()


async def test_a_setup_that_floods_spends_the_init_budget_then_the_sandbox_is_killed() -> None:
    import pytest

    backend, recorder = FloodingSetup(), Recorder()
    with pytest.raises(lifecycle.GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InitFailed" and backend.runs == 3  # SWARM_INIT_ATTEMPTS' default
    assert backend.killed == ["sbx-1"] and not backend.sandboxes
    ready = _conditions(recorder.status())["Ready"]
    assert ready["reason"] == "InitFailed" and "OutputLimitExceeded" in ready["message"]


async def test_a_probe_answer_quoting_a_secret_cut_in_half_leaks_no_piece_of_it() -> None:
    """The parse error quotes the last 300 characters of the output: a secret straddling that cut
    must be redacted before the cut, or its tail would reach status unmatched."""
    backend, recorder = ProbedBackend(), Recorder()
    runtime = await _ready(backend, recorder)
    secret = "sk-live-" + "".join(chr(ord("a") + i % 26) for i in range(40))
    logs.REDACTOR.register(REF.uid, [secret])
    try:
        backend.probes = [
            f"{secret}{'.' * (300 - 20)}"
        ]  # the cut falls 20 characters before the end of the secret
        status = await _probe(runtime, recorder)
        reason = status["health"]["reason"]
        assert "ProbeFailed" in reason and secret[-20:] not in reason, reason
    finally:
        logs.REDACTOR.clear(REF.uid)
