"""Metrics as a scraper sees them: served over HTTP, parsed with prometheus-client's own parser."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from swarm_operator import __version__
from swarm_operator.backend import BackendError
from swarm_operator.cost import Prices, Size, accrue
from swarm_operator.metrics import E2B_OPERATIONS, Metrics, new_registry, start_server
from swarm_operator.model import Phase

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[Metrics, int]]:
    metrics = Metrics(new_registry())
    port = _free_port()
    close = start_server(port, metrics.registry, addr="127.0.0.1")
    try:
        yield metrics, port
    finally:
        close()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for (n, key) in samples if n == name and label in dict(key)}


def test_known_sequence_gives_exact_values(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.reconciled("reconcile", "success", 2.0)
    metrics.reconciled("reconcile", "success", 0.5)
    metrics.reconciled("reconcile", "error", 1.0)
    metrics.reconciled("reconcile", "requeue", 0.02)
    metrics.reconciled("delete", "success", 3.0)
    metrics.sandbox_created(1.5)
    metrics.sandbox_initialised(12.0)
    metrics.step("create", 1.5)
    metrics.step("init.tmux", 0.07)
    metrics.step("init.tmux", 0.2)
    metrics.throttled("operator")
    metrics.throttled("operator")
    metrics.throttled("namespace")
    metrics.adopted()
    metrics.orphan_killed()
    metrics.orphan_killed(2)
    metrics.duplicate_killed()
    metrics.agents_restarted(3)
    metrics.e2b_observer("create", "ok", 1.25)
    metrics.e2b_observer("create", "RateLimited", 0.25)
    metrics.e2b_observer("run", "ok", 4.0)

    s = scrape(port)
    c = {"controller": "swarmsandbox"}
    assert value(s, "controller_runtime_reconcile_total", **c, handler="reconcile", result="success") == 2
    assert value(s, "controller_runtime_reconcile_total", **c, handler="reconcile", result="error") == 1
    assert value(s, "controller_runtime_reconcile_total", **c, handler="reconcile", result="requeue") == 1
    assert value(s, "controller_runtime_reconcile_total", **c, handler="delete", result="success") == 1
    # Handlers that never ran are exported at zero, so rate() sees them from the start.
    assert value(s, "controller_runtime_reconcile_total", **c, handler="lease", result="error") == 0
    assert value(s, "controller_runtime_reconcile_errors_total", **c, handler="reconcile") == 1
    assert value(s, "controller_runtime_reconcile_errors_total", **c, handler="delete") == 0
    assert value(s, "controller_runtime_reconcile_time_seconds_count", **c, handler="reconcile") == 4
    assert value(s, "controller_runtime_reconcile_time_seconds_sum", **c, handler="reconcile") == 3.52
    bucket = "controller_runtime_reconcile_time_seconds_bucket"
    assert value(s, bucket, **c, handler="reconcile", le="0.5") == 2
    assert value(s, bucket, **c, handler="reconcile", le="1.0") == 3

    assert value(s, "swarm_sandbox_create_seconds_count") == 1
    assert value(s, "swarm_sandbox_create_seconds_sum") == 1.5
    assert value(s, "swarm_sandbox_create_seconds_bucket", le="1.0") == 0
    assert value(s, "swarm_sandbox_create_seconds_bucket", le="2.5") == 1
    assert value(s, "swarm_sandbox_init_seconds_sum") == 12.0
    assert value(s, "swarm_sandbox_init_seconds_bucket", le="0.05") == 0
    assert value(s, "swarm_sandbox_init_seconds_bucket", le="300.0") == 1
    assert value(s, "swarm_sandbox_step_seconds_count", step="init.tmux") == 2
    assert value(s, "swarm_sandbox_step_seconds_bucket", step="init.tmux", le="0.1") == 1
    assert value(s, "swarm_sandbox_step_seconds_count", step="create") == 1

    assert value(s, "swarm_creations_throttled_total", scope="operator") == 2
    assert value(s, "swarm_creations_throttled_total", scope="namespace") == 1
    assert value(s, "swarm_sandboxes_adopted_total") == 1
    assert value(s, "swarm_orphans_killed_total") == 3
    assert value(s, "swarm_duplicates_killed_total") == 1
    assert value(s, "swarm_agent_restarts_total") == 3

    assert value(s, "swarm_e2b_calls_total", operation="create", outcome="ok") == 1
    assert value(s, "swarm_e2b_calls_total", operation="create", outcome="RateLimited") == 1
    assert value(s, "swarm_e2b_calls_total", operation="run", outcome="ok") == 1
    assert value(s, "swarm_e2b_call_seconds_count", operation="create") == 2
    assert value(s, "swarm_e2b_call_seconds_sum", operation="create") == 1.5
    assert value(s, "swarm_e2b_call_seconds_bucket", operation="run", le="2.5") == 0
    assert value(s, "swarm_e2b_call_seconds_bucket", operation="run", le="5.0") == 1

    assert value(s, "swarm_build_info", version=__version__, python=platform.python_version()) == 1
    # The dedicated registry still carries the process metrics the global one would have.
    assert ("process_open_fds", frozenset()) in s


def test_phase_gauge_follows_transitions_and_drops_forgotten(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.observe_phase("u1", "team-a", Phase.CREATING)
    metrics.observe_phase("u2", "team-a", "Creating")
    metrics.observe_phase("u3", "team-b", Phase.READY)
    s = scrape(port)
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Creating") == 2
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Ready") == 0
    assert value(s, "swarm_sandboxes", namespace="team-b", phase="Ready") == 1

    metrics.observe_phase("u1", "team-a", Phase.INITIALIZING)
    metrics.observe_phase("u1", "team-a", Phase.READY)
    metrics.observe_phase("u1", "team-a", Phase.READY)  # repeated status writes count once
    metrics.observe_phase("u2", "team-a", Phase.FAILED)
    s = scrape(port)
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Creating") == 0
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Initializing") == 0
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Ready") == 1
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Failed") == 1
    # Every phase of a namespace in use is exported, and nothing else.
    assert label_values(s, "swarm_sandboxes", "phase") == {p.value for p in Phase}

    metrics.forget("u2")
    metrics.forget("u2")  # forgetting twice is harmless
    metrics.forget("never-seen")
    metrics.forget("u3")
    s = scrape(port)
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Failed") == 0
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="Ready") == 1
    assert label_values(s, "swarm_sandboxes", "namespace") == {"team-a"}

    metrics.forget("u1")
    assert label_values(scrape(port), "swarm_sandboxes", "namespace") == set()


def test_phase_gauge_moves_a_resource_between_namespaces_only_once(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.observe_phase("u1", "team-a", Phase.READY)
    metrics.observe_phase("u1", "team-b", Phase.READY)
    s = scrape(port)
    assert label_values(s, "swarm_sandboxes", "namespace") == {"team-b"}
    assert value(s, "swarm_sandboxes", namespace="team-b", phase="Ready") == 1


def test_unknown_phase_is_folded(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.observe_phase("u1", "team-a", "Exploded")
    s = scrape(port)
    assert value(s, "swarm_sandboxes", namespace="team-a", phase="other") == 1
    assert "Exploded" not in label_values(s, "swarm_sandboxes", "phase")


def test_e2b_labels_stay_bounded(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    for i in range(200):
        metrics.e2b_observer("create", f"Weird{i}", 0.1)
        metrics.e2b_observer(f"op{i}", "ok", 0.1)
    metrics.e2b_observer("create", "sandbox abc-123 exploded: {x}", 0.1)  # not a reason at all
    metrics.e2b_observer("kill", None, "not a number")  # type: ignore[arg-type]  # must not raise
    # Every reason the backend can report keeps its own label even after the flood.
    reasons = set()
    pending: list[type[BackendError]] = [BackendError]
    while pending:
        cls = pending.pop()
        reasons.add(cls.reason)
        pending.extend(cls.__subclasses__())
    for reason in reasons:
        metrics.e2b_observer("get", reason, 0.1)

    s = scrape(port)
    outcomes = label_values(s, "swarm_e2b_calls_total", "outcome")
    assert reasons | {"ok"} <= outcomes
    weird = outcomes - reasons - {"ok", "other"}
    assert len(weird) <= 8
    operations = label_values(s, "swarm_e2b_calls_total", "operation")
    assert {"create", "get"} <= operations
    assert len(operations - E2B_OPERATIONS - {"other"}) == 8
    assert value(s, "swarm_e2b_calls_total", operation="create", outcome="other") == 200 - len(weird) + 1
    # 200 distinct operations → at most 8 admitted, the rest folded (each called once with "ok").
    assert value(s, "swarm_e2b_calls_total", operation="other", outcome="ok") == 200 - 8


def test_step_and_handler_labels_stay_bounded(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    for i in range(100):
        metrics.step(f"init.step{i}", 0.1)
        metrics.reconciled(f"handler{i}", "success", 0.1)
    metrics.step("'; rm -rf / #", 0.1)
    metrics.reconciled("reconcile", "exploded", 0.1)
    s = scrape(port)
    steps = label_values(s, "swarm_sandbox_step_seconds_count", "step")
    assert len(steps) == 33 and "other" in steps
    assert value(s, "swarm_sandbox_step_seconds_count", step="other") == 100 - 32 + 1
    handlers = label_values(s, "controller_runtime_reconcile_total", "handler")
    assert len(handlers) <= 5 + 4 + 1
    total = "controller_runtime_reconcile_total"
    assert value(s, total, controller="swarmsandbox", handler="reconcile", result="other") == 1


def test_registries_are_independent() -> None:
    one, two = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    one.adopted()
    assert one.registry.get_sample_value("swarm_sandboxes_adopted_total") == 1
    assert two.registry.get_sample_value("swarm_sandboxes_adopted_total") == 0
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(one.registry)


def _own_listening_ports() -> set[int]:
    """TCP ports this process listens on, read from /proc (no trust in the code under test)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="reads /proc (Linux)")
