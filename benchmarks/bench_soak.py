"""Soak: ``--count`` resources (default 1,100, E2B's largest plan; 1 agent each) applied at
``--rate`` per second, held Ready through a quiet window (``--quiet`` s, default 300), then deleted.

BENCHMARK-ONLY E2B MODE: the E2B emulator runs with ``canned_commands=True``
(``testbed/swarm_testbed/e2b/_light.py``): the operator's identity check, setup, probe and teardown
are answered with the report a healthy sandbox would print, and no command starts a process. Real
bash/tmux/agents for 1,100 sandboxes do not fit this 2-core machine; on E2B that work runs in the
sandboxes' own VMs. Everything the operator does — kopf, the Kubernetes API, the SDK's control-plane
and envd calls — is real and counted.

Prints: time to all Ready; operator RSS (VmHWM peak; VmRSS mean over the quiet window = idle) and
CPU; for the quiet window, requests/s to the Kubernetes API by verb and resource (Kubernetes
emulator's ``RequestCounter``, reset at the window's start; the bench makes no request during it)
and calls/s to E2B by operation (emulator ``Stats``), each also per 1,000 resources, against the
issue 19 budget: K8s <= 2 req/s per 1,000; E2B <= 1 probe per health interval + 1 renewal per lease
renewal period per resource; RSS <= 200 MiB + 50 MiB per 1,000; no write while nothing changes but
the spend refresh (``status.cost``, every ``SWARM_COST_REFRESH_MINUTES``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from harness import RESOURCE, Bed, cpu_seconds, emit, finish, machine, swarm

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
HEALTH_INTERVAL_S = 30  # the CRD's default spec.health.intervalSeconds
LEASE_RENEW_S = 120  # the operator's default SWARM_LEASE_RENEW_SECONDS
COST_REFRESH_S = 600  # the operator's default SWARM_COST_REFRESH_MINUTES (10)


def vm_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 resources at 20/s, 60 s quiet window")
    parser.add_argument("--count", type=int)
    parser.add_argument("--rate", type=float, help="applies per second (default 5; quick 20)")
    parser.add_argument("--quiet", type=float, help="quiet window, s (default 300; quick 60)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        help="extra SWARM_*=value for the operator (repeatable), for experiments",
    )
    args = parser.parse_args()
    count = args.count or (100 if args.quick else 1100)
    rate = args.rate or (20.0 if args.quick else 5.0)
    quiet = args.quiet or (60.0 if args.quick else 300.0)
    env = {
        # The bench's apply rate is the limit; the operator's own (30/min by default) is lifted.
        "SWARM_CREATIONS_PER_MINUTE": "100000",
        "SWARM_DELETE_GRACE_SECONDS": "1",
        **dict(kv.split("=", 1) for kv in args.operator_env),
    }
    names = [f"soak-{i:04d}" for i in range(count)]
    with Bed(operator_env=env, e2b_knobs={"canned_commands": True}) as bed:
        proc = bed.start_operator()
        pid = proc.pid
        if env.get("BENCH_PROFILE") == "tracemalloc":  # profiled_operator.py: trace from now on
            os.kill(pid, signal.SIGUSR2)
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                value = vm_rss_mib(pid)
                if value is not None:
                    rss.append((time.monotonic(), value))

        threading.Thread(target=sample, daemon=True).start()
        rss_start = vm_rss_mib(pid)
        cpu0 = cpu_seconds(pid) or 0.0
        load0 = os.getloadavg()
        started = time.monotonic()

        def apply(item: tuple[int, str]) -> None:
            i, name = item
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            bed.create(swarm(name, agents=1))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(apply, enumerate(names)))
        applied_s = time.monotonic() - started
        print(f"applied {count} at {rate:g}/s in {applied_s:.1f}s", flush=True)
        seen = bed.wait_ready(names, timeout=args.timeout, interval=1.0)
        all_ready_s = max(seen.values()) - started
        cpu_ready = (cpu_seconds(pid) or 0.0) - cpu0
        print(
            f"all {count} Ready {all_ready_s:.1f}s after the first apply (operator CPU {cpu_ready:.1f}s, "
            f"load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f})",
            flush=True,
        )

        # ---- quiet window: the bench makes no request; counters reset at its start.
        time.sleep(5.0)
        bed.counter.reset()
        bed.e2b_reset_stats()
        cpu_q0 = cpu_seconds(pid) or 0.0
        load_q0 = os.getloadavg()
        q0 = time.monotonic()
        time.sleep(quiet)
        window = time.monotonic() - q0
        k8s = dict(bed.counter.snapshot())
        e2b = bed.e2b_stats()
        if env.get("BENCH_PROFILE"):  # profiled_operator.py: dump what the window ended with
            os.kill(pid, signal.SIGUSR1)
            dump = Path(f"{env.get('BENCH_PROFILE_OUT', '/tmp/swarm-profile')}.0.txt")
            deadline = time.monotonic() + 180
            while not dump.exists() and time.monotonic() < deadline:
                time.sleep(1.0)
            time.sleep(2.0)
        cpu_quiet = (cpu_seconds(pid) or 0.0) - cpu_q0
        load_q1 = os.getloadavg()
        idle_samples = [v for t, v in rss if q0 <= t <= q0 + window]
        rss_idle = sum(idle_samples) / len(idle_samples) if idle_samples else float("nan")
        still_ready = sum(1 for o in bed.all().values() if o.get("status", {}).get("phase") == "Ready")
        per_k = 1000 / count
        k8s_rates = {k: v / window for k, v in sorted(k8s.items())}
        k8s_total = sum(k8s_rates.values())
        quiet_writes = {k: v for k, v in k8s.items() if k.split(" ", 1)[0] in WRITE_VERBS}
        e2b_rates = {k: v / window for k, v in sorted(e2b["operations"].items())}
        e2b_total = sum(e2b_rates.values())
        e2b_budget = count * (1 / HEALTH_INTERVAL_S + 1 / LEASE_RENEW_S)
        print(f"quiet window {window:.0f}s, {still_ready}/{count} still Ready at its end", flush=True)
        print(
            f"  Kubernetes API: {k8s_total:.2f} req/s = {k8s_total * per_k:.2f} per 1,000 resources "
            f"(budget 2.00); writes in the window: {quiet_writes}",
            flush=True,
        )
        for key, value in k8s_rates.items():
            print(f"    {key:<55} {value:8.3f}/s  {value * per_k:8.3f}/s per 1,000", flush=True)
        print(
            f"  E2B: {e2b_total:.2f} calls/s = {e2b_total * per_k:.2f} per 1,000 (budget "
            f"{e2b_budget * per_k:.2f} per 1,000: 1 probe/{HEALTH_INTERVAL_S}s + 1 renewal/{LEASE_RENEW_S}s "
            "per resource)",
            flush=True,
        )
        for key, value in e2b_rates.items():
            print(f"    {key:<55} {value:8.3f}/s  {value * per_k:8.3f}/s per 1,000", flush=True)
        print(
            f"  operator CPU {cpu_quiet:.1f}s over {window:.0f}s ({cpu_quiet / window:.1%} of one core); "
            f"RSS idle (mean VmRSS) {rss_idle:.1f} MiB; load average {load_q0[0]:.2f} -> {load_q1[0]:.2f}",
            flush=True,
        )

        # ---- delete all
        cpu_d0 = cpu_seconds(pid) or 0.0
        deleting = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(bed.delete, names))
        gone = bed.wait_gone(names, timeout=args.timeout, interval=1.0)
        all_gone_s = max(gone.values()) - deleting
        cpu_delete = (cpu_seconds(pid) or 0.0) - cpu_d0
        wait_until = time.monotonic() + 30
        while bed.alive_sandboxes() and time.monotonic() < wait_until:
            time.sleep(0.5)
        leaked = len(bed.alive_sandboxes())
        peak = bed.operator_hwm_mib() or 0.0
        stop.set()
        print(
            f"all {count} gone {all_gone_s:.1f}s after the first delete (operator CPU {cpu_delete:.1f}s); "
            f"sandboxes left alive: {leaked}; operator peak RSS (VmHWM) {peak:.1f} MiB, at start "
            f"{rss_start or 0:.1f} MiB",
            flush=True,
        )
        bed.stop_operator()

    rss_budget = 200 + 50 * count / 1000
    k8s_per_k = k8s_total * per_k
    e2b_ok = e2b_total <= e2b_budget * 1.02  # 2 %: a window edge may catch one extra cycle
    # The counter does not see patch bodies: a status patch may be the spend refresh, and at most one
    # per resource per refresh period is (10 % slack for window edges). More status patches, or any
    # other write, are writes while nothing changed.
    spend_refresh_max = 1.1 * count * window / COST_REFRESH_S
    status_patches = quiet_writes.get(f"patch {RESOURCE}/status", 0)
    nonspend_writes = {k: v for k, v in quiet_writes.items() if k != f"patch {RESOURCE}/status"}
    if status_patches > spend_refresh_max:
        nonspend_writes[f"patch {RESOURCE}/status beyond the spend refresh"] = round(
            status_patches - count * window / COST_REFRESH_S
        )
    summary: dict[str, Any] = {
        "count": count,
        "rate_per_s": rate,
        "operator_env": env,
        "quiet_window_s": round(window, 1),
        "e2b_mode": "canned_commands (benchmark-only: no process started in sandboxes)",
        "all_ready_s": round(all_ready_s, 1),
        "all_gone_s": round(all_gone_s, 1),
        "leaked": leaked,
        "still_ready_after_window": still_ready,
        "operator_cpu_s": {
            "to_ready": round(cpu_ready, 1),
            "quiet": round(cpu_quiet, 1),
            "delete": round(cpu_delete, 1),
        },
        "operator_quiet_cpu_share_of_one_core": round(cpu_quiet / window, 3),
        "rss_mib": {
            "start": round(rss_start or 0, 1),
            "idle_mean": round(rss_idle, 1),
            "peak_vmhwm": round(peak, 1),
        },
        "rss_budget_mib": rss_budget,
        "k8s_req_per_s": round(k8s_total, 3),
        "k8s_req_per_s_per_1000": round(k8s_per_k, 3),
        "k8s_per_s_per_1000_by_kind": {k: round(v * per_k, 3) for k, v in k8s_rates.items()},
        "k8s_writes_in_window": quiet_writes,
        "k8s_writes_in_window_not_spend_refresh": nonspend_writes,
        "e2b_calls_per_s": round(e2b_total, 3),
        "e2b_calls_per_s_per_1000": round(e2b_total * per_k, 3),
        "e2b_per_s_per_1000_by_operation": {k: round(v * per_k, 3) for k, v in e2b_rates.items()},
        "e2b_budget_per_s_per_1000": round(e2b_budget * per_k, 3),
        "loadavg": {
            "start": round(load0[0], 2),
            "quiet_start": round(load_q0[0], 2),
            "quiet_end": round(load_q1[0], 2),
        },
        "machine": machine(),
        "targets_met": {
            "k8s_le_2_per_1000": k8s_per_k <= 2.0,
            "e2b_within_probe_plus_renewal": e2b_ok,
            "rss_within_budget": peak <= rss_budget,
            "no_writes_but_spend_refresh": not nonspend_writes,
        },
    }
    summary["ok"] = all(summary["targets_met"].values()) and leaked == 0 and still_ready == count
    emit("soak", summary)


if __name__ == "__main__":
    code = 0
    try:
        main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # finish() leaves with os._exit: print what went wrong first
        traceback.print_exc()
        code = 1
    finally:
        finish(code)
