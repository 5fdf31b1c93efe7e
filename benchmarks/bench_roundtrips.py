"""Round trips: E2B calls (control plane + envd) from "sandbox created" to Ready, for N = 1, 4, 16 agents.

Resources are applied one at a time; the emulator's per-operation stats are reset before each apply
and read once it is Ready, so every call is attributed to exactly one resource. "After create" is
every call except the adopt-or-create ``sandbox.list`` and the ``sandbox.create`` itself.
Target: at most 3, the same for every N.
"""

from __future__ import annotations

import argparse
import time

from harness import Bed, emit, finish, swarm

TARGET = 3
IGNORED_BEFORE_CREATE = ("sandbox.list", "sandbox.create")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 resource per N instead of 3")
    parser.add_argument("--agents", default="1,4,16")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    sizes = [int(n) for n in args.agents.split(",")]
    results: dict[str, dict[str, object]] = {}
    with Bed() as bed:
        bed.start_operator()
        for n in sizes:
            per_resource = []
            ops_seen: dict[str, int] = {}
            for i in range(repeats):
                name = f"rt-{n}-{i}"
                bed.e2b_reset_stats()
                started = time.monotonic()
                bed.create(swarm(name, agents=n))
                bed.wait_ready([name], timeout=120)
                elapsed = time.monotonic() - started
                stats = bed.e2b_stats()
                ops = stats["operations"]
                after = sum(v for k, v in ops.items() if k not in IGNORED_BEFORE_CREATE)
                per_resource.append(after)
                ops_seen = ops
                print(
                    f"N={n:<3} {name:<10} ready in {elapsed:5.2f}s  calls after create: {after}  "
                    f"all calls: {stats['total']}  {ops}",
                    flush=True,
                )
            results[str(n)] = {"after_create": per_resource, "operations": ops_seen}
        bed.stop_operator()
    worst = max(max(r["after_create"]) for r in results.values())  # type: ignore[arg-type]
    same = len({tuple(r["after_create"]) for r in results.values()}) == 1  # type: ignore[arg-type]
    print(f"\nround trips after create: worst {worst} (target <= {TARGET}); same for every N: {same}")
    emit(
        "roundtrips",
        {
            "after_create_by_n": {n: r["after_create"] for n, r in results.items()},
            "operations_by_n": {n: r["operations"] for n, r in results.items()},
            "worst": worst,
            "same_for_every_n": same,
            "target": TARGET,
            "ok": worst <= TARGET and same,
        },
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        finish()