def test_port_zero_serves_nothing() -> None:
    """Port 0 means metrics off, not "any free port": no socket listens, no server thread runs."""
    ports, threads = _own_listening_ports(), set(threading.enumerate())
    close = start_server(0, CollectorRegistry(), addr="127.0.0.1")
    try:
        assert _own_listening_ports() == ports
        assert set(threading.enumerate()) == threads
    finally:
        close()
    assert close() is None  # callable again, like the real closer


def test_own_listening_ports_sees_a_metrics_server() -> None:
    """The probe above can see a server: a real port shows up in it (so its silence means something)."""
    port = _free_port()
    close = start_server(port, CollectorRegistry(), addr="127.0.0.1")
    try:
        assert port in _own_listening_ports()
    finally:
        close()


def test_closer_frees_the_port() -> None:
    registry = CollectorRegistry()
    port = _free_port()
    close = start_server(port, registry, addr="127.0.0.1")
    close()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def test_cost_series_after_a_known_sequence() -> None:
    """Two resources in one namespace, one in another: running, paused, handed over, deleted; the
    counters grow between ledger hand-overs at the ledger's rate and never go down."""
    clock = _Clock()
    metrics = Metrics(new_registry(), clock=clock)
    port = _free_port()
    close = start_server(port, metrics.registry, addr="127.0.0.1")
    try:
        small, big = Size(2, 512), Size(8, 4096)  # $0.1089/h and $0.468/h at E2B's prices
        a = accrue(None, clock.now, "Running", small, Prices())
        b = accrue(None, clock.now, "Running", big, Prices())
        metrics.observe_cost("ua", "team-a", a)
        metrics.observe_cost("ub", "team-a", b)
        metrics.observe_cost("uc", "team-b", accrue(None, clock.now, "Paused", small, Prices()))
        s = scrape(port)
        assert value(s, "swarm_sandbox_rate_usd_per_hour", namespace="team-a") == pytest.approx(0.5769)
        assert value(s, "swarm_sandbox_rate_usd_per_hour", namespace="team-b") == 0
        assert value(s, "swarm_sandbox_seconds_total", namespace="team-a") == 0

        clock.tick(1800)  # no ledger hand-over: the scrape estimates
        s = scrape(port)
        assert value(s, "swarm_sandbox_seconds_total", namespace="team-a") == 3600
        assert value(s, "swarm_sandbox_estimated_usd_total", namespace="team-a") == pytest.approx(0.5769 / 2)
        assert value(s, "swarm_sandbox_seconds_total", namespace="team-b") == 0  # paused: not billed

        # a is paused; b is handed over to a small sandbox; both written as status would be.
        a = accrue(a, clock.now, "Paused", None, Prices())
        b = accrue(b, clock.now, "Running", small, Prices())
        metrics.observe_cost("ua", "team-a", a)
        metrics.observe_cost("ub", "team-a", b)
        metrics.observe_cost("ub", "team-a", accrue(None, clock.now, "Running", small, Prices()))  # stale
        clock.tick(3600)
        s = scrape(port)
        assert value(s, "swarm_sandbox_rate_usd_per_hour", namespace="team-a") == pytest.approx(0.1089)
        # The stale ledger (as if b had started an hour ago) takes nothing back: b keeps its
        # $0.234 of the big half hour, though the stale figure says $0.1089.
        assert value(s, "swarm_sandbox_seconds_total", namespace="team-a") == 1800 + 3600
        assert value(s, "swarm_sandbox_estimated_usd_total", namespace="team-a") == pytest.approx(0.5769 / 2)

        metrics.observe_cost("ub", "team-a", accrue(b, clock.now, "Running", small, Prices()))
        s = scrape(port)
        spent = 0.5769 / 2 + 0.1089
        assert value(s, "swarm_sandbox_estimated_usd_total", namespace="team-a") == pytest.approx(spent)

        metrics.forget("ub")  # deleted: its spend stays in the namespace, its rate goes
        clock.tick(3600)
        s = scrape(port)
        assert value(s, "swarm_sandbox_estimated_usd_total", namespace="team-a") == pytest.approx(spent)
        assert value(s, "swarm_sandbox_seconds_total", namespace="team-a") == 1800 + 1800 + 3600
        assert value(s, "swarm_sandbox_rate_usd_per_hour", namespace="team-a") == 0
        # Labels are namespaces only: no resource names, uids or sandbox ids.
        for name in (
            "swarm_sandbox_seconds_total",
            "swarm_sandbox_estimated_usd_total",
            "swarm_sandbox_rate_usd_per_hour",
        ):
            assert {k for (n, key) in s if n == name for k, _ in key} == {"namespace"}
    finally:
        close()


