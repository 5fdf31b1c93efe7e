"""Side by side: our operator against a deliberately plain kopf operator (``reference_operator.py``:
create, one setup run, status, finalizer — nothing else), in the same run, on the same emulators.

For each operator, on a fresh bed (its own emulators, so counters do not mix):

* latency: ``--count`` resources (N=4 agents) applied one at a time, each waited Ready before the
  next: apply->Ready p50/p99; then each deleted and waited gone.
* writes per lifecycle: the Kubernetes emulator's request counter over that whole series
  (create -> Ready -> delete), minus the bench's own create and delete of each object, divided by
  ``--count``; no-op patches (a PATCH whose body changed nothing) are not told apart by the counter.
* burst: ``--burst`` resources applied at once (8 bench threads), creation limits lifted
  (ours: ``SWARM_CREATIONS_PER_MINUTE=100000``; the reference has none): time from the first apply to
  all Ready, then all deleted.

Targets (issue 19): burst no slower than the reference; p50 within 1.5x of it; <= 4 writes per
lifecycle. ``--py-spy PATH`` records our operator during the burst (speedscope JSON).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness import RESOURCE, Bed, cpu_seconds, emit, finish, machine, machine_cpu, p50, percentile, swarm

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
TARGETS = {"burst_ratio_max": 1.0, "p50_ratio_max": 1.5, "writes_per_lifecycle_max": 4}


def writes(snapshot: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in snapshot.items() if k.split(" ", 1)[0] in WRITE_VERBS}


def operator_writes(snapshot: dict[str, int]) -> dict[str, int]:
    """Writes minus the bench's own create and delete of each SwarmSandbox."""
    out = writes(snapshot)
    out.pop(f"create {RESOURCE}", None)
    out.pop(f"delete {RESOURCE}", None)
    return out


