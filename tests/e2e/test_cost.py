"""Cost end to end (real operator, both emulators): a budget that pauses the sandbox and stops the
meter, raising it resumes; the cost series on /metrics; every dashboard query names an exported
metric; idle swarms are paused, busy ones are not; ``swarm-operator status``/``resume``."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.test_cli import _cli

from swarm_operator import _dashboard
from swarm_operator.cost import E2B_USD_PER_GIB_SECOND, E2B_USD_PER_VCPU_SECOND

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_dashboard import _label_values, _parse, _problems, _reads  # noqa: E402

pytestmark = pytest.mark.e2e

FAST = {"intervalSeconds": 5}
#: The emulator's default sandbox size (2 vCPU, 1024 MiB, as E2B's base template) at E2B's prices.
RATE = (2 * E2B_USD_PER_VCPU_SECOND + 1 * E2B_USD_PER_GIB_SECOND) * 3600
#: Agents that print a line every second: never idle.
_PRINTING = {"command": "bash", "args": ["-c", "while :; do echo working; sleep 1; done"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _state(e2b: Any, sandbox_id: str) -> str:
    [record] = [s for s in e2b.inspect(include_dead=True) if s["sandboxID"] == sandbox_id]
    return str(record["state"])


def test_a_tiny_budget_pauses_the_sandbox_and_raising_it_resumes(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    port = _free_port()
    start_operator(SWARM_METRICS_PORT=str(port))
    # $0.0002 is about 6 s of the default sandbox: reached soon after Ready.
    cluster.apply(swarm("pricey", agents=1, healthCheck=FAST, budget={"maxUSD": 0.0002, "action": "Suspend"}))
    cluster.wait_condition("default", "pricey", "Ready")
    running = cluster.status("default", "pricey")
    sandbox_id = running["sandbox"]["id"]
    cost = running["cost"]
    assert (cost["state"], cost["vcpu"], cost["memoryMiB"]) == ("Running", 2, 1024)  # from E2B's info
    assert cost["rateUSDPerHour"] == pytest.approx(RATE)

    cond = cluster.wait_condition(
        "default", "pricey", "BudgetExceeded", "True", reason="BudgetExceeded", timeout=20
    )
    assert "maxUSD $0.0002" in cond["message"]
    cluster.wait_condition("default", "pricey", "Suspended", "True", reason="BudgetExceeded")
    paused = cluster.status("default", "pricey")
    assert paused["phase"] == "Suspended"
    assert _state(e2b, sandbox_id) == "paused"  # the emulator says so, not only our status
    assert paused["cost"]["state"] == "Paused" and paused["cost"]["rateUSDPerHour"] == 0
    spent = paused["cost"]["estimatedUSD"]
    # Acted on within the health interval of reaching it: at most 5 s of spend past the limit.
    assert 0.0002 <= spent <= 0.0002 + RATE * 5 / 3600
    assert any(
        e.reason == "BudgetExceeded" and e.type == "Warning" for e in cluster.events("default", "pricey")
    )

    # The meter stopped: neither status, nor the metrics (computed at scrape time), nor the CLI grow.
    first = _scrape(port)
    time.sleep(3)
    second = _scrape(port)
    assert cluster.status("default", "pricey")["cost"] == paused["cost"]
    usd = ("swarm_sandbox_estimated_usd_total", (("namespace", "default"),))
    seconds = ("swarm_sandbox_seconds_total", (("namespace", "default"),))
    rate = ("swarm_sandbox_rate_usd_per_hour", (("namespace", "default"),))
    assert first[usd] == second[usd] == pytest.approx(spent)  # the operator saw every second of it
    assert first[seconds] == second[seconds] == paused["cost"]["sandboxSeconds"]
    assert second[rate] == 0
    shown = _cli(cluster, e2b, "status", "pricey")
    assert shown.returncode == 0, shown.stderr
    assert f"Cost:       ${spent:.4f} so far, $0.0000/hour now (paused, 2 vCPU / 1024 MiB)" in shown.stdout

    # Raising the limit resumes the same sandbox, Ready; BudgetExceeded clears.
    cluster.kubectl("patch", "swarm", "pricey", "--type=merge", "-p", '{"spec": {"budget": {"maxUSD": 5}}}')
    cluster.wait_condition("default", "pricey", "BudgetExceeded", "False", reason="WithinBudget")
    cluster.wait_condition("default", "pricey", "Ready")
    resumed = cluster.status("default", "pricey")
    assert resumed["sandbox"]["id"] == sandbox_id and _state(e2b, sandbox_id) == "running"
    assert resumed["cost"]["state"] == "Running" and resumed["cost"]["estimatedUSD"] >= spent
    assert resumed["cost"]["pausedSeconds"] >= 3
    wait_for(lambda: _scrape(port)[rate] == pytest.approx(RATE), 10, message="rate gauge back")
    assert _scrape(port)[usd] >= spent

    # The size cost one extra E2B call per create (a get: E2B's create answer has no size), and each
    # generation's apply-to-Ready went to the histogram once (created; budget raised).
    final = _scrape(port)
    assert final[("swarm_e2b_calls_total", (("operation", "create"), ("outcome", "ok")))] == 1
    assert final[("swarm_e2b_calls_total", (("operation", "get"), ("outcome", "ok")))] == 1
    assert final[("swarm_ready_seconds_count", ())] == 2

    # Every series the shipped dashboard queries is exported by this live operator.
    live: dict[str, set[str]] = {}
    for name, labels in _scrape(port):
        live.setdefault(name, set()).update(k for k, _ in labels)
    queries = _dashboard.queries(json.loads(_dashboard.dashboard_path().read_text()))
    read = {
        name for q in queries for name, _ in _reads(_parse(_label_values(q)[0] if _label_values(q) else q))
    }
    assert len(read) >= 7
    assert [p for q in queries for p in _problems(q, live)] == []


def test_budget_delete_kills_the_sandbox_and_keeps_the_resource(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("capped", agents=1, healthCheck=FAST, budget={"maxHours": 0.001, "action": "Delete"}))
    cluster.wait_condition("default", "capped", "Ready")
    sandbox_id = cluster.status("default", "capped")["sandbox"]["id"]
    cluster.wait_condition("default", "capped", "Synced", "False", reason="BudgetExceeded", timeout=20)
    status = cluster.status("default", "capped")
    assert status["phase"] == "Failed"
    assert "sandbox" not in status and status["cost"]["state"] == "Stopped"
    assert status["cost"]["sandboxSeconds"] >= 3.6
    assert _state(e2b, sandbox_id) == "killed"
    cluster.kubectl("patch", "swarm", "capped", "--type=merge", "-p", '{"spec": {"budget": null}}')
    cluster.wait_condition("default", "capped", "Ready")
    assert cluster.status("default", "capped")["sandbox"]["id"] != sandbox_id


def test_an_idle_swarm_is_paused_a_printing_one_is_not_and_resume_wakes_it(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(
        swarm("idler", agents=1, healthCheck=FAST, idle={"idleAfterSeconds": 10}),
        swarm("busy", agents=1, healthCheck=FAST, idle={"idleAfterSeconds": 10}, agent=_PRINTING),
    )
    cluster.wait_condition("default", "idler", "Ready")
    cluster.wait_condition("default", "busy", "Ready")
    idler = cluster.status("default", "idler")["sandbox"]["id"]
    busy = cluster.status("default", "busy")["sandbox"]["id"]
    cond = cluster.wait_condition("default", "idler", "Suspended", "True", reason="Idle", timeout=30)
    assert "idle for" in cond["message"]
    assert _state(e2b, idler) == "paused"
    assert cluster.status("default", "idler")["cost"]["state"] == "Paused"
    time.sleep(6)  # one more probe of the printing swarm, well past its idle time
    assert cluster.status("default", "busy")["phase"] == "Ready"
    assert _state(e2b, busy) == "running"
    assert cluster.status("default", "idler")["phase"] == "Suspended"  # still: nothing woke it
    answer = _cli(cluster, e2b, "resume", "idler")
    assert answer.returncode == 0, answer.stderr
    assert "resume requested for default/idler" in answer.stdout
    cluster.wait_condition("default", "idler", "Ready", timeout=30)
    assert cluster.status("default", "idler")["sandbox"]["id"] == idler
    assert _state(e2b, idler) == "running"
