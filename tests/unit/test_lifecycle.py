"""The lifecycle as plain functions, without kopf: a scripted fake backend, recorded status writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from swarm_operator import lifecycle
from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    CommandResult,
    CommandTimeout,
    InvalidRequest,
    OutputLimitExceeded,
    SandboxInfo,
    SandboxNotFound,
)
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END
from swarm_operator.config import Settings
from swarm_operator.lifecycle import GiveUp, ResourceRef, RetryLater, Runtime
from swarm_operator.lifecycle.identity import IDENTITY_SCRIPT
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import TAG_UID
from swarm_operator.ratelimit import CreationLimiter
from swarm_operator.secrets import SecretReader

REF = ResourceRef(namespace="ns", name="swarm", uid="uid-1", generation=1)
KEY = "e2b_" + "a" * 40
DEFAULT_TEMPLATE = Settings().default_template  # what a spec naming no template runs on


def _report(desired: int, ready: int, registered: int | None = None) -> str:
    panes = [
        {
            "index": i,
            "target": f"s:0.{i}",
            "pane_id": f"%{i}",
            "pid": 100 + i,
            "alive": i < ready,
            "dead": i >= ready,
            "exit_status": None if i < ready else 1,
            "command": "sleep",
            "restarts": 0,
        }
        for i in range(desired)
    ]
    body = {
        "kind": "setup",
        "version": 1,
        "session": "s",
        "socket": "s",
        "state_dir": ".swarm/s",
        "server": True,
        "agents": {"desired": desired, "ready": ready, "failed": desired - ready},
        "panes": panes,
        "created": [],
        "removed": [],
        "restarted": [],
        "env_missing": [],
        "timed_out": ready < desired,
        "coordinator": {
            "enabled": registered is not None,
            "installed": registered is not None,
            "discovered": registered,
            "error": None,
        },
        "steps": {"tmux": 0.01},
        "errors": [{"step": "ready", "agent": i, "message": "agent exited"} for i in range(ready, desired)],
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


@dataclass
class FakeBackend:
    """Scripted in memory: ``ready_per_run`` says how many agents each setup run brings up."""

    ready_per_run: list[int] = field(default_factory=list)
    sandboxes: dict[str, SandboxInfo] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    timeouts: list[tuple[str, int]] = field(default_factory=list)
    list_error: Exception | None = None
    #: Agents the coordinator registers per setup run (None: coordinator off).
    registered: int | None = None
    #: Raised, one per setup run, before ``ready_per_run`` is consulted.
    run_errors: list[Exception] = field(default_factory=list)
    counter: int = 0

    def add(self, uid: str, started_at: datetime | None = None) -> str:
        self.counter += 1
        sid = f"sbx-{self.counter}"
        now = started_at or datetime.now(UTC)
        self.sandboxes[sid] = SandboxInfo(
            sid, DEFAULT_TEMPLATE, {TAG_UID: uid}, now, now + timedelta(seconds=600), "running"
        )
        return sid

    async def create(
        self, template: str, metadata: Mapping[str, str], envs: Any = None, *, timeout_s: int, **_: Any
    ) -> SandboxInfo:
        return self.sandboxes[self.add(metadata[TAG_UID])]

    async def list(self, metadata: Mapping[str, str], state: str = "both", **_: Any) -> list[SandboxInfo]:
        if self.list_error is not None:
            raise self.list_error
        return [
            s for s in self.sandboxes.values() if all(s.metadata.get(k) == v for k, v in metadata.items())
        ]

    async def kill(self, sandbox_id: str, **_: Any) -> bool:
        self.killed.append(sandbox_id)
        return self.sandboxes.pop(sandbox_id, None) is not None

    async def get(self, sandbox_id: str, **_: Any) -> SandboxInfo:
        if sandbox_id not in self.sandboxes:
            raise SandboxNotFound(f"sandbox {sandbox_id} is gone", sandbox_id=sandbox_id)
        return self.sandboxes[sandbox_id]

    async def set_timeout(self, sandbox_id: str, timeout_s: int, **_: Any) -> None:
        if sandbox_id not in self.sandboxes:
            raise SandboxNotFound(f"sandbox {sandbox_id} is gone", sandbox_id=sandbox_id)
        self.timeouts.append((sandbox_id, timeout_s))

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **_: Any) -> CommandResult:
        if script == IDENTITY_SCRIPT:  # answers as the sandbox it is
            uid = self.sandboxes[sandbox_id].metadata[TAG_UID]
            return CommandResult(0, f"swarm-identity {sandbox_id} {uid}\n")
        if self.run_errors:
            raise self.run_errors.pop(0)
        ready = self.ready_per_run.pop(0) if self.ready_per_run else 2
        return CommandResult(0, _report(2, ready, self.registered))

    async def resume(self, sandbox_id: str, timeout_s: int, **_: Any) -> None: ...


class FakeSecrets:
    #: ConfigMap name -> data, for spec.agent.config.
    config_maps: dict[str, dict[str, str]] = {}
    #: More keys every Secret holds (besides the E2B API key).
    values: dict[str, str] = {}

    def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(data=self.config_maps[name])

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
        import base64
        from types import SimpleNamespace

        data = {"api-key": KEY, **self.values}
        return SimpleNamespace(data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()})


@dataclass
class Recorder:
    patches: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> None:
        self.patches.append(dict(patch))

    def record(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def status(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for patch in self.patches:
            merged.update({k: v for k, v in patch.items() if v is not None})
        return merged


class Pool:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def for_key(self, api_key: str) -> FakeBackend:
        assert api_key == KEY
        return self.backend


def _runtime(backend: FakeBackend, recorder: Recorder, **settings: Any) -> Runtime:
    return Runtime(
        settings=Settings.from_env(
            {
                "SWARM_INIT_BACKOFF_SECONDS": "0",
                "SWARM_DEFAULT_KEY_NAMESPACES": "*",
                "SWARM_DEFAULT_KEY_TEMPLATES": "*",
                **settings,
            }
        ),
        backends=Pool(backend),
        secrets=SecretReader(FakeSecrets()),
        status=recorder,
        events=recorder,
    )


SPEC = {"agents": 2, "agent": {"command": "sleep"}, "coordinator": {"enabled": False}}


def _spec(body: Mapping[str, Any]) -> SwarmSandboxSpec:
    """Parsed once, as the handlers do at the edge."""
    return SwarmSandboxSpec.from_body(body)


def _status(body: Mapping[str, Any] | None) -> SwarmSandboxStatus:
    return SwarmSandboxStatus.model_validate(body or {})


def _conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


async def test_create_records_sandbox_id_before_initialising_then_ready() -> None:
    backend, recorder = FakeBackend(), Recorder()
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    first = recorder.patches[0]
    assert first["sandbox"]["id"] == "sbx-1" and first["phase"] == "Initializing"
    status = recorder.status()
    assert status["phase"] == "Ready" and status["agents"]["summary"] == "2/2"
    # The first phase (work started) is no transition: only Initializing -> Ready is an Event.
    assert [e[1] for e in recorder.events] == ["Available"]
    assert "Initializing -> Ready" in recorder.events[0][2]


async def test_failed_initialisation_kills_the_sandbox_then_fails_with_the_cause() -> None:
    backend, recorder = FakeBackend(ready_per_run=[1, 1, 1]), Recorder()
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InitFailed"
    assert backend.killed == ["sbx-1"] and not backend.sandboxes
    status = recorder.status()
    assert status["phase"] == "Failed"
    assert "sandbox" not in recorder.patches[-1] or recorder.patches[-1]["sandbox"] is None
    ready = _conditions(status)["Ready"]
    assert ready["reason"] == "InitFailed" and "1/2 agents running" in ready["message"]
    assert "agent 1: agent exited" in ready["message"]


async def test_retry_on_same_sandbox_recovers_within_budget() -> None:
    backend, recorder = FakeBackend(ready_per_run=[0, 2]), Recorder()
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert not backend.killed and recorder.status()["phase"] == "Ready"
    assert any(
        "attempt 1/3 failed" in (c.get("message") or "")
        for p in recorder.patches
        for c in p.get("conditions", [])
    )


async def test_duplicates_are_killed_keeping_the_tracked_one() -> None:
    backend, recorder = FakeBackend(), Recorder()
    early = backend.add(REF.uid, datetime.now(UTC) - timedelta(minutes=5))
    tracked = backend.add(REF.uid)
    status = {"sandbox": {"id": tracked}}
    await lifecycle.reconcile(REF, _spec(SPEC), _status(status), _runtime(backend, recorder))
    assert backend.killed == [early]
    assert recorder.status()["sandbox"]["id"] == tracked


async def test_adopts_an_untracked_tagged_sandbox_instead_of_creating() -> None:
    backend, recorder = FakeBackend(), Recorder()
    orphan = backend.add(REF.uid)
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert list(backend.sandboxes) == [orphan]
    assert _conditions(recorder.status())["SandboxCreated"]["reason"] == "Adopted"


async def test_backend_outage_is_retried_later_and_reported() -> None:
    backend, recorder = FakeBackend(list_error=BackendUnavailable("E2B answered 502")), Recorder()
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "BackendUnavailable" and info.value.delay > 0
    assert recorder.status()["phase"] == "Pending"


async def test_authentication_failure_waits_long() -> None:
    backend = FakeBackend(list_error=AuthenticationFailed("the API key was rejected"))
    recorder = Recorder()
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert info.value.delay == Settings().max_retry_delay_seconds
    assert recorder.status()["phase"] == "Failed"


async def test_creation_throttled_by_the_limiter_keeps_its_place() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    clock = [0.0]
    runtime.limiter = CreationLimiter(1, None, None, clock=lambda: clock[0])
    other = ResourceRef("ns", "other", "uid-2", 1)
    await lifecycle.reconcile(other, _spec(SPEC), _status(None), runtime)  # takes the only token
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), runtime)
    assert info.value.reason == "RateLimited" and info.value.delay > 0
    assert _conditions(recorder.status())["SandboxCreated"]["reason"] == "RateLimited"
    clock[0] += info.value.delay
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), runtime)
    assert len(backend.sandboxes) == 2


async def test_ttl_reached_kills_the_sandbox_and_fails_as_expired() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    started = datetime.now(UTC) - timedelta(seconds=120)
    sid = backend.add(REF.uid, started)
    status = {"sandbox": {"id": sid, "startedAt": started.isoformat()}}
    await lifecycle.renew_lease(REF, _spec({**SPEC, "ttlSeconds": 60}), _status(status), runtime)
    assert backend.killed == [sid]
    assert recorder.status()["phase"] == "Failed"
    assert _conditions(recorder.status())["Ready"]["reason"] == "SandboxExpired"


async def test_lease_renewal_never_goes_past_the_ttl() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    started = datetime.now(UTC) - timedelta(seconds=30)
    sid = backend.add(REF.uid, started)
    status = {"sandbox": {"id": sid, "startedAt": started.isoformat()}}
    await lifecycle.renew_lease(REF, _spec({**SPEC, "ttlSeconds": 100}), _status(status), runtime)
    [(renewed, seconds)] = backend.timeouts
    assert renewed == sid and 60 <= seconds <= 70


async def test_delete_kills_every_tagged_sandbox_and_tolerates_gone_ones() -> None:
    backend, recorder = FakeBackend(), Recorder()
    a, b = backend.add(REF.uid), backend.add(REF.uid)
    await lifecycle.delete(
        REF, _spec(SPEC), _status({"sandbox": {"id": "sbx-already-gone"}}), _runtime(backend, recorder)
    )
    assert sorted(backend.killed) == sorted([a, b])
    assert not backend.sandboxes


async def test_a_refused_spec_is_recorded_as_invalid_and_makes_nothing() -> None:
    backend, recorder = FakeBackend(), Recorder()
    with pytest.raises(InvalidSpecError) as parsed:
        _spec({**SPEC, "agents": "many"})
    with pytest.raises(GiveUp) as info:
        await lifecycle.refuse_spec(REF, parsed.value, _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InvalidSpec" and not backend.sandboxes
    ready = _conditions(recorder.status())["Ready"]
    assert recorder.status()["phase"] == "Failed"
    assert ready["reason"] == "InvalidSpec" and "spec.agents" in ready["message"]


async def test_delete_of_a_refused_spec_still_honours_its_orphan_policy() -> None:
    """Delete acts on a spec the model refused: with the key last used, and never killing what the
    spec asked to keep."""
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    sid = backend.add(REF.uid)
    # Its own key: with the operator's default key Orphan is never honoured (lifecycle.tenancy).
    body = {
        **SPEC,
        "agents": "many",
        "deletionPolicy": "Orphan",
        "e2b": {"apiKeySecretRef": {"name": "team-key", "key": "api-key"}},
    }
    with pytest.raises(InvalidSpecError) as parsed:
        _spec(body)
    await lifecycle.delete(
        REF, lifecycle.UnusableSpec.of(body, parsed.value), _status({"sandbox": {"id": sid}}), runtime
    )
    assert not backend.killed and backend.timeouts == [(sid, Settings().orphan_timeout_seconds)]
    assert [e[1] for e in recorder.events] == ["Orphaned"]
    assert REF.uid not in runtime.memory
    # And without the Orphan wish the same refused spec is torn down.
    runtime.remember(REF.uid).api_key = KEY
    body = {**SPEC, "agents": "many"}
    await lifecycle.delete(
        REF, lifecycle.UnusableSpec.of(body, parsed.value), _status({"sandbox": {"id": sid}}), runtime
    )
    assert backend.killed == [sid]


def test_the_probe_interval_is_the_models() -> None:
    assert lifecycle.probe_interval(_spec({**SPEC, "healthCheck": {"intervalSeconds": 7}})) == 7
    assert lifecycle.probe_interval(_spec(SPEC)) == lifecycle.probe_interval(None) == 30


def test_runtime_memory_is_one_record_per_resource() -> None:
    runtime = _runtime(FakeBackend(), Recorder())
    runtime.remember("a").api_key = KEY
    runtime.remember("b").verified = "sbx-1"  # locked and verified, but no key used yet
    assert runtime.keys_in_use() == {KEY} and runtime.tracked() == 1
    assert runtime.api_key("a") == KEY and runtime.api_key("c") is None and "c" not in runtime.memory
    runtime.forget("a")
    assert runtime.keys_in_use() == set() and runtime.api_key("a") is None


async def test_the_sweeper_looks_under_every_key_in_use_and_the_default_one() -> None:
    from swarm_operator.secrets import SecretKeyRef
    from swarm_operator.sweeper import keys_in_use

    reader = SecretReader(FakeSecrets())
    default = lifecycle.default_api_key_ref(Settings())
    assert await keys_in_use({"e2b_other"}, reader, default) == {"e2b_other", KEY}
    missing = SecretKeyRef(default.namespace, default.name, "no-such-key")
    assert await keys_in_use({"e2b_other"}, reader, missing) == {"e2b_other"}


# -- issue 16, hole 1: every non-terminal setup failure spends the init budget, which ends in a kill


@pytest.mark.parametrize(
    "error",
    [
        CommandTimeout("the setup script ran past 420s"),
        InvalidRequest("E2B answered 400: bad request"),
        BackendUnavailable("E2B answered 502"),
        OutputLimitExceeded("the command printed more than 1 MiB"),
        BackendError("E2B answered 418"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_any_non_terminal_setup_failure_spends_the_budget_and_ends_killed(error: Exception) -> None:
    backend, recorder = FakeBackend(run_errors=[error] * 3), Recorder()
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InitFailed"
    assert backend.killed == ["sbx-1"] and not backend.sandboxes
    status = recorder.status()
    assert status["phase"] == "Failed" and "step init" in _conditions(status)["Ready"]["message"]
    assert status["metrics"]["commandsExecuted"] == 3 and status["metrics"]["commandsFailed"] == 3


async def test_the_budget_survives_an_operator_restart() -> None:
    """Two attempts spent, then the operator restarts (a new Runtime, nothing in memory): the next
    reconcile has one attempt left, not three."""
    backend, recorder = FakeBackend(run_errors=[CommandTimeout("ran past 420s")] * 5), Recorder()
    sid = backend.add(REF.uid)
    status = {"sandbox": {"id": sid, "initAttempts": 2}}
    with pytest.raises(GiveUp):
        await lifecycle.reconcile(REF, _spec(SPEC), _status(status), _runtime(backend, recorder))
    assert backend.killed == [sid] and len(backend.run_errors) == 4


async def test_a_spent_budget_found_at_start_kills_without_another_run() -> None:
    backend, recorder = FakeBackend(), Recorder()
    sid = backend.add(REF.uid)
    status = {"sandbox": {"id": sid, "initAttempts": 3}}
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(status), _runtime(backend, recorder))
    assert info.value.reason == "InitFailed" and backend.killed == [sid]
    assert recorder.status()["phase"] == "Failed"


async def test_identity_call_failures_spend_the_budget_too() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    real_run = backend.run

    async def timing_out(sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if script == IDENTITY_SCRIPT:
            raise CommandTimeout("the identity call ran past 30s")
        return await real_run(sandbox_id, script, envs, **kw)

    backend.run = timing_out  # type: ignore[method-assign]
    status = _status(None)
    for _ in range(2):
        with pytest.raises(RetryLater):
            await lifecycle.reconcile(REF, _spec(SPEC), status, runtime)
        status = _status(recorder.status())
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), status, runtime)
    assert info.value.reason == "InitFailed" and backend.killed == ["sbx-1"]


async def test_success_clears_the_count_and_the_lease_stops_at_a_spent_budget() -> None:
    backend, recorder = FakeBackend(run_errors=[CommandTimeout("ran past")]), Recorder()
    runtime = _runtime(backend, recorder)
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), runtime)
    assert recorder.patches[-1]["sandbox"].get("initAttempts") is None
    assert recorder.status()["phase"] == "Ready"
    # A sandbox whose budget is spent but whose kill has not gone through gets no new lease.
    sid = backend.add(REF.uid)
    spent = {"sandbox": {"id": sid, "initAttempts": 3}}
    await lifecycle.renew_lease(REF, _spec(SPEC), _status(spent), runtime)
    assert backend.timeouts == []


def test_the_coordinator_install_fits_inside_the_setup_run() -> None:
    from swarm_operator.lifecycle import bounds, plan

    for env in ({}, {"SWARM_COMMAND_TIMEOUT_SECONDS": "20"}, {"SWARM_COMMAND_TIMEOUT_SECONDS": "900"}):
        settings = Settings.from_env(env)
        setup_plan = plan.plan(REF, _spec({**SPEC, "coordinator": {"enabled": True}}), {}, settings)
        assert setup_plan.install_timeout_s < settings.command_timeout_seconds
        assert setup_plan.install_timeout_s + setup_plan.ready_timeout_s < bounds.setup_timeout_seconds(
            settings
        )


# -- issue 16, hole 2: everything the sandbox will be given is rendered and measured before create


@pytest.mark.parametrize(
    "body",
    [
        {**SPEC, "agent": {"command": "sleep", "args": ["a" * 4096] * 30}},
        {
            **SPEC,
            "mcp": [
                {
                    "name": f"m{i}",
                    "type": "custom",
                    "server": f"s{i}",
                    "fields": [{"name": f"f{j}", "value": "v" * 4096} for j in range(8)],
                }
                for i in range(4)
            ],
        },
    ],
    ids=["30 args of 4096 chars", "128 KB of MCP field values"],
)
async def test_aggregate_sizes_the_crd_cannot_refuse_per_field_are_refused_by_the_model(
    body: dict[str, Any],
) -> None:
    from swarm_operator import _crd

    # The API server refuses them (the CEL mirrors say so) and so does the model; nothing is made.
    schema = _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert _crd.extension_violations(schema, body)
    backend, recorder = FakeBackend(), Recorder()
    with pytest.raises(InvalidSpecError) as parsed:
        _spec(body)
    with pytest.raises(GiveUp):
        await lifecycle.refuse_spec(REF, parsed.value, _status(None), _runtime(backend, recorder))
    assert backend.counter == 0 and recorder.status()["phase"] == "Failed"


async def test_an_oversized_agent_configmap_is_invalid_and_creates_nothing() -> None:
    FakeSecrets.config_maps = {"big": {"notes.md": "x" * 200_000}}
    backend, recorder = FakeBackend(), Recorder()
    body = {**SPEC, "agent": {"command": "claude", "config": {"configMapName": "big"}}}
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InvalidSpec" and backend.counter == 0 and not backend.sandboxes
    message = _conditions(recorder.status())["Ready"]["message"]
    assert "bytes one command can carry" in message and "spec.agent.config ConfigMap" in message


async def test_args_within_their_limit_plus_a_configmap_over_the_script_limit_are_refused() -> None:
    FakeSecrets.config_maps = {"mid": {"notes.md": "x" * 50_000}}
    backend, recorder = FakeBackend(), Recorder()
    body = {
        **SPEC,
        "agent": {"command": "claude", "args": ["a" * 4096] * 8, "config": {"configMapName": "mid"}},
    }
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InvalidSpec" and backend.counter == 0
    assert "spec.agent.args 32768 bytes" in _conditions(recorder.status())["Ready"]["message"]


# -- issue 16, hole 7: with the coordinator on, Ready needs every agent registered with it


async def test_a_coordinator_registering_fewer_agents_than_desired_is_never_ready() -> None:
    backend, recorder = FakeBackend(registered=1), Recorder()
    body = {**SPEC, "coordinator": {"enabled": True}}
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
    assert info.value.reason == "InitFailed" and backend.killed == ["sbx-1"]
    reasons = [
        c["reason"] for p in recorder.patches for c in p.get("conditions", []) if c["type"] == "AgentsReady"
    ]
    assert "AgentsNotRegistered" in reasons and "Available" not in reasons
    assert "1/2 agents registered with the coordinator" in _conditions(recorder.status())["Ready"]["message"]


async def test_a_coordinator_registering_every_agent_is_ready() -> None:
    backend, recorder = FakeBackend(registered=2), Recorder()
    body = {**SPEC, "coordinator": {"enabled": True}}
    await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
    assert recorder.status()["phase"] == "Ready"


# -- issue 16, hole 3: a replacement is debounced and takes a creation token like any create


async def _ready_on_base(
    backend: FakeBackend, recorder: Recorder, runtime: Runtime, age_s: float
) -> SwarmSandboxStatus:
    sid = backend.add(REF.uid, datetime.now(UTC) - timedelta(seconds=age_s))
    status = {
        "sandbox": {
            "id": sid,
            "template": runtime.settings.default_template,
            "startedAt": (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(),
        }
    }
    return await lifecycle.reconcile(REF, _spec(SPEC), _status(status), runtime)


async def test_a_template_change_waits_for_a_creation_token() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    clock = [0.0]
    runtime.limiter = CreationLimiter(1, None, None, clock=lambda: clock[0])
    status = await _ready_on_base(backend, recorder, runtime, age_s=600)
    other = ResourceRef("ns", "other", "uid-2", 1)
    await lifecycle.reconcile(other, _spec(SPEC), _status(None), runtime)  # takes the only token
    created = backend.counter
    moved = _spec({**SPEC, "template": "other"})
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, moved, status, runtime)
    assert info.value.reason == "RateLimited" and 50 < info.value.delay <= 60
    assert backend.counter == created  # no create while throttled
    assert recorder.status()["phase"] == "Ready"  # the old sandbox keeps the agents running
    clock[0] += info.value.delay
    status = await lifecycle.reconcile(REF, moved, status, runtime)
    assert backend.counter == created + 1 and status.sandbox is not None
    assert status.sandbox.template == "other"


async def test_a_replacement_is_debounced_by_the_current_sandboxs_age() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder, SWARM_REPLACE_DEBOUNCE_SECONDS="30")
    status = await _ready_on_base(backend, recorder, runtime, age_s=5)
    created = backend.counter
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, _spec({**SPEC, "template": "other"}), status, runtime)
    assert info.value.reason == "RateLimited" and 20 <= info.value.delay <= 26
    assert backend.counter == created and "at most once every 30s" in str(info.value)


# -- issue 16, hole 5: every sandbox has a lifetime: the spec's, else the default, never over the max


async def test_a_silent_spec_gets_the_default_lifetime_shown_in_status() -> None:
    backend, recorder = FakeBackend(), Recorder()
    status = await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert status.sandbox is not None and status.sandbox.ttl_seconds == 7200
    assert recorder.status()["sandbox"]["ttlSeconds"] == 7200
    long = await lifecycle.reconcile(
        REF,
        _spec({**SPEC, "ttlSeconds": 86400}),
        status,
        _runtime(backend, recorder, SWARM_MAX_TTL_SECONDS="28800"),
    )
    assert long.sandbox is not None and long.sandbox.ttl_seconds == 28800


@pytest.mark.parametrize(
    ("body", "age", "where"),
    [
        (SPEC, 7201, "the operator's default lifetime (7200s)"),
        ({**SPEC, "ttlSeconds": 86400}, 28801, "the operator's maximum lifetime (28800s)"),
    ],
)
async def test_the_default_and_maximum_lifetimes_end_the_sandbox(
    body: dict[str, Any], age: int, where: str
) -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    started = datetime.now(UTC) - timedelta(seconds=age)
    sid = backend.add(REF.uid, started)
    await lifecycle.renew_lease(
        REF, _spec(body), _status({"sandbox": {"id": sid, "startedAt": started.isoformat()}}), runtime
    )
    assert backend.killed == [sid] and recorder.status()["phase"] == "Failed"
    assert where in _conditions(recorder.status())["Ready"]["message"]


async def test_leases_never_run_past_the_default_lifetime() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    started = datetime.now(UTC) - timedelta(seconds=7200 - 100)
    sid = backend.add(REF.uid, started)
    await lifecycle.renew_lease(
        REF, _spec(SPEC), _status({"sandbox": {"id": sid, "startedAt": started.isoformat()}}), runtime
    )
    [(_, seconds)] = backend.timeouts
    assert 90 <= seconds <= 100


# -- issue 16, hole 6: status.sandbox.id is a hint; the uid tag is checked before acting on it


async def _forged(backend: FakeBackend) -> tuple[str, dict[str, Any]]:
    """Another resource's sandbox, and a status of this resource naming it."""
    theirs = backend.add("uid-other")
    return theirs, {
        "sandbox": {"id": theirs, "startedAt": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    }


async def test_a_forged_id_is_neither_extended_nor_killed_by_the_lease() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    theirs, status = await _forged(backend)  # a day old: past any ttl, so a kill would follow
    with pytest.raises(SandboxNotFound):
        await lifecycle.renew_lease(REF, _spec(SPEC), _status(status), runtime)
    assert backend.killed == [] and backend.timeouts == [] and theirs in backend.sandboxes
    assert recorder.patches[-1]["sandbox"] is None
    assert _conditions(recorder.status())["SandboxCreated"]["reason"] == "SandboxNotFound"


async def test_a_forged_id_is_not_probed_and_delete_kills_only_what_is_tagged_ours() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    mine = backend.add(REF.uid)
    theirs, status = await _forged(backend)
    probed: list[str] = []
    real_run = backend.run

    async def run(sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        probed.append(sandbox_id)
        return await real_run(sandbox_id, script, envs, **kw)

    backend.run = run  # type: ignore[method-assign]
    ready = {**status, "phase": "Ready"}
    with pytest.raises(SandboxNotFound):
        await lifecycle.check_health(REF, _spec(SPEC), _status(ready), runtime)
    assert probed == []
    await lifecycle.delete(REF, _spec(SPEC), _status(status), runtime)
    assert backend.killed == [mine] and theirs in backend.sandboxes


async def test_the_reconcile_after_a_forged_id_adopts_its_own_sandbox() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    mine = backend.add(REF.uid)
    theirs, status = await _forged(backend)
    done = await lifecycle.reconcile(REF, _spec(SPEC), _status(status), runtime)
    assert done.sandbox is not None and done.sandbox.id == mine
    assert backend.killed == [] and theirs in backend.sandboxes


async def test_orphan_release_of_a_forged_id_touches_nothing() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    runtime.remember(REF.uid).api_key = KEY
    theirs, status = await _forged(backend)
    await lifecycle.delete(REF, _spec({**SPEC, "deletionPolicy": "Orphan"}), _status(status), runtime)
    assert backend.timeouts == [] and backend.killed == []


async def test_a_resume_of_a_resource_failed_for_this_generation_creates_nothing() -> None:
    """An operator restart runs the resume handler for every resource: one Failed InitFailed (its
    sandbox killed) stays Failed until its spec changes, or a crash-looping operator would create
    and bill a new sandbox for it on every start."""
    backend, recorder = FakeBackend(ready_per_run=[0, 0, 0]), Recorder()
    with pytest.raises(GiveUp):
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    failed = _status(recorder.status())
    created = backend.counter
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), failed, _runtime(backend, Recorder()))
    assert info.value.reason == "InitFailed" and backend.counter == created
    changed = ResourceRef(REF.namespace, REF.name, REF.uid, generation=2)
    await lifecycle.reconcile(changed, _spec(SPEC), failed, _runtime(backend, Recorder()))
    assert backend.counter == created + 1


