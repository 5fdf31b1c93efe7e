"""Shared bench harness: both emulators in threads of this process, the real operator as a subprocess.

Mirrors ``tests/e2e/conftest.py`` (same emulators, same env-only configuration of the operator), with
what benchmarks need on top:

* ``CreateLatencyE2B``: the emulator's ``latency_ms`` knob delays *every* call; the scale benchmark
  wants latency on ``sandbox.create`` only, so this subclass adds ``create_latency_ms`` in the same
  place the knob is applied (``_misbehave``), for that one operation.
* cheap observation: one LIST of all SwarmSandboxes per poll (never one GET per object), so the
  bench's own reads stay small next to the operator's traffic; Kubernetes writes come from the
  emulator's ``RequestCounter`` (no request log), E2B calls from the emulator's ``Stats``.
* operator peak RSS (``VmHWM`` in /proc/PID/status), SIGKILL + restart for chaos.

Everything listens on 127.0.0.1 only. Scripts print figures and end with one ``JSON: {...}`` line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "testbed"))

import kubernetes  # noqa: E402

from swarm_operator._crd import package_path  # noqa: E402
from swarm_testbed.e2b._server import E2BEmulator  # noqa: E402
from swarm_testbed.kube._server import KubeEmulatorServer  # noqa: E402
from swarm_testbed.kube.pytest_plugin import kube_api_client  # noqa: E402

# A SIGKILLed operator leaves half-written requests; aiohttp would print each one's traceback.
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

GROUP, VERSION, PLURAL = "claudeswarm.io", "v1alpha1", "swarmsandboxes"
RESOURCE = f"{PLURAL}.{GROUP}"
OPERATOR_NAMESPACE = "swarm-system"
API_KEY = "e2b_" + "0123456789abcdef" * 2 + "01234567"
FIXTURE_BIN = REPO / "tests" / "fixtures" / "bin"


class CreateLatencyE2B(E2BEmulator):
    """The E2B emulator with an extra delay on ``sandbox.create`` only (``create_latency_ms``)."""

    def __init__(self, *, create_latency_ms: float = 0.0, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.create_latency_ms = create_latency_ms

    async def _misbehave(self, request: Any, operation: str) -> Any:
        if operation == "sandbox.create" and self.create_latency_ms > 0:
            await asyncio.sleep(self.create_latency_ms / 1000)
        return await super()._misbehave(request, operation)


def swarm(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A SwarmSandbox with a light agent (``sleep``) and no coordinator, as the e2e tests use."""
    spec.setdefault("agents", 2)
    spec.setdefault("agent", {"command": "sleep", "args": ["100000"]})
    spec.setdefault("coordinator", {"enabled": False})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SwarmSandbox",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    except OSError:
        pass
    return f"{model}{cpus} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def emit(name: str, summary: dict[str, Any]) -> None:
    """The one-line JSON summary every benchmark ends with."""
    print("JSON: " + json.dumps({"benchmark": name, **summary}, sort_keys=True, default=str), flush=True)


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}; last: {last!r}"[:2000])


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set (VmHWM) of a live process, KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (from /proc/PID/stat), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def is_ready(obj: dict[str, Any]) -> bool:
    cond = condition(obj, "Ready")
    return bool(cond and cond["status"] == "True")


