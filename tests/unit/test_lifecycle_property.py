"""Issue 16's property, checked by a hypothesis state machine over the lifecycle.

*From any state, with any sequence of E2B failures (each error class, timeouts, hangs, 4xx, 5xx,
an answer lost after the service acted) and operator restarts (a crash at any call, then a new
Runtime with empty memory), a resource reaches Ready, Failed with its sandbox killed, or gone —
within* ``bounds.init_bound_seconds(settings) + F × per_fault`` *of simulated time, F
being the control-plane failures (list, create, kill, get, set_timeout, a rejected key) and
operator crashes injected after the sandbox was made — failures of the setup run and the identity
call, however many, are absorbed by the init budget; and at no moment are more sandboxes alive than
resources (no hand-over is modelled here, so the in-flight term is zero).*

The world is simulated: a fake E2B that keeps sandboxes with their own expiry (the lease is the
E2B timeout, enforced by the fake as the real service does), and a clock that moves by what each
call costs (a hang costs the call's whole timeout) and by every delay the lifecycle asks kopf to
wait (:class:`RetryLater`). The lifecycle code is the real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_lifecycle import KEY, FakeSecrets, _report  # same directory (pytest prepends it)

from swarm_operator import lifecycle
from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    CommandResult,
    CommandTimeout,
    InvalidRequest,
    OutputLimitExceeded,
    QuotaExceeded,
    RateLimited,
    SandboxInfo,
    SandboxNotFound,
)
from swarm_operator.config import Settings
from swarm_operator.lifecycle import GiveUp, ResourceRef, RetryLater, Runtime, bounds
from swarm_operator.lifecycle.identity import IDENTITY_SCRIPT
from swarm_operator.model import SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import TAG_UID
from swarm_operator.secrets import SecretReader

REF = ResourceRef(namespace="ns", name="swarm", uid="uid-p", generation=1)
SPEC = SwarmSandboxSpec.from_body(
    {"agents": 2, "agent": {"command": "sleep"}, "coordinator": {"enabled": False}}
)
SETTINGS = Settings(
    operator_id="prop",
    init_attempts=3,
    init_backoff_seconds=0,
    ready_timeout_seconds=20,
    command_timeout_seconds=30,
    control_timeout_seconds=5,
    retry_delay_seconds=1,
    max_retry_delay_seconds=30,
    quota_retry_seconds=30,
    lease_seconds=120,
    lease_renew_seconds=30,
    creations_per_minute=None,
    replace_debounce_seconds=0,
)
#: What one injected failure may cost at most: the longest wait the lifecycle asks for after a
#: failure (backoff cap with its jitter, the quota wait) plus the longest call it can hang.
PER_FAULT = (
    max(SETTINGS.max_retry_delay_seconds * 1.2, SETTINGS.quota_retry_seconds)
    + bounds.setup_timeout_seconds(SETTINGS)
    + SETTINGS.control_timeout_seconds
)
BOUND = bounds.init_bound_seconds(SETTINGS)

OPS = ("list", "create", "kill", "get", "set_timeout", "run", "identity")
KINDS = (
    "5xx",
    "4xx",
    "timeout",
    "hang",
    "429",
    "quota",
    "output",
    "unknown",
    "lost",
    "crash",
    "not-ready",
    "auth",
)


class Crash(BaseException):
    """The operator process died in the middle of a call (not an Exception: nothing catches it)."""


@dataclass
class World:
    """Simulated E2B plus a simulated clock."""

    now: float = 0.0
    live: dict[str, tuple[SandboxInfo, float]] = field(default_factory=dict)  # id -> (info, expires)
    born: dict[str, float] = field(default_factory=dict)  # id -> sim time created
    faults: dict[str, list[str]] = field(default_factory=dict)
    #: Failures injected so far that the init budget does not absorb: control-plane calls (list,
    #: create, kill, get, set_timeout), rejected keys and operator crashes. Failures of the setup
    #: run and the identity call (timeouts, hangs, 4xx, 5xx, agents that never start) are the
    #: budget's: they add nothing to the bound.
    injected: int = 0
    counter: int = 0

    def tick(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        for sid, (_, expires) in list(self.live.items()):
            if expires <= self.now:  # E2B ends a sandbox whose timeout ran out
                del self.live[sid]

    def _fault(self, op: str, timeout_s: float) -> None:
        queue = self.faults.get(op)
        if not queue:
            self.tick(0.05)
            return
        kind = queue.pop(0)
        if kind in ("not-ready", "lost"):
            queue.insert(0, kind)  # handled by the caller
            return
        self.tick(timeout_s if kind == "hang" else 0.5)
        raise _error(kind, op)

    async def create(
        self, template: str, metadata: Mapping[str, str], envs: Any = None, *, timeout_s: int, **_: Any
    ) -> SandboxInfo:
        self._fault("create", SETTINGS.control_timeout_seconds)
        self.counter += 1
        sid = f"sbx-{self.counter}"
        now = datetime.now(UTC)
        info = SandboxInfo(sid, template, dict(metadata), now, now + timedelta(seconds=timeout_s), "running")
        self.live[sid] = (info, self.now + timeout_s)
        self.born[sid] = self.now
        if self._lost("create"):
            raise BackendUnavailable("the connection dropped after E2B created the sandbox")
        return info

    def _lost(self, op: str) -> bool:
        queue = self.faults.get(op)
        if queue and queue[0] == "lost":
            queue.pop(0)
            return True
        return False

    async def list(self, metadata: Mapping[str, str], state: str = "both", **_: Any) -> list[SandboxInfo]:
        self._fault("list", SETTINGS.control_timeout_seconds)
        return [i for i, _ in self.live.values() if all(i.metadata.get(k) == v for k, v in metadata.items())]

    async def get(self, sandbox_id: str, **_: Any) -> SandboxInfo:
        self._fault("get", SETTINGS.control_timeout_seconds)
        if sandbox_id not in self.live:
            raise SandboxNotFound(f"{sandbox_id} is gone", sandbox_id=sandbox_id)
        return self.live[sandbox_id][0]

    async def kill(self, sandbox_id: str, **_: Any) -> bool:
        self._fault("kill", SETTINGS.control_timeout_seconds)
        gone = self.live.pop(sandbox_id, None) is not None
        if self._lost("kill"):
            raise BackendUnavailable("the connection dropped after E2B killed the sandbox")
        return gone

    async def set_timeout(self, sandbox_id: str, timeout_s: int, **_: Any) -> None:
        self._fault("set_timeout", SETTINGS.control_timeout_seconds)
        if sandbox_id not in self.live:
            raise SandboxNotFound(f"{sandbox_id} is gone", sandbox_id=sandbox_id)
        info, _ = self.live[sandbox_id]
        self.live[sandbox_id] = (info, self.now + timeout_s)

    async def resume(self, sandbox_id: str, timeout_s: int, **_: Any) -> None: ...

    async def run(
        self, sandbox_id: str, script: str, envs: Any = None, *, timeout_s: float = 60, **_: Any
    ) -> CommandResult:
        op = "identity" if script == IDENTITY_SCRIPT else "run"
        self._fault(op, timeout_s)
        if sandbox_id not in self.live:
            raise SandboxNotFound(f"{sandbox_id} is gone", sandbox_id=sandbox_id)
        if op == "identity":
            return CommandResult(
                0, f"swarm-identity {sandbox_id} {self.live[sandbox_id][0].metadata[TAG_UID]}\n"
            )
        if self.faults.get("run") and self.faults["run"][0] == "not-ready":
            self.faults["run"].pop(0)
            self.tick(SETTINGS.ready_timeout_seconds)  # the script waited for agents that never came
            return CommandResult(0, _report(2, 0))
        self.tick(1.0)
        return CommandResult(0, _report(2, 2))


def _error(kind: str, op: str) -> BaseException:
    if kind == "crash":
        return Crash()
    return {
        "5xx": BackendUnavailable("E2B answered 503"),
        "4xx": InvalidRequest("E2B answered 400"),
        "timeout": CommandTimeout("ran past its timeout")
        if op in ("run", "identity")
        else BackendUnavailable("the call timed out"),
        "hang": CommandTimeout("hung until its timeout")
        if op in ("run", "identity")
        else BackendUnavailable("the call hung until its timeout"),
        "429": RateLimited("E2B answered 429", retry_after_s=3),
        "quota": QuotaExceeded("concurrent sandbox limit"),
        "output": OutputLimitExceeded("printed too much"),
        "unknown": BackendError("E2B answered 418"),
        "auth": AuthenticationFailed("E2B answered 401"),
    }[kind]


@dataclass
class Store:
    """The API server's copy of the resource's status: merge patches applied as Kubernetes does."""

    body: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> None:
        _merge(self.body, patch)

    def record(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value if not isinstance(value, Mapping) else dict(value)


class Pool:
    def __init__(self, world: World) -> None:
        self.world = world

    def for_key(self, api_key: str) -> World:
        assert api_key == KEY
        return self.world


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.store = Store()
        self.runtime = self._runtime()
        self.retry = 0
        self.due: float | None = None  # when kopf runs the reconcile it was asked to retry
        self.failed = False  # GiveUp: kopf stops retrying until the spec changes
        self.deleting = False  # deletionTimestamp set: only the delete handler runs from now on
        self.gone = False
        self.restarts = 0
        self.injected_at: dict[str, int] = {}

    def _runtime(self) -> Runtime:
        return Runtime(
            settings=SETTINGS,
            backends=Pool(self.world),
            secrets=SecretReader(FakeSecrets()),
            status=self.store,
            events=self.store,
        )

    def _status(self) -> SwarmSandboxStatus:
        return SwarmSandboxStatus.model_validate(self.store.body)

    def _run(self, coro: Any) -> Any:
        """Run one handler call; a crash inside it restarts the operator (returns "crashed")."""
        try:
            return asyncio.run(coro)
        except Crash:
            self.restart()
            return "crashed"

    # -- what can happen

    @rule(op=st.sampled_from(OPS), kind=st.sampled_from(KINDS), times=st.integers(1, 8))
    def fail(self, op: str, kind: str, times: int) -> None:
        """The next ``times`` calls of ``op`` fail this way (E2B, the network, or a crash)."""
        if kind == "not-ready" and op != "run":
            return
        if kind == "lost" and op not in ("create", "kill"):
            return
        self.world.faults.setdefault(op, []).extend([kind] * times)
        if op not in ("run", "identity") or kind in ("auth", "crash"):
            self.world.injected += times

    @rule()
    def restart(self) -> None:
        """The operator process ends; a new one starts with nothing in memory."""
        self.runtime = self._runtime()
        self.restarts += 1
        self.retry = 0  # kopf's retry count lives in an annotation, but a resume starts afresh
        if not self.deleting:  # kopf's resume handler: every resource is reconciled at start
            self.failed, self.due = False, None
            self.reconcile()

    @precondition(lambda self: not self.failed and not self.deleting)
    @rule()
    def reconcile(self) -> None:
        """kopf runs the reconcile (create/update/resume, or a retry once its delay has passed)."""
        if self.due is not None:
            self.world.tick(self.due - self.world.now)
            self.due = None
        try:
            self._run(lifecycle.reconcile(REF, SPEC, self._status(), self.runtime, retry=self.retry))
            self.retry = 0
        except RetryLater as exc:
            self.due = self.world.now + exc.delay
            self.retry += 1
        except GiveUp:
            self.failed = True

    @precondition(lambda self: not self.deleting)
    @rule()
    def lease_tick(self) -> None:
        """The lease daemon's tick: renew, or (sandbox gone or not ours) reconcile. Time runs on
        meanwhile, so a reconcile kopf scheduled before the tick runs first (as it would)."""
        target = self.world.now + SETTINGS.lease_renew_seconds
        while self.due is not None and self.due <= target and not self.failed and not self.deleting:
            self.reconcile()
        self.world.tick(target - self.world.now)
        try:
            self._run(lifecycle.renew_lease(REF, SPEC, self._status(), self.runtime))
        except SandboxNotFound:
            if not self.failed:
                try:
                    self._run(lifecycle.reconcile(REF, SPEC, self._status(), self.runtime))
                except (RetryLater, GiveUp):
                    pass  # the daemon logs it; kopf's own reconcile retries are the other rule
        except BackendError:
            pass  # logged and counted by the daemon; the next tick tries again

    @precondition(lambda self: not self.gone)
    @rule()
    def delete(self) -> None:
        """kubectl delete (first call), then kopf's delete handler until it succeeds."""
        if not self.deleting:
            self.deleting, self.retry = True, 0
        try:
            done = self._run(lifecycle.delete(REF, SPEC, self._status(), self.runtime, retry=self.retry))
        except RetryLater as exc:
            self.world.tick(exc.delay)
            self.retry += 1
            return
        if done is None and REF.uid not in self.runtime.memory:
            self.gone = True  # the finalizer is removed: the resource is gone
            assert not self._ours(), "a deleted resource left a sandbox behind"

    # -- what must hold

    def _ours(self) -> list[str]:
        return [sid for sid, (info, _) in self.world.live.items() if info.metadata.get(TAG_UID) == REF.uid]

    def _ready_on(self) -> str | None:
        status = self.store.body
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        agents = conditions.get("AgentsReady", {})
        if agents.get("status") == "True" and status.get("sandbox"):
            return status["sandbox"].get("id")
        return None

    @invariant()
    def never_more_sandboxes_than_resources(self) -> None:
        assert len(self._ours()) <= 1, (self._ours(), self.store.body.get("sandbox"))

    @invariant()
    def no_sandbox_outlives_the_bound_without_being_ready(self) -> None:
        ready = self._ready_on()
        for sid in self._ours():
            if sid == ready:
                continue
            injected = self.world.injected - self.injected_at.setdefault(sid, self.world.injected)
            age = self.world.now - self.world.born[sid]
            assert age <= BOUND + injected * PER_FAULT, (sid, age, injected)

    @invariant()
    def failed_means_killed(self) -> None:
        if self.store.body.get("phase") == "Failed" and self.failed:
            # Killed, or its kill pending; then it is never renewed and E2B ends it within a lease.
            for sid in self._ours():
                assert self.world.live[sid][1] <= self.world.now + SETTINGS.lease_seconds

    def teardown(self) -> None:
        """No more failures: the resource must converge, within the bound, to Ready or Failed with
        no sandbox left (or be gone)."""
        self.world.faults.clear()
        start = self.world.now
        for _ in range(50):
            if self.gone or self.failed:
                break
            if self.deleting:
                self.delete()
                continue
            # The lease daemon's next tick notices a sandbox E2B ended during an outage longer
            # than a lease (status still says Ready until then) and reconciles.
            self.lease_tick()
            if self._ready_on() in self._ours():
                break
            if not self.failed:
                self.reconcile()
        if self.failed:
            for _ in range(20):  # kill retries happen on later passes; else E2B's timeout ends it
                if not self._ours():
                    break
                self.lease_tick()
            assert not self._ours() or all(
                expires <= self.world.now + SETTINGS.lease_seconds for _, expires in self.world.live.values()
            )
        elif self.gone:
            assert not self._ours()
        else:
            assert self._ready_on() in self._ours(), self.store.body
        assert self.world.now - start <= BOUND + SETTINGS.lease_seconds * 20


