"""Scale: 200 resources applied at once (2 agents each, agent ``sleep``), 300 ms injected latency on
sandbox creation, creation rate limit raised.

Prints: time from the first apply until all are Ready (target < 20 s), operator peak RSS from
/proc/PID/status VmHWM (target < 250 MB), Kubernetes API writes per resource over
create -> Ready -> delete from the Kubernetes emulator's request counter (target <= 6; the bench's
own create and delete of each object are reported and subtracted), E2B calls per resource.

Create-only latency: the emulator's ``latency_ms`` knob delays every call; this bench uses the
harness's ``CreateLatencyE2B`` which sleeps ``--create-latency-ms`` in ``sandbox.create`` only (the
same place the knob applies). ``--all-latency-ms`` adds the emulator's own knob on top.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import threading
import time

from harness import RESOURCE, Bed, cpu_seconds, emit, finish, machine, machine_cpu, p50, percentile, swarm

TARGETS = {"all_ready_s": 20.0, "peak_rss_mb": 250.0, "k8s_writes_per_resource": 6.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 resources instead of 200")
    parser.add_argument("--count", type=int)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--create-latency-ms", type=float, default=300.0)
    parser.add_argument("--all-latency-ms", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this many s")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="record the operator with py-spy (if installed) into PATH (speedscope JSON)",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        help="extra SWARM_*=value for the operator (repeatable), for experiments",
    )
    args = parser.parse_args()
    count = args.count or (50 if args.quick else 200)
    env = {
        "SWARM_CREATIONS_PER_MINUTE": "100000",
        "SWARM_DELETE_GRACE_SECONDS": "1",
        **dict(kv.split("=", 1) for kv in args.operator_env),
    }
    names = [f"scale-{i:03d}" for i in range(count)]
    with Bed(
        create_latency_ms=args.create_latency_ms,
        e2b_knobs={"latency_ms": args.all_latency_ms},
        operator_env=env,
    ) as bed:
        proc = bed.start_operator()
        rss_samples: list[float] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(0.5):
                hwm = bed.operator_hwm_mib()
                if hwm is not None:
                    rss_samples.append(hwm)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        idle_rss = bed.operator_hwm_mib()
        spy = None
        if args.py_spy:
            import shutil
            import subprocess
            import sys
            from pathlib import Path

            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--nonblocking",
                    "-r",
                    "50",
                    "-f",
                    "speedscope",
                    "-o",
                    args.py_spy,
                    "-p",
                    str(proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        cpu_before = cpu_seconds(proc.pid) or 0.0
        bench_cpu_before = cpu_seconds(os.getpid()) or 0.0
        busy_before, total_before = machine_cpu()
        bed.counter.reset()
        bed.e2b_reset_stats()
        started = time.monotonic()
        applied: dict[str, float] = {}

        def apply(name: str) -> None:
            bed.create(swarm(name, agents=args.agents))
            applied[name] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(apply, names))
        apply_s = time.monotonic() - started
        print(f"applied {count} resources in {apply_s:.2f}s", flush=True)
        seen = bed.wait_ready(names, timeout=args.timeout, interval=0.25)
        all_ready_s = max(seen.values()) - started
        per_resource = [seen[n] - applied[n] for n in names]
        ready_writes = bed.counter.snapshot()
        print(
            f"all {count} Ready {all_ready_s:.2f}s after the first apply "
            f"(per resource apply->Ready p50 {p50(per_resource):.2f}s p99 {percentile(per_resource, 99):.2f}s)",
            flush=True,
        )
        e2b_at_ready = bed.e2b_stats()
        operator_cpu_ready = (cpu_seconds(proc.pid) or 0.0) - cpu_before
        bench_cpu_ready = (cpu_seconds(os.getpid()) or 0.0) - bench_cpu_before
        busy_after, total_after = machine_cpu()
        machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
        print(
            f"CPU used until all Ready: operator {operator_cpu_ready:.1f}s, emulators (this process) "
            f"{bench_cpu_ready:.1f}s, whole machine busy {machine_busy:.0%} (sandboxes' bash/tmux are the "
            f"rest), over {all_ready_s:.1f}s wall on {os.cpu_count()} cores",
            flush=True,
        )
        if spy is not None:
            spy.terminate()
            spy.wait(30)
        deleting = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(bed.delete, names))
        gone = bed.wait_gone(names, timeout=args.timeout, interval=0.25)
        all_gone_s = max(gone.values()) - deleting
        print(f"all {count} deleted and gone {all_gone_s:.2f}s after the first delete", flush=True)
        wait_until = time.monotonic() + 30
        while bed.alive_sandboxes() and time.monotonic() < wait_until:
            time.sleep(0.5)
        leaked = len(bed.alive_sandboxes())
        stop_sampling.set()
        peak = bed.operator_hwm_mib() or max(rss_samples, default=0.0)
        snapshot = bed.counter.snapshot()
        e2b = bed.e2b_stats()
        bed.stop_operator()
        assert proc.returncode is not None

    writes_by_kind = {
        k: v
        for k, v in snapshot.items()
        if k.split(" ", 1)[0] in {"create", "update", "patch", "delete", "deletecollection"}
    }
    total_writes = sum(writes_by_kind.values())
    bench_writes = snapshot.get(f"create {RESOURCE}", 0) + snapshot.get(f"delete {RESOURCE}", 0)
    operator_writes = total_writes - bench_writes
    ready_operator_writes = sum(
        v for k, v in ready_writes.items() if k.split(" ", 1)[0] in {"create", "update", "patch", "delete"}
    ) - ready_writes.get(f"create {RESOURCE}", 0)
    print(
        f"Kubernetes writes: {total_writes} total = {bench_writes} by the bench (create+delete) + "
        f"{operator_writes} by the operator -> {operator_writes / count:.2f} per resource "
        f"(create->Ready only: {ready_operator_writes / count:.2f}); all writes incl. the bench's "
        f"{total_writes / count:.2f} per resource"
    )
    for key, value in sorted(writes_by_kind.items()):
        print(f"    {key:<55} {value:>6}  ({value / count:.2f}/resource)")
    reads = {k: v for k, v in snapshot.items() if k not in writes_by_kind}
    print(f"Kubernetes reads (bench polling included): {reads}")
    print(
        f"E2B calls: {e2b['total']} -> {e2b['total'] / count:.2f} per resource; by operation "
        f"{e2b['operations']}; at Ready: {e2b_at_ready['total'] / count:.2f} per resource"
    )
    print(
        f"operator peak RSS (VmHWM) {peak:.1f} MiB (idle at start {idle_rss or 0:.1f} MiB); "
        f"sandboxes left alive after delete: {leaked}"
    )
    summary = {
        "count": count,
        "agents": args.agents,
        "create_latency_ms": args.create_latency_ms,
        "all_latency_ms": args.all_latency_ms,
        "apply_s": round(apply_s, 2),
        "all_ready_s": round(all_ready_s, 2),
        "apply_to_ready_p50_s": round(p50(per_resource), 2),
        "apply_to_ready_p99_s": round(percentile(per_resource, 99), 2),
        "all_gone_s": round(all_gone_s, 2),
        "peak_rss_mb": round(peak * 1.048576, 1),
        "peak_rss_mib": round(peak, 1),
        "k8s_writes_per_resource_operator": round(operator_writes / count, 2),
        "k8s_writes_per_resource_incl_bench": round(total_writes / count, 2),
        "k8s_writes_by_kind": writes_by_kind,
        "e2b_calls_per_resource": round(e2b["total"] / count, 2),
        "e2b_operations": e2b["operations"],
        "operator_cpu_s_to_ready": round(operator_cpu_ready, 1),
        "bench_process_cpu_s_to_ready": round(bench_cpu_ready, 1),
        "machine_busy_to_ready": round(machine_busy, 2),
        "leaked_after_delete": leaked,
        "operator_env": env,
        "machine": machine(),
        "targets": TARGETS,
    }
    summary["ok"] = (
        all_ready_s < TARGETS["all_ready_s"]
        and summary["peak_rss_mb"] < TARGETS["peak_rss_mb"]
        and operator_writes / count <= TARGETS["k8s_writes_per_resource"]
        and leaked == 0
    )
    emit("scale", summary)


if __name__ == "__main__":
    try:
        main()
    finally:
        finish()