# -- issue 16, hole 8: SWARM_DELETE_TIMEOUT_SECONDS bounds a teardown pass


async def test_a_teardown_past_the_delete_timeout_is_retried() -> None:
    import asyncio

    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder, SWARM_DELETE_TIMEOUT_SECONDS="0.2")
    sid = backend.add(REF.uid)

    async def hanging_kill(sandbox_id: str, **_: Any) -> bool:
        await asyncio.sleep(30)
        return True

    backend.kill = hanging_kill  # type: ignore[method-assign]
    with pytest.raises(RetryLater) as info:
        await lifecycle.delete(REF, _spec(SPEC), _status({"sandbox": {"id": sid}}), runtime)
    assert "longer than 0.2s" in str(info.value)


def _probe(alive: int, registered: int | None) -> str:
    panes = [
        {
            "index": i,
            "target": f"s:0.{i}",
            "pane_id": f"%{i}",
            "pid": 100 + i,
            "alive": True,
            "dead": False,
            "exit_status": None,
            "command": "sleep",
            "restarts": 0,
        }
        for i in range(alive)
    ]
    body = {
        "kind": "probe",
        "version": 1,
        "session": "s",
        "server": True,
        "agents": {"desired": alive, "alive": alive, "dead": 0},
        "missing": [],
        "extra": 0,
        "panes": panes,
        "registry": None if registered is None else {"path": "r", "agents": registered, "mtime": 1},
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


async def _probed(answers: list[Any], body: dict[str, Any]) -> tuple[Recorder, Runtime]:
    """Health probes against a Ready resource whose probe answers are ``answers`` in turn."""
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder)
    status = await lifecycle.reconcile(REF, _spec(body), _status(None), runtime)
    real_run = backend.run

    async def run(sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if "probe" not in script.split("\n", 3)[1]:
            return await real_run(sandbox_id, script, envs, **kw)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(0, answer)

    backend.run = run  # type: ignore[method-assign]
    while answers:
        await lifecycle.check_health(REF, _spec(body), status, runtime)
        status = _status(recorder.status())
    return recorder, runtime


async def test_probes_and_timed_out_probes_count_as_commands() -> None:
    recorder, runtime = await _probed(
        [_probe(2, None), _probe(2, None), CommandTimeout("the probe ran past 60s"), _probe(2, None)], SPEC
    )
    metrics = recorder.status()["metrics"]
    # One setup run (its verdict is the first health record), then four probes: the quiet first
    # and second rode along with the timed-out third's write; the last (healthy again) is a write.
    assert metrics["commandsExecuted"] == 1 + 4 and metrics["commandsFailed"] == 1
    assert runtime.remember(REF.uid).quiet_probes == 0
    recorder, runtime = await _probed([_probe(2, None)] * 3, SPEC)
    assert runtime.remember(REF.uid).quiet_probes == 3  # quiet ticks wait for the next write


async def test_a_probe_finding_fewer_agents_registered_than_desired_is_not_ready() -> None:
    body = {**SPEC, "coordinator": {"enabled": True}}
    recorder, _ = await _probed([_probe(2, 1)], body)
    status = recorder.status()
    agents = _conditions(status)["AgentsReady"]
    assert agents["status"] == "False" and agents["reason"] == "AgentsNotRegistered"
    assert "1/2 registered with the coordinator" in agents["message"]
    assert status["phase"] == "Degraded" and status["health"]["reason"] == "AgentsNotRegistered"


# -- issue 16, hole 8: applied Secret digests survive a restart (keyed, never values)


async def test_a_rotation_while_the_operator_was_down_is_noticed_after_the_restart() -> None:
    body = {
        **SPEC,
        "agent": {
            "command": "sleep",
            "restartOnSecretChange": "Restart",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
        },
    }
    FakeSecrets.values = {"token": "first-value-123"}
    backend, recorder = FakeBackend(), Recorder()
    try:
        status = await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
        assert status.secrets is not None and set(status.secrets.applied or {}) == {"TOKEN"}
        assert "first-value-123" not in json.dumps(recorder.patches)
        # A restart with nothing rotated: no restart of the agents.
        status = await lifecycle.reconcile(
            REF, _spec(body), _status(recorder.status()), _runtime(backend, recorder)
        )
        assert "AgentsRestarted" not in [e[1] for e in recorder.events]
        # Rotated while the operator was down: the new process notices and restarts the agents.
        FakeSecrets.values = {"token": "second-value-456"}
        status = await lifecycle.reconcile(
            REF, _spec(body), _status(recorder.status()), _runtime(backend, recorder)
        )
        assert "AgentsRestarted" in [e[1] for e in recorder.events]
        assert status.secrets is not None and "TOKEN" in status.secrets.message
    finally:
        FakeSecrets.values = {}


# ----- the plan's lifetime cap: leases and creates never past it, a hand-over before it ----------


@dataclass
class CappedBackend(FakeBackend):
    """The fake, also remembering the timeout each create asked for."""

    create_timeouts: list[int] = field(default_factory=list)

    async def create(
        self, template: str, metadata: Mapping[str, str], envs: Any = None, *, timeout_s: int, **_: Any
    ) -> SandboxInfo:
        self.create_timeouts.append(timeout_s)
        return await super().create(template, metadata, envs, timeout_s=timeout_s)


async def _ready(
    backend: FakeBackend, recorder: Recorder, spec: Mapping[str, Any] = SPEC, **settings: Any
) -> tuple[Runtime, str]:
    runtime = _runtime(backend, recorder, **settings)
    await lifecycle.reconcile(REF, _spec(spec), _status(None), runtime)
    assert recorder.status()["phase"] == "Ready"
    return runtime, recorder.status()["sandbox"]["id"]


def _aged(runtime: Runtime, recorder: Recorder, sid: str, seconds: float) -> SwarmSandboxStatus:
    """The sandbox's lifetime as if it started ``seconds`` ago (status' startedAt too)."""
    started = datetime.now(UTC) - timedelta(seconds=seconds)
    runtime.remember(REF.uid).lifetime = (sid, started)
    status = recorder.status()
    status["sandbox"] = {**status["sandbox"], "startedAt": started.isoformat()}
    return _status(status)


async def test_create_never_asks_a_timeout_over_the_plans_cap() -> None:
    # e2b-dev/infra timeout_helper.go: a create over the team's max instance length is a 400.
    backend, recorder = CappedBackend(), Recorder()
    await _ready(backend, recorder, SWARM_LEASE_SECONDS="7200", SWARM_SANDBOX_MAX_LIFETIME_SECONDS="3600")
    assert backend.create_timeouts == [3600]


async def test_lease_renewal_never_asks_past_the_cap_and_expires_at_is_the_real_end() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime, sid = await _ready(backend, recorder, SWARM_SANDBOX_HANDOVER_LEAD_SECONDS="60")
    status = _aged(runtime, recorder, sid, 3500)  # cap (3600 s) in 100 s; hand-over not yet due
    await lifecycle.renew_lease(REF, _spec(SPEC), status, runtime)
    [(renewed, seconds)] = backend.timeouts
    assert renewed == sid and 98 <= seconds <= 100  # not the 600 s lease: the cap comes first
    cap_end = datetime.fromisoformat(status.sandbox.started_at.isoformat()) + timedelta(seconds=3600)
    expires = datetime.fromisoformat(recorder.status()["sandbox"]["expiresAt"].replace("Z", "+00:00"))
    assert abs((expires - cap_end).total_seconds()) <= 2
    assert len(backend.sandboxes) == 1 and backend.killed == []


async def test_handover_before_the_cap_makes_the_new_sandbox_ready_before_the_old_dies() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime, old = await _ready(backend, recorder, SWARM_SANDBOX_HANDOVER_LEAD_SECONDS="60")
    status = _aged(runtime, recorder, old, 3560)  # 40 s left: inside the 60 s lead
    original_start = status.sandbox.started_at
    writes = len(recorder.patches)
    await lifecycle.renew_lease(REF, _spec(SPEC), status, runtime)
    # The old sandbox's lease was stretched to the rest of its lifetime (never past it) first.
    [(renewed, seconds)] = backend.timeouts
    assert renewed == old and 38 <= seconds <= 40
    final = recorder.status()
    new = final["sandbox"]["id"]
    assert new != old and backend.killed == [old] and set(backend.sandboxes) == {new}
    # Status named the old sandbox until the new one was Ready, then the new one; never none,
    # and the swarm never left Ready (the old sandbox ran the agents meanwhile).
    named = [p["sandbox"]["id"] for p in recorder.patches[writes:] if p.get("sandbox")]
    assert named[-1] == new and all(n in (old, new) for n in named)
    assert all(p.get("sandbox") is not None for p in recorder.patches[writes:] if "sandbox" in p)
    assert all(p["phase"] == "Ready" for p in recorder.patches[writes:] if "phase" in p)
    assert final["phase"] == "Ready"
    # ttlSeconds keeps counting the swarm's life: startedAt is the first sandbox's.
    assert datetime.fromisoformat(final["sandbox"]["startedAt"].replace("Z", "+00:00")) == original_start
    [event] = [e for e in recorder.events if e[1] == "LifetimeHandover"]
    assert event[0] == "Warning" and old in event[2] and new in event[2]
    assert runtime.remember(REF.uid).lifetime[0] == new
    # The new sandbox's own cap is far off: the next renewal hands nothing over.
    await lifecycle.renew_lease(REF, _spec(SPEC), _status(final), runtime)
    assert set(backend.sandboxes) == {new}


async def test_no_handover_when_ttl_ends_the_swarm_first() -> None:
    backend, recorder = FakeBackend(), Recorder()
    spec = {**SPEC, "ttlSeconds": 3590}  # ends 10 s before the cap
    runtime, sid = await _ready(backend, recorder, spec, SWARM_SANDBOX_HANDOVER_LEAD_SECONDS="60")
    status = _aged(runtime, recorder, sid, 3560)
    await lifecycle.renew_lease(REF, _spec(spec), status, runtime)
    [(renewed, seconds)] = backend.timeouts
    assert renewed == sid and 28 <= seconds <= 30  # to the ttl, which ends first
    assert set(backend.sandboxes) == {sid} and backend.killed == []


async def test_handover_is_not_due_before_the_lead_time() -> None:
    from swarm_operator.lifecycle.sandbox import handover_due

    settings = Settings.from_env({"SWARM_SANDBOX_HANDOVER_LEAD_SECONDS": "60"})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spec = _spec(SPEC)
    assert not handover_due(spec, settings, start, start, start + timedelta(seconds=3539))
    assert handover_due(spec, settings, start, start, start + timedelta(seconds=3540))
    # A ttl ending after the cap still needs the hand-over; one ending at the cap does not.
    assert handover_due(
        _spec({**SPEC, "ttlSeconds": 3601}), settings, start, start, start + timedelta(seconds=3550)
    )
    assert not handover_due(
        _spec({**SPEC, "ttlSeconds": 3600}), settings, start, start, start + timedelta(seconds=3550)
    )


async def test_a_failed_handover_keeps_the_old_sandbox_to_its_cap_then_recreates() -> None:
    backend, recorder = FakeBackend(), Recorder()
    runtime, old = await _ready(backend, recorder, SWARM_SANDBOX_HANDOVER_LEAD_SECONDS="60")
    status = _aged(runtime, recorder, old, 3560)
    backend.ready_per_run = [0, 0, 0]  # the new sandbox never gets its agents up
    writes = len(recorder.patches)
    with pytest.raises(RetryLater) as retried:  # the lease daemon logs it; kopf retries after the cap
        await lifecycle.renew_lease(REF, _spec(SPEC), status, runtime)
    assert 38 <= retried.value.delay <= 42
    final = recorder.status()
    # The new sandbox's failed setup was never the resource's state: no Failed, no InitFailed.
    assert all(p.get("phase") in (None, "Ready") for p in recorder.patches[writes:])
    assert "InitFailed" not in {r for _, r, _ in recorder.events}
    assert final["sandbox"]["id"] == old and set(backend.sandboxes) == {old}
    assert final["phase"] == "Ready"  # the old sandbox still runs every agent
    synced = _conditions(final)["Synced"]
    assert synced["status"] == "False" and synced["reason"] == "HandoverFailed"
    assert "then a new sandbox is created from scratch" in synced["message"]
    assert "hand-over failed" in final["message"]
    assert ("Warning", "HandoverFailed") in {(t, r) for t, r, _ in recorder.events}
    # Not tried again for this sandbox: the next renewal only renews, never past the cap.
    created = backend.counter
    await lifecycle.renew_lease(REF, _spec(SPEC), _status(final), runtime)
    assert backend.counter == created and backend.timeouts[-1][0] == old
    # E2B ends it at its cap: the renewal finds it gone, and the reconcile recreates the resource.
    backend.sandboxes.pop(old)
    with pytest.raises(SandboxNotFound):
        await lifecycle.renew_lease(REF, _spec(SPEC), _status(final), runtime)
    assert _conditions(recorder.status())["SandboxCreated"]["reason"] == "SandboxNotFound"
    backend.ready_per_run = []
    await lifecycle.reconcile(REF, _spec(SPEC), _status(recorder.status()), runtime)
    assert recorder.status()["phase"] == "Ready" and recorder.status()["sandbox"]["id"] not in (old,)


async def test_a_resumed_sandbox_counts_its_cap_from_the_resume() -> None:
    # A resume is a new instance (e2b-dev/infra sandbox_connect.go resumes through the create
    # path): its cap restarts, so a long-paused swarm is not handed over the moment it resumes.
    backend, recorder = FakeBackend(), Recorder()
    runtime = _runtime(backend, recorder, SWARM_SANDBOX_HANDOVER_LEAD_SECONDS="60")
    started = datetime.now(UTC) - timedelta(seconds=3590)
    sid = backend.add(REF.uid, started)
    backend.sandboxes[sid] = SandboxInfo(sid, "base", {TAG_UID: REF.uid}, started, started, "paused")
    status = {
        "sandbox": {
            "id": sid,
            "template": runtime.settings.default_template,
            "startedAt": started.isoformat(),
        }
    }
    await lifecycle.reconcile(REF, _spec(SPEC), _status(status), runtime)
    await lifecycle.renew_lease(REF, _spec(SPEC), _status(recorder.status()), runtime)
    assert backend.timeouts == [(sid, 600)] and set(backend.sandboxes) == {sid}  # no hand-over


@dataclass
class SlowIdentityBackend(FakeBackend):
    """envd fills E2B_SANDBOX_ID asynchronously (e2b-dev/infra packages/envd/internal/host/mmds.go):
    the first ``blank_looks`` identity checks see it empty. Records each setup run's timeout."""

    blank_looks: int = 0
    identity_looks: int = 0
    setup_timeouts: list[float] = field(default_factory=list)

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> CommandResult:
        if script == IDENTITY_SCRIPT:
            self.identity_looks += 1
            if self.identity_looks <= self.blank_looks:
                return CommandResult(0, f"swarm-identity  {REF.uid}\n")
        else:
            self.setup_timeouts.append(kw["timeout_s"])
        return await super().run(sandbox_id, script, envs, **kw)


async def test_an_identity_that_appears_late_is_waited_for_within_a_bound() -> None:
    backend, recorder = SlowIdentityBackend(blank_looks=2), Recorder()
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert backend.identity_looks == 3 and not backend.killed
    assert recorder.status()["phase"] == "Ready"


async def test_an_identity_that_never_appears_is_a_mismatch_after_the_bounded_retries() -> None:
    import time

    from swarm_operator.lifecycle import identity as identity_module

    backend, recorder = SlowIdentityBackend(blank_looks=1000), Recorder()
    started = time.monotonic()
    with pytest.raises(RetryLater) as info:
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    assert time.monotonic() - started <= identity_module.IDENTITY_WAIT_S + 1
    assert info.value.reason == "IdentityMismatch" and backend.killed == ["sbx-1"]
    assert backend.identity_looks == identity_module.IDENTITY_ATTEMPTS and not backend.setup_timeouts


async def test_the_setup_run_allows_the_provision_budget_and_names_the_step() -> None:
    from swarm_operator import bootstrap

    backend, recorder = SlowIdentityBackend(), Recorder()
    runtime = _runtime(
        backend, recorder, SWARM_READY_TIMEOUT_SECONDS="20", SWARM_COMMAND_TIMEOUT_SECONDS="30"
    )
    await lifecycle.reconcile(REF, _spec(SPEC), _status(None), runtime)
    from swarm_operator.lifecycle import bounds

    # Each installer is bounded inside the setup run (four fifths of the command timeout); the first
    # run's timeout allows every installer on top of the run's own.
    install = bounds.install_timeout_seconds(runtime.settings)
    budget = bootstrap.BootstrapPlan(
        session="s", socket="s", agents=1, command="c", install_timeout_s=install
    ).provision_budget_s
    assert budget >= 6 * install and backend.setup_timeouts == [20 + 30 + budget]


async def test_what_the_first_run_installed_is_a_step_and_a_normal_event() -> None:
    from swarm_operator.lifecycle.agents import initialise
    from swarm_operator.lifecycle.status import StatusBook

    class Installing(FakeBackend):
        async def run(self, sandbox_id: str, script: str, envs: Any = None, **_: Any) -> CommandResult:
            body = json.loads(_report(2, 2).split("\n")[1])
            body.update(steps={"tmux": 0.01, "provision": 4.2}, installed=["tmux", "uv==0.13.8"])
            return CommandResult(0, f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n")

    backend, recorder = Installing(), Recorder()
    sid = backend.add(REF.uid)
    book = StatusBook(REF, _status(None), _runtime(backend, recorder))
    await initialise(book, _spec(SPEC), backend, backend.sandboxes[sid], {})
    steps = book.status.metrics.step_seconds
    assert steps["provision"] == 4.2 and steps["init.tmux"] == 0.01 and "init.provision" not in steps
    assert recorder.events == [
        (
            "Normal",
            "Provisioned",
            "installed tmux, uv==0.13.8 at start; skip this with `swarm-operator template --build`",
        )
    ]