TestLifecycleProperty = Lifecycle.TestCase
TestLifecycleProperty.settings = settings(
    max_examples=300,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_the_bound_is_what_the_readme_states() -> None:
    """The README quotes the bound for the default settings; keep the two in step."""
    defaults = Settings()
    assert bounds.init_bound_seconds(defaults) == (
        defaults.init_attempts
        * (
            defaults.ready_timeout_seconds
            + defaults.command_timeout_seconds
            + defaults.control_timeout_seconds
            + 1.2 * defaults.max_retry_delay_seconds
        )
        + sum(defaults.init_backoff_seconds * 2**i for i in range(defaults.init_attempts))
        + 30
        + 3 * defaults.control_timeout_seconds
    )


def _check(machine: Lifecycle) -> None:
    machine.never_more_sandboxes_than_resources()
    machine.no_sandbox_outlives_the_bound_without_being_ready()
    machine.failed_means_killed()


@pytest.mark.parametrize("kind", ["hang", "timeout", "4xx", "5xx", "output", "unknown", "not-ready"])
def test_the_issues_probe_a_setup_that_always_fails_ends_killed_within_the_bound(kind: str) -> None:
    """Issue 16's reproduction (6 retries, backoff 5 -> 187 s, never killed), as a directed run of
    the machine: every setup run fails the same way, the lease keeps ticking, kopf keeps retrying."""
    machine = Lifecycle()
    machine.fail("run", kind, 20)
    for _ in range(20):
        if machine.failed:
            break
        machine.reconcile()
        _check(machine)
        machine.lease_tick()
        _check(machine)
    assert machine.failed and not machine._ours()
    assert machine.store.body["phase"] == "Failed"
    assert machine.world.now <= BOUND + SETTINGS.lease_renew_seconds * 20
