"""The cost meter wired into the lifecycle (fakes, no kopf): a restart carries the ledger on, a
budget pauses or kills, an idle pause holds until the spec changes, the health daemon looks again
in time for a budget, and the probe's activity report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_lifecycle import REF, SPEC, FakeBackend, Recorder, _conditions, _runtime, _spec, _status

from swarm_operator import lifecycle
from swarm_operator.bootstrap import HealthReport
from swarm_operator.cost import Prices, Size, accrue, spent_today, with_day
from swarm_operator.lifecycle import GiveUp, ResourceRef
from swarm_operator.lifecycle.budget import MIN_LOOK_SECONDS, went_idle
from swarm_operator.model import CostStatus


@dataclass
class PausingBackend(FakeBackend):
    paused: list[str] = field(default_factory=list)

    async def pause(self, sandbox_id: str, **_: Any) -> bool:
        self.paused.append(sandbox_id)
        return True


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def _ledger(**fields: Any) -> dict[str, Any]:
    return {
        "sandboxSeconds": 1000,
        "estimatedUSD": 0.5,
        "state": "Running",
        "vcpu": 2,
        "memoryMiB": 1024,
        "rateUSDPerHour": 0.117,
        **fields,
    }


async def test_an_operator_restart_carries_the_ledger_on_and_charges_the_time_away() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    status = {"sandbox": {"id": sid}, "cost": _ledger(asOf=_ago(400))}  # read back after a restart
    runtime = _runtime(backend, recorder, SWARM_COST_REFRESH_MINUTES="5")  # 400 s: a refresh is due
    await lifecycle.reconcile(REF, _spec(SPEC), _status(status), runtime)
    cost = recorder.status()["cost"]
    assert 1400 <= cost["sandboxSeconds"] <= 1402  # the 400 s away were billed: charged, not reset
    assert cost["estimatedUSD"] == pytest.approx(
        0.5 + 0.117 * cost["sandboxSeconds"] / 3600 - 0.117 * 1000 / 3600
    )


async def test_a_quiet_reconcile_within_the_cadence_leaves_the_figures_alone() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    written = _ledger(asOf=_ago(30))
    await lifecycle.reconcile(
        REF, _spec(SPEC), _status({"sandbox": {"id": sid}, "cost": written}), _runtime(backend, recorder)
    )
    cost = recorder.status()["cost"]
    assert (cost["sandboxSeconds"], cost["asOf"][:19]) == (1000, written["asOf"][:19])


async def test_a_reached_budget_with_suspend_pauses_and_stops_the_meter() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    spec = _spec({**SPEC, "budget": {"maxUSD": 0.4}})
    await lifecycle.reconcile(
        REF,
        spec,
        _status({"sandbox": {"id": sid}, "cost": _ledger(asOf=_ago(5))}),
        _runtime(backend, recorder),
    )
    status = recorder.status()
    assert backend.paused == [sid] and backend.killed == []
    assert status["phase"] == "Suspended"
    conditions = _conditions(status)
    assert conditions["BudgetExceeded"]["status"] == "True"
    assert conditions["Suspended"]["reason"] == "BudgetExceeded"
    assert conditions["Ready"]["reason"] == "Suspended"  # not Failed: the work is kept
    assert status["cost"]["state"] == "Paused" and status["cost"]["rateUSDPerHour"] == 0
    assert [e[:2] for e in recorder.events if e[1] == "BudgetExceeded"] == [("Warning", "BudgetExceeded")]


async def test_a_reached_budget_with_delete_kills_and_fails_until_the_limit_changes() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    spec = _spec({**SPEC, "budget": {"maxHours": 0.2, "action": "Delete"}})
    runtime = _runtime(backend, recorder)
    with pytest.raises(GiveUp):
        await lifecycle.reconcile(
            REF, spec, _status({"sandbox": {"id": sid}, "cost": _ledger(asOf=_ago(5))}), runtime
        )
    status = recorder.status()
    assert backend.killed == [sid] and status["phase"] == "Failed"
    assert status["cost"]["state"] == "Stopped"
    raised = _spec({**SPEC, "budget": {"maxHours": 1, "action": "Delete"}})
    await lifecycle.reconcile(
        ResourceRef(REF.namespace, REF.name, REF.uid, 2), raised, _status(status), runtime
    )
    status = recorder.status()
    assert status["phase"] == "Ready" and status["sandbox"]["id"] != sid
    assert _conditions(status)["BudgetExceeded"]["reason"] == "WithinBudget"


async def test_an_idle_pause_holds_for_its_generation_and_a_spec_change_resumes() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    runtime = _runtime(backend, recorder)
    idle = {
        "type": "Suspended",
        "status": "True",
        "reason": "Idle",
        "message": "idle",
        "lastTransitionTime": _ago(10),
        "observedGeneration": 1,
    }
    status = {"sandbox": {"id": sid}, "conditions": [idle], "cost": _ledger(state="Paused", asOf=_ago(5))}
    await lifecycle.reconcile(REF, _spec(SPEC), _status(status), runtime)  # e.g. an operator restart
    assert recorder.status()["phase"] == "Suspended"
    newer = ResourceRef(REF.namespace, REF.name, REF.uid, 2)
    await lifecycle.reconcile(newer, _spec({**SPEC, "agents": 2}), _status(recorder.status()), runtime)
    assert recorder.status()["phase"] == "Ready"
    assert _conditions(recorder.status())["Suspended"]["reason"] == "Resumed"
    assert recorder.status()["cost"]["state"] == "Running"


async def test_resume_lifts_only_an_idle_pause() -> None:
    backend, recorder = PausingBackend(), Recorder()
    sid = backend.add(REF.uid)
    runtime = _runtime(backend, recorder)
    idle = {
        "type": "Suspended",
        "status": "True",
        "reason": "Idle",
        "message": "idle",
        "lastTransitionTime": _ago(10),
        "observedGeneration": 1,
    }
    await lifecycle.resume(REF, _spec(SPEC), _status({"sandbox": {"id": sid}, "conditions": [idle]}), runtime)
    assert recorder.status()["phase"] == "Ready"
    assert ("Normal", "Resumed") in [e[:2] for e in recorder.events]


def test_the_health_daemon_looks_again_when_the_budget_will_be_reached() -> None:
    spec = _spec({**SPEC, "healthCheck": {"intervalSeconds": 30}, "budget": {"maxUSD": 1}})
    # $3.6/hour is $0.001/s: $0.99 spent now leaves 10 s.
    status = _status({"cost": _ledger(estimatedUSD=0.99, rateUSDPerHour=3.6, asOf=_ago(0))})
    assert 9 <= lifecycle.probe_interval(spec, status) <= 12
    assert lifecycle.probe_interval(spec, _status({"cost": _ledger(state="Paused", asOf=_ago(0))})) == 30
    assert lifecycle.probe_interval(_spec(SPEC), status) == lifecycle.probe_interval(_spec(SPEC)) == 30
    over = _status({"cost": _ledger(estimatedUSD=2, asOf=_ago(0))})
    assert lifecycle.probe_interval(spec, over) == MIN_LOOK_SECONDS  # never a spin


def _report(activity: int | None, clock: int, registry_mtime: int | None = None) -> HealthReport:
    return HealthReport.model_validate(
        {
            "kind": "probe",
            "version": 1,
            "session": "s",
            "server": True,
            "agents": {"desired": 1, "alive": 1, "dead": 0},
            "missing": [],
            "extra": 0,
            "panes": [],
            "registry": None
            if registry_mtime is None
            else {"path": "r", "agents": 1, "mtime": registry_mtime},
            "activity": activity,
            "clock": clock,
        }
    )


def test_idle_means_no_pane_output_and_no_coordinator_change_for_the_whole_time() -> None:
    spec = _spec({**SPEC, "idle": {"idleAfterSeconds": 60}})
    assert went_idle(spec, _report(1000, 1061)) is not None
    assert went_idle(spec, _report(1000, 1059)) is None
    assert went_idle(spec, _report(1000, 1061, registry_mtime=1030)) is None  # a coordinator message
    assert went_idle(spec, _report(None, 5000)) is None  # the probe could not tell: never guess idle
    assert went_idle(_spec(SPEC), _report(1000, 9000)) is None  # no spec.idle


async def test_the_namespace_daily_cap_pauses_default_key_resources_only() -> None:
    backend, recorder = PausingBackend(), Recorder()
    runtime = _runtime(backend, recorder, SWARM_MAX_USD_PER_NAMESPACE_PER_DAY="1")
    today = datetime.now(UTC).date().isoformat()
    other = runtime.remember("uid-other")  # another resource of the namespace, $0.7 today
    other.namespace, other.default_key = REF.namespace, True
    other.cost = CostStatus.model_validate(
        _ledger(estimatedUSD=0.9, dayStartUSD=0.2, day=today, state="Paused", asOf=_ago(5))
    )
    sid = backend.add(REF.uid)
    mine = _ledger(estimatedUSD=0.5, dayStartUSD=0.1, day=today, asOf=_ago(5))  # $0.4 today
    await lifecycle.reconcile(REF, _spec(SPEC), _status({"sandbox": {"id": sid}, "cost": mine}), runtime)
    status = recorder.status()
    assert backend.paused == [sid] and status["phase"] == "Suspended"
    message = _conditions(status)["BudgetExceeded"]["message"]
    assert (
        "namespace ns spent an estimated $1.1" in message and "SWARM_MAX_USD_PER_NAMESPACE_PER_DAY" in message
    )
    # The next UTC day the pause lifts without a spec change (the health daemon reconciles).
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    paused = _status(status)
    assert lifecycle.budget.lifted(REF, _spec(SPEC), paused, runtime, tomorrow)
    assert not lifecycle.budget.lifted(REF, _spec(SPEC), paused, runtime, datetime.now(UTC))
    # A resource on its own key is not capped by the operator's default-key budget.
    own = _spec({**SPEC, "e2b": {"apiKeySecretRef": {"name": "mine", "key": "api-key"}}})
    assert not lifecycle.budget.verdict(REF, own, paused.cost, runtime, datetime.now(UTC))[0].exceeded


def test_spend_today_starts_at_midnight_and_carries_within_the_day() -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = midnight - timedelta(hours=1)
    # $0.001/s since 23:00: $3.6 by midnight.
    ledger = accrue(None, yesterday, "Running", Size(1, 0), Prices(0.001, 0))
    ledger = with_day(ledger, yesterday, None)
    later = midnight + timedelta(minutes=10)
    assert spent_today(ledger, later) == pytest.approx(0.6)  # 600 s today, the day rolled over
    rolled = with_day(accrue(ledger, later, "Running", None, Prices(0.001, 0)), later, ledger)
    assert rolled.day == midnight.date().isoformat() and rolled.day_start_usd == pytest.approx(3.6)
    assert spent_today(rolled, later + timedelta(seconds=100)) == pytest.approx(0.7)