def spy(pid: int, path: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not installed: no profile", flush=True)
        return None
    return subprocess.Popen(
        [exe, "record", "--nonblocking", "-r", "100", "-f", "speedscope", "-o", path, "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _dump(pid: int, args: argparse.Namespace, which: str) -> None:
    if args.profile and which == "ours":
        os.kill(pid, signal.SIGUSR1)
        time.sleep(3.0)


def measure(which: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {"SWARM_CREATIONS_PER_MINUTE": "100000", "SWARM_DELETE_GRACE_SECONDS": "1"}
    if args.profile and which == "ours":  # benchmarks/profiled_operator.py, dumped on SIGUSR1
        env |= {"BENCH_PROFILE": args.profile, "BENCH_PROFILE_OUT": args.profile_out}
    with Bed(operator_env=env) as bed:
        proc = bed.start_operator() if which == "ours" else bed.start_reference()
        # --- latency, one at a time, and writes per lifecycle over the same series
        bed.counter.reset()
        ready: list[float] = []
        steps: dict[str, list[float]] = {}
        names = [f"ref-{which}-lat-{i:03d}" for i in range(args.count)]
        for name in names:
            started = time.monotonic()
            bed.create(swarm(name, agents=args.agents))
            seen = bed.wait_ready([name], timeout=120, interval=0.02)
            ready.append(seen[name] - started)
            for step, seconds in (
                (((bed.get(name) or {}).get("status") or {}).get("metrics") or {}).get("stepSeconds") or {}
            ).items():
                steps.setdefault(step, []).append(seconds)
        gone: list[float] = []
        for name in names:
            started = time.monotonic()
            bed.delete(name)
            seen = bed.wait_gone([name], timeout=120, interval=0.02)
            gone.append(seen[name] - started)
        time.sleep(1.0)  # let trailing writes (finalizer removal) land before the counter is read
        ops = operator_writes(bed.counter.snapshot())
        _dump(proc.pid, args, which)  # profile 0: the one-at-a-time series (creates and deletes)
        out["ready_p50_s"] = round(p50(ready), 3)
        out["ready_p99_s"] = round(percentile(ready, 99), 3)
        out["delete_p50_s"] = round(p50(gone), 3)
        out["step_p50_s"] = {k: round(p50(v), 3) for k, v in sorted(steps.items())}
        out["writes_per_lifecycle"] = round(sum(ops.values()) / args.count, 2)
        out["writes_by_kind_per_lifecycle"] = {k: round(v / args.count, 2) for k, v in sorted(ops.items())}
        print(
            f"[{which}] N={args.agents}, {args.count} one at a time: apply->Ready p50 {out['ready_p50_s']}s "
            f"p99 {out['ready_p99_s']}s; delete->gone p50 {out['delete_p50_s']}s; operator writes per "
            f"lifecycle {out['writes_per_lifecycle']} {out['writes_by_kind_per_lifecycle']}; operator's "
            f"own step p50s (status.metrics.stepSeconds) {out['step_p50_s']}",
            flush=True,
        )
        # --- burst
        burst = [f"ref-{which}-burst-{i:03d}" for i in range(args.burst)]
        recorder = spy(proc.pid, args.py_spy) if (args.py_spy and which == "ours") else None
        if recorder is not None:
            time.sleep(1.0)
        cpu0 = cpu_seconds(proc.pid) or 0.0
        busy0, total0 = machine_cpu()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: bed.create(swarm(n, agents=args.agents)), burst))
        seen = bed.wait_ready(burst, timeout=args.timeout, interval=0.1)
        out["burst_all_ready_s"] = round(max(seen.values()) - started, 2)
        busy1, total1 = machine_cpu()
        out["burst_operator_cpu_s"] = round((cpu_seconds(proc.pid) or 0.0) - cpu0, 1)
        out["burst_machine_busy"] = round((busy1 - busy0) / max(total1 - total0, 1e-9), 2)
        if recorder is not None:
            recorder.terminate()
            recorder.wait(60)
        _dump(proc.pid, args, which)  # profile 1: the burst
        print(
            f"[{which}] burst {args.burst} at once (N={args.agents}): all Ready {out['burst_all_ready_s']}s; "
            f"operator CPU {out['burst_operator_cpu_s']}s; machine busy {out['burst_machine_busy']:.0%}",
            flush=True,
        )
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(bed.delete, burst))
        bed.wait_gone(burst, timeout=args.timeout, interval=0.25)
        bed.stop_operator()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 one at a time and a burst of 30")
    parser.add_argument("--count", type=int)
    parser.add_argument("--burst", type=int)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--py-spy", metavar="PATH", help="record our operator during the burst")
    parser.add_argument(
        "--profile",
        choices=["cprofile", "tracemalloc"],
        help="run ours under benchmarks/profiled_operator.py (timings then include its overhead)",
    )
    parser.add_argument("--profile-out", default="/tmp/swarm-profile", help="path prefix of the dumps")
    args = parser.parse_args()
    args.count = args.count or (8 if args.quick else 20)
    args.burst = args.burst or (30 if args.quick else 100)
    load_before = os.getloadavg()
    results = {which: measure(which, args) for which in ("reference", "ours")}
    ref, ours = results["reference"], results["ours"]
    ratios = {
        "p50": round(ours["ready_p50_s"] / ref["ready_p50_s"], 2),
        "p99": round(ours["ready_p99_s"] / ref["ready_p99_s"], 2),
        "burst": round(ours["burst_all_ready_s"] / ref["burst_all_ready_s"], 2),
    }
    print(
        f"ours / reference: p50 x{ratios['p50']} (target <= {TARGETS['p50_ratio_max']}), p99 x{ratios['p99']}, "
        f"burst x{ratios['burst']} (target <= {TARGETS['burst_ratio_max']}); writes per lifecycle "
        f"{ours['writes_per_lifecycle']} vs {ref['writes_per_lifecycle']} (target <= "
        f"{TARGETS['writes_per_lifecycle_max']}); load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    emit(
        "reference",
        {
            "count": args.count,
            "burst": args.burst,
            "agents": args.agents,
            "reference": ref,
            "ours": ours,
            "ratios": ratios,
            "targets": TARGETS,
            "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "machine": machine(),
            "ok": ratios["burst"] <= TARGETS["burst_ratio_max"]
            and ratios["p50"] <= TARGETS["p50_ratio_max"]
            and ours["writes_per_lifecycle"] <= TARGETS["writes_per_lifecycle_max"],
        },
    )


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