def test_cost_after_a_restart_counts_from_the_first_ledger_seen() -> None:
    """A new operator process reads a ledger with an hour of spend in it: the counter starts at 0
    (the past is in status), then grows at the ledger's rate."""
    clock = _Clock()
    ledger = accrue(None, clock.now, "Running", Size(2, 512), Prices())
    clock.tick(3600)
    metrics = Metrics(CollectorRegistry(), clock=clock)
    metrics.observe_cost("u1", "team-a", ledger)
    assert metrics.registry.get_sample_value("swarm_sandbox_seconds_total", {"namespace": "team-a"}) == 0
    clock.tick(60)
    assert metrics.registry.get_sample_value("swarm_sandbox_seconds_total", {"namespace": "team-a"}) == 60


def test_ready_latency_histogram() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.became_ready(42.0)
    metrics.became_ready(-1.0)  # a clock step never makes a negative observation
    get = metrics.registry.get_sample_value
    assert get("swarm_ready_seconds_count") == 2
    assert get("swarm_ready_seconds_bucket", {"le": "30.0"}) == 1
    assert get("swarm_ready_seconds_bucket", {"le": "60.0"}) == 2


def test_untracked_sandboxes_gauge_reports_the_last_sweep() -> None:
    """Read by the SwarmUntrackedSandboxes alert (issue 16, hole 9)."""
    from swarm_operator.metrics import Metrics, new_registry

    metrics = Metrics(new_registry())
    metrics.untracked(3)
    assert metrics.registry.get_sample_value("swarm_untracked_sandboxes") == 3
    metrics.untracked(-1)
    assert metrics.registry.get_sample_value("swarm_untracked_sandboxes") == 0


def test_every_series_of_the_table_is_a_typed_attribute_and_scraped(served: tuple[Metrics, int]) -> None:
    """The series are built from a table (metrics/_series.py): each row becomes the attribute its
    class annotation declares (so mypy's view of Metrics is the truth), and each is served."""
    from swarm_operator.metrics._series import SERIES

    metrics, port = served
    declared = {name for name, kind in Metrics.__annotations__.items() if name != "registry"}
    assert declared == {s.attr for s in SERIES}
    for series in SERIES:
        assert type(getattr(metrics, series.attr)) is series.kind, series.attr
    names = {family.name for family in text_string_to_metric_families(_raw(port))}
    missing = {s.name.removesuffix("_total") for s in SERIES} - names
    assert not missing


def _raw(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())
