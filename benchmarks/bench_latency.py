"""Latency: apply -> Ready p50/p99 over 30 resources (N=4) at 0 ms and 100 ms injected E2B latency,
then delete -> object gone p50.

Resources are applied one at a time (each waits for the previous one to be Ready), so the figure is
the latency one user feels, not queueing. The latency knob is the emulator's own: it delays every
E2B call (control plane and envd). Each resource's ``status.metrics.stepSeconds`` (create, init) is
read too, so the gap between what the operator spends in E2B and what the user waits is visible:
that gap is kopf + Kubernetes API overhead.
Targets at 0 ms: p50 < 0.5 s, p99 < 1.5 s; delete -> gone p50 < 1 s.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness import Bed, emit, finish, p50, percentile, swarm

TARGETS = {"ready_p50_s": 0.5, "ready_p99_s": 1.5, "delete_p50_s": 1.0}


def run_series(bed: Bed, label: str, count: int, agents: int) -> dict[str, Any]:
    ready: list[float] = []
    steps: dict[str, list[float]] = {}
    names = [f"lat-{label}-{i:02d}" for i in range(count)]
    for name in names:
        started = time.monotonic()
        bed.create(swarm(name, agents=agents))
        seen = bed.wait_ready([name], timeout=120, interval=0.02)
        ready.append(seen[name] - started)
        obj = bed.get(name) or {}
        for step, seconds in (
            ((obj.get("status") or {}).get("metrics") or {}).get("stepSeconds") or {}
        ).items():
            steps.setdefault(step, []).append(seconds)
    gone: list[float] = []
    for name in names:
        started = time.monotonic()
        bed.delete(name)
        seen = bed.wait_gone([name], timeout=120, interval=0.02)
        gone.append(seen[name] - started)
    e2b_s = [c + i for c, i in zip(steps.get("create", []), steps.get("init", []), strict=False)]
    overhead = [r - e for r, e in zip(ready, e2b_s, strict=False)]
    out = {
        "ready_p50_s": round(p50(ready), 3),
        "ready_p99_s": round(percentile(ready, 99), 3),
        "ready_max_s": round(max(ready), 3),
        "delete_p50_s": round(p50(gone), 3),
        "delete_p99_s": round(percentile(gone, 99), 3),
        "step_p50_s": {k: round(p50(v), 3) for k, v in sorted(steps.items())},
        "kopf_and_k8s_overhead_p50_s": round(p50(overhead), 3) if overhead else None,
    }
    print(
        f"[{label}] apply->Ready p50 {out['ready_p50_s']:.3f}s p99 {out['ready_p99_s']:.3f}s "
        f"max {out['ready_max_s']:.3f}s | delete->gone p50 {out['delete_p50_s']:.3f}s "
        f"p99 {out['delete_p99_s']:.3f}s",
        flush=True,
    )
    print(
        f"[{label}] operator step p50s {out['step_p50_s']}; apply->Ready minus (create+init) "
        f"p50 {out['kopf_and_k8s_overhead_p50_s']}s",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 resources per series instead of 30")
    parser.add_argument("--count", type=int)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--latencies", default="0,100", help="injected E2B latency per call, ms")
    args = parser.parse_args()
    count = args.count or (10 if args.quick else 30)
    results: dict[str, Any] = {}
    with Bed() as bed:
        bed.start_operator()
        for latency in [float(x) for x in args.latencies.split(",")]:
            bed.e2b.emulator.knobs.latency_ms = latency
            results[f"{latency:g}ms"] = run_series(bed, f"{latency:g}ms", count, args.agents)
        bed.stop_operator()
    zero = results.get("0ms")
    ok = None
    if zero:
        ok = (
            zero["ready_p50_s"] < TARGETS["ready_p50_s"]
            and zero["ready_p99_s"] < TARGETS["ready_p99_s"]
            and zero["delete_p50_s"] < TARGETS["delete_p50_s"]
        )
    emit(
        "latency",
        {"count": count, "agents": args.agents, "series": results, "targets_at_0ms": TARGETS, "ok": ok},
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        finish()
