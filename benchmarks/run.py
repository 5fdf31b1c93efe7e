"""Run every benchmark, one after another, and print a summary table.

    python benchmarks/run.py            # full sizes (scale: 200 resources, chaos: 50 kills)
    python benchmarks/run.py --quick    # small sizes, a few minutes
    python benchmarks/run.py --only latency,scale

Each benchmark is its own script (``bench_*.py``) that prints its figures and ends with one
``JSON: {...}`` line; this runner collects those lines into ``--out`` (default
benchmarks/results/latest.json, not committed) and prints one row per benchmark. Every script is
bounded by ``--timeout`` seconds. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["roundtrips", "latency", "health", "scale", "chaos", "reference", "soak"]
#: Long enough to be asked for by name only (``--only soak``): ~9 min at full size.
OPT_IN = {"soak"}


def headline(name: str, s: dict) -> str:
    if name == "roundtrips":
        return (
            f"E2B calls create->Ready by N {s['after_create_by_n']} (target <= {s['target']}, same for all N)"
        )
    if name == "latency":
        parts = []
        for label, r in s["series"].items():
            parts.append(
                f"{label}: Ready p50 {r['ready_p50_s']}s p99 {r['ready_p99_s']}s, delete p50 {r['delete_p50_s']}s"
            )
        return "; ".join(parts)
    if name == "health":
        return f"death->Degraded p50 {s['p50_s']}s max {s['max_s']}s (target <= {s['target_s']}s)"
    if name == "scale":
        return (
            f"{s['count']} all Ready {s['all_ready_s']}s, peak RSS {s['peak_rss_mb']} MB, "
            f"k8s writes/resource {s['k8s_writes_per_resource_operator']}, E2B calls/resource "
            f"{s['e2b_calls_per_resource']}"
        )
    if name == "reference":
        o, r = s["ours"], s["reference"]
        return (
            f"ours vs plain kopf: p50 {o['ready_p50_s']}s vs {r['ready_p50_s']}s, burst {s['burst']} "
            f"{o['burst_all_ready_s']}s vs {r['burst_all_ready_s']}s, writes/lifecycle "
            f"{o['writes_per_lifecycle']} vs {r['writes_per_lifecycle']}"
        )
    if name == "soak":
        return (
            f"{s['count']} all Ready {s['all_ready_s']}s; quiet per 1,000: K8s {s['k8s_req_per_s_per_1000']}/s, "
            f"E2B {s['e2b_calls_per_s_per_1000']}/s; RSS idle {s['rss_mib']['idle_mean']} MiB"
        )
    if name == "chaos":
        return (
            f"{s['kills']} kills: leaked {s['leaked']}, duplicates {s['duplicates']}, "
            f"missing {s['missing']}, left after delete-all {s['left_after_delete_all']}"
        )
    return json.dumps(s)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(ORDER))
    parser.add_argument("--timeout", type=float, default=1200.0, help="per benchmark, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args()
    summaries: dict[str, dict] = {}
    rows = []
    asked = args.only.split(",")
    for name in [n for n in ORDER if n in asked and (n not in OPT_IN or args.only != ",".join(ORDER))]:
        cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=args.timeout)
            out, rc = proc.stdout, proc.returncode
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
        except subprocess.TimeoutExpired as exc:
            out, rc = (
                (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""),
                -1,
            )
            print(f"{name}: timed out after {args.timeout:.0f}s", file=sys.stderr)
        print(out, end="", flush=True)
        line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("JSON: ")), None)
        elapsed = time.monotonic() - started
        if line is None:
            rows.append((name, "FAILED", f"exit {rc}, no summary", elapsed))
            continue
        summary = json.loads(line[len("JSON: ") :])
        summary["wall_s"] = round(elapsed, 1)
        summaries[name] = summary
        rows.append((name, "ok" if summary.get("ok") else "MISS", headline(name, summary), elapsed))
    print("\n=== summary")
    for name, verdict, text, elapsed in rows:
        print(f"{name:<11} {verdict:<6} {text}  [{elapsed:.0f}s]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"quick": args.quick, "results": summaries}, indent=2, sort_keys=True))
    print(f"\nsummaries written to {args.out}")
    print(
        "JSON: "
        + json.dumps(
            {"benchmark": "all", "quick": args.quick, "ok": {n: s.get("ok") for n, s in summaries.items()}},
            sort_keys=True,
        )
    )
    return 0 if all(v == "ok" for _, v, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
