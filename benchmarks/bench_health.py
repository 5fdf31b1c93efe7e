"""Health detection: time from an agent's death to Degraded in status, healthCheck.intervalSeconds 5.

Each resource runs ``sleep <unique number>`` agents with ``restartDeadAgents: false`` (so the
resource stays Degraded and the moment is unambiguous). Once all are Ready, one agent process of
each is SIGKILLed at a random moment within one interval (so kills land at every phase of the probe
cycle); the status is polled (one LIST a poll, 50 ms) until ``phase`` is Degraded.
Target: every detection <= interval + 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time
from pathlib import Path

from harness import Bed, emit, finish, p50, swarm


def find_agent(marker: str) -> int | None:
    """PID of the process whose argv is exactly ``sleep <marker>``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[0].endswith(b"sleep") and argv[1] == marker.encode():
            return int(entry.name)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 resources instead of 10")
    parser.add_argument("--count", type=int)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    count = args.count or (4 if args.quick else 10)
    rng = random.Random(args.seed)
    base = 7_000_000 + os.getpid() % 1000 * 1000
    names = [f"hc-{i:02d}" for i in range(count)]
    detections: dict[str, float] = {}
    with Bed() as bed:
        bed.start_operator()
        for i, name in enumerate(names):
            bed.create(
                swarm(
                    name,
                    agents=1,
                    agent={"command": "sleep", "args": [str(base + i)]},
                    healthCheck={"intervalSeconds": args.interval, "restartDeadAgents": False},
                )
            )
        bed.wait_ready(names, timeout=120)
        plan = sorted((rng.uniform(0, args.interval), name, str(base + i)) for i, name in enumerate(names))
        t0 = time.monotonic()
        killed: dict[str, float] = {}
        pending = list(plan)
        deadline = t0 + args.interval * 3 + 30
        while (pending or set(killed) - set(detections)) and time.monotonic() < deadline:
            now = time.monotonic()
            while pending and now - t0 >= pending[0][0]:
                _, name, marker = pending.pop(0)
                pid = find_agent(marker)
                if pid is None:
                    print(f"{name}: agent process 'sleep {marker}' not found", flush=True)
                    continue
                os.kill(pid, signal.SIGKILL)
                killed[name] = time.monotonic()
            objects = bed.all()
            stamp = time.monotonic()
            for name in set(killed) - set(detections):
                status = (objects.get(name) or {}).get("status") or {}
                if status.get("phase") == "Degraded":
                    detections[name] = stamp - killed[name]
                    print(f"{name}: Degraded {detections[name]:.2f}s after its agent was killed", flush=True)
            time.sleep(0.05)
        bed.stop_operator()
    values = list(detections.values())
    missed = sorted(set(names) - set(detections))
    target = args.interval + 1.0
    worst = max(values) if values else float("nan")
    print(
        f"\ndeath -> Degraded over {len(values)} kills: p50 {p50(values):.2f}s, max {worst:.2f}s "
        f"(target <= {target:.0f}s); not detected: {missed or 'none'}"
    )
    emit(
        "health",
        {
            "interval_s": args.interval,
            "count": count,
            "p50_s": round(p50(values), 2),
            "max_s": round(worst, 2),
            "missed": missed,
            "target_s": target,
            "ok": not missed and worst <= target,
        },
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        finish()