class Bed:
    """Kubernetes + E2B emulators (threads) and the operator (subprocess). Use as a context manager."""

    def __init__(
        self,
        *,
        e2b_knobs: dict[str, Any] | None = None,
        create_latency_ms: float = 0.0,
        operator_env: dict[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="swarm-bench-"))
        self.e2b_knobs = dict(e2b_knobs or {})
        self.create_latency_ms = create_latency_ms
        self.operator_env = dict(operator_env or {})
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kube: Any = None
        self.e2b: Any = None

    # ----- set-up / tear-down --------------------------------------------------------------------
    def __enter__(self) -> Bed:
        self.kube = KubeEmulatorServer.start_in_thread(
            crd_dirs=[package_path().parent], kubeconfig=self.tmp / "kubeconfig"
        )
        self.api = kube_api_client(self.kube)
        # Room for concurrent creates/deletes from a thread pool.
        self.api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        home = self.tmp / "sandbox-home"
        (home / ".local" / "bin").mkdir(parents=True)
        (home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')
        for tool in FIXTURE_BIN.iterdir():
            (home / ".local" / "bin" / tool.name).symlink_to(tool.resolve())
        self.e2b = CreateLatencyE2B.start_in_thread(
            create_latency_ms=self.create_latency_ms,
            home_template=home,
            workdir=self.tmp,
            # a prebuilt template (host tools), identity at once: the operator's path, not provisioning
            **{"stock_templates": False, "identity_delay_seconds": 0, **self.e2b_knobs},
        )
        self.core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
        self.core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            {"metadata": {"name": "e2b-api-key"}, "stringData": {"api-key": API_KEY}, "type": "Opaque"},
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_operator()
        try:
            self.e2b.stop()
        finally:
            self.kube.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ----- the operator --------------------------------------------------------------------------
    def start_operator(self, **settings: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
        env.update(
            {
                "KUBECONFIG": str(self.kube.kubeconfig),
                "E2B_API_URL": self.e2b.url,
                "E2B_SANDBOX_URL": self.e2b.url,
                "SWARM_NAMESPACE": OPERATOR_NAMESPACE,
                "SWARM_OPERATOR_ID": "bench",
                "SWARM_LOG_FORMAT": "json",
                "SWARM_LOG_LEVEL": self.log_level,
                "SWARM_METRICS_PORT": "0",
                # Every benchmark swarm lives in `default`: the per-namespace cap (20) is not measured.
                "SWARM_MAX_SANDBOXES_PER_NAMESPACE": "100000",
                "PYTHONPATH": str(REPO / "operator"),
            }
        )
        env.update(self.operator_env)
        env.update(settings)
        self.log_path = self.tmp / f"operator-{self.starts}.log"
        self.starts += 1
        with self.log_path.open("wb") as log:
            # BENCH_PROFILE: the same operator under an in-process profiler (SIGUSR1 dumps).
            profiled = [str(Path(__file__).resolve().parent / "profiled_operator.py")]
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *(profiled if env.get("BENCH_PROFILE") else ["-m", "swarm_operator"]),
                    "run",
                    "--standalone",
                    "--all-namespaces",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        proc = self.proc
        slow = 240 if env.get("BENCH_PROFILE") else 60  # tracemalloc slows the imports a lot
        wait_for(
            lambda: "started" in self.log() or proc.poll() is not None, slow, message="operator start-up"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited at start:\n{self.log()[-4000:]}")
        return proc

    def start_reference(self, **env_extra: str) -> subprocess.Popen[bytes]:
        """The plain kopf reference operator (``reference_operator.py``) instead of ours: same
        emulators, same namespace watch; its E2B key comes from the environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
        env.update(
            {
                "KUBECONFIG": str(self.kube.kubeconfig),
                "E2B_API_URL": self.e2b.url,
                "E2B_SANDBOX_URL": self.e2b.url,
                "E2B_API_KEY": API_KEY,
                **env_extra,
            }
        )
        self.log_path = self.tmp / f"reference-{self.starts}.log"
        self.starts += 1
        script = Path(__file__).resolve().parent / "reference_operator.py"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(script)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        proc = self.proc
        wait_for(
            lambda: "'configure' succeeded" in self.log() or proc.poll() is not None,
            60,
            message="reference operator start-up",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"reference operator exited at start:\n{self.log()[-4000:]}")
        time.sleep(1.0)  # kopf starts its watch stream just after the startup activities
        return proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_operator(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop_operator(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def operator_hwm_mib(self) -> float | None:
        kib = vm_hwm_kib(self.proc.pid) if self.proc else None
        return None if kib is None else kib / 1024

    # ----- resources -----------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> None:
        ns = body["metadata"].get("namespace", "default")
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def delete(self, name: str, namespace: str = "default") -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    def get(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def all(self, namespace: str = "default") -> dict[str, dict[str, Any]]:
        page = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return {item["metadata"]["name"]: item for item in page.get("items", [])}

    def wait_ready(
        self, names: Iterable[str], timeout: float, interval: float = 0.05, namespace: str = "default"
    ) -> dict[str, float]:
        """Poll (one LIST a poll) until every name is Ready; returns monotonic time each was seen Ready."""
        waiting = set(names)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{len(waiting)} not Ready after {timeout:.0f}s: {sorted(waiting)[:5]}")
            objects = self.all(namespace)
            stamp = time.monotonic()
            for name in list(waiting):
                obj = objects.get(name)
                if obj is not None and is_ready(obj):
                    seen[name] = stamp
                    waiting.discard(name)
            if waiting:
                time.sleep(interval)
        return seen

    def wait_gone(
        self, names: Iterable[str], timeout: float, interval: float = 0.05, namespace: str = "default"
    ) -> dict[str, float]:
        waiting = set(names)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} not gone after {timeout:.0f}s: {sorted(waiting)[:5]}")
            present = set(self.all(namespace))
            stamp = time.monotonic()
            for name in list(waiting - present):
                seen[name] = stamp
                waiting.discard(name)
            if waiting:
                time.sleep(interval)
        return seen

    # ----- counters ------------------------------------------------------------------------------
    def e2b_stats(self) -> dict[str, Any]:
        return self.e2b.emulator.stats.snapshot()

    def e2b_reset_stats(self) -> None:
        self.e2b.emulator.stats.reset()

    def alive_sandboxes(self) -> list[dict[str, Any]]:
        return [s for s in self.e2b.inspect() if s["alive"]]

    @property
    def counter(self) -> Any:
        return self.kube.emulator.counter


def finish(code: int = 0) -> None:
    """Leave without waiting on daemon threads' interpreter-exit teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
