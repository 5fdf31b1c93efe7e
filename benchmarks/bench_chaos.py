"""Cost safety: the operator SIGKILLed 50 times at random moments over ~20 resources, with creates and
deletes in flight, restarted after each kill (the pattern of tests/e2e/test_resilience.py's chaos test,
run longer and with churn).

Each round applies 1-2 new resources (refilling towards 20 live), from the 4th round on deletes
0-2 random live ones (so creates and deletes are always in flight), sleeps 0.05-1.2 s and SIGKILLs the operator.
The orphan sweeper is switched off (interval 1 h) and the lease is long (600 s), so what is measured
is the lifecycle's own adopt-or-create and delete, not the safety nets behind it.

At the end it waits for every remaining resource to be Ready and every deleted one gone, then prints:
leaked sandboxes (alive, but no live resource has their uid tag), duplicates (more than one alive
sandbox for one uid), and live resources without a sandbox. Then everything is deleted and the
sandboxes still alive are counted again. Target: 0 leaked, 0 duplicates.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import Bed, emit, finish, swarm, wait_for

TAG_UID = "claudeswarm.io/uid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="15 kills instead of 50")
    parser.add_argument("--kills", type=int)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--converge-timeout", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    kills = args.kills or (15 if args.quick else 50)
    rng = random.Random(args.seed)
    settings = {
        "SWARM_LEASE_SECONDS": "600",
        "SWARM_SWEEP_INTERVAL_SECONDS": "3600",
        "SWARM_DELETE_GRACE_SECONDS": "1",
        "SWARM_RETRY_DELAY_SECONDS": "0.5",
        "SWARM_MAX_RETRY_DELAY_SECONDS": "3",
        "SWARM_INIT_BACKOFF_SECONDS": "0.2",
        "SWARM_CREATIONS_PER_MINUTE": "100000",
    }
    created = 0
    live: list[str] = []
    deleted: list[str] = []
    started = time.monotonic()
    with Bed(operator_env=settings) as bed:
        bed.start_operator()
        for kill in range(kills):
            new = min(rng.randint(1, 2), max(0, args.resources - len(live)))  # refill towards ~20 live
            batch = [f"chaos-{created + i:03d}" for i in range(new)]
            for name in batch:
                bed.create(swarm(name, agents=2))
            created += len(batch)
            live += batch
            if kill >= 3:  # deletes land while creates and initialisations are still in flight
                for name in rng.sample(live, min(len(live), rng.randint(0, 2))):
                    bed.delete(name)
                    live.remove(name)
                    deleted.append(name)
            time.sleep(rng.uniform(0.05, 1.2))
            bed.kill_operator()
            bed.start_operator()
        chaos_s = time.monotonic() - started
        print(
            f"{kills} SIGKILLs in {chaos_s:.1f}s; {created} resources created, {len(deleted)} deleted, "
            f"{len(live)} live",
            flush=True,
        )
        converge_started = time.monotonic()
        not_ready: list[str] = []
        try:
            bed.wait_ready(live, timeout=args.converge_timeout, interval=0.25)
        except TimeoutError as exc:
            print(f"not converged: {exc}")
            objects = bed.all()
            not_ready = sorted(
                n
                for n in live
                if n in objects and not (objects[n].get("status") or {}).get("phase") == "Ready"
            )
        not_gone: list[str] = []
        try:
            bed.wait_gone(deleted, timeout=120, interval=0.25)
        except TimeoutError as exc:
            print(f"not converged: {exc}")
            not_gone = sorted(set(deleted) & set(bed.all()))
        converge_s = time.monotonic() - converge_started
        objects = bed.all()
        if not_ready or not_gone:
            import shutil

            keep = Path(tempfile.gettempdir()) / "swarm-bench-chaos-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(bed.tmp, keep, ignore=shutil.ignore_patterns("sandbox-home", "e2b-emulator-*"))
            print(f"operator logs kept in {keep}")
        for name in not_ready:
            obj = objects.get(name) or {}
            meta = obj.get("metadata", {})
            status = obj.get("status") or {}
            print(
                f"  {name}: phase={status.get('phase')} finalizers={meta.get('finalizers')} "
                f"annotations={ {k: v[:120] for k, v in (meta.get('annotations') or {}).items()} } "
                f"conditions={[(c['type'], c['status'], c['reason']) for c in status.get('conditions', [])]}"
            )
        live_uids = {o["metadata"]["uid"]: n for n, o in objects.items() if n in live}

        def census() -> tuple[int, int, int]:
            alive = bed.alive_sandboxes()
            per_uid = Counter(s["metadata"].get(TAG_UID) for s in alive)
            leaked = sum(n for uid, n in per_uid.items() if uid not in live_uids)
            duplicates = sum(n - 1 for uid, n in per_uid.items() if uid in live_uids and n > 1)
            missing = sum(1 for uid in live_uids if uid not in per_uid)
            return leaked, duplicates, missing

        # Deletes finish by killing; give in-flight kills a moment to land before counting.
        try:
            wait_for(lambda: census() == (0, 0, 0), 30, interval=0.5, message="one sandbox per live resource")
        except TimeoutError:
            pass
        leaked, duplicates, missing = census()
        tracked = {
            (objects[n].get("status") or {}).get("sandbox", {}).get("id") for n in live if n in objects
        }
        untracked = sum(1 for s in bed.alive_sandboxes() if s["sandboxID"] not in tracked)
        print(
            f"after convergence ({converge_s:.1f}s): leaked {leaked}, duplicates {duplicates}, "
            f"live resources without a sandbox {missing}, alive sandboxes not in any status {untracked}; "
            f"not Ready {not_ready or 'none'}, not gone {not_gone or 'none'}",
            flush=True,
        )
        for name in live:
            bed.delete(name)
        try:
            bed.wait_gone(live, timeout=120, interval=0.25)
            wait_for(lambda: not bed.alive_sandboxes(), 30, interval=0.5, message="no sandbox left")
        except TimeoutError as exc:
            print(f"final cleanup incomplete: {exc}")
        left_after_delete_all = len(bed.alive_sandboxes())
        print(f"after deleting everything: {left_after_delete_all} sandbox(es) still alive")
        e2b = bed.e2b_stats()
        bed.stop_operator()
    print(f"E2B calls: {e2b['operations']}")
    emit(
        "chaos",
        {
            "kills": kills,
            "resources_created": created,
            "deleted_during_chaos": len(deleted),
            "live_at_end": len(live),
            "chaos_s": round(chaos_s, 1),
            "converge_s": round(converge_s, 1),
            "leaked": leaked,
            "duplicates": duplicates,
            "missing": missing,
            "untracked": untracked,
            "not_ready": not_ready,
            "not_gone": not_gone,
            "left_after_delete_all": left_after_delete_all,
            "sandboxes_created": e2b["operations"].get("sandbox.create", 0),
            "ok": leaked == 0
            and duplicates == 0
            and missing == 0
            and untracked == 0
            and not not_ready
            and not not_gone
            and left_after_delete_all == 0,
        },
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        finish()
