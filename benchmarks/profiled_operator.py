"""The operator under an in-process profiler, for benchmarks only (``harness.Bed`` runs this instead
of ``python -m swarm_operator`` when the operator's environment has ``BENCH_PROFILE``).

py-spy cannot attach in this container (ptrace reads are refused), and a profile written at exit
never is: the operator leaves through ``os._exit``. So the profiler runs inside the process and the
bench asks for its figures with SIGUSR1, at the moments it measures:

* ``BENCH_PROFILE=cprofile``: the event loop's thread (where every handler, kopf and the
  e2b SDK run; the kubernetes client's threads are not profiled). Each SIGUSR1 writes the calls
  since the previous one (pstats file ``<out>.<n>.pstats`` and the top 45 by cumulative and by own
  time, ``<out>.<n>.txt``), then starts afresh.
* ``BENCH_PROFILE=tracemalloc``: Python allocations made since SIGUSR2 and still alive, by line
  (one frame: deeper tracebacks made the operator too slow to keep its resources Ready), plus a
  count of live objects by type (``<out>.<n>.txt``). Tracing doubles memory and
  slows the operator: RSS and CPU figures of such a run are not the operator's.

``<out>`` is ``BENCH_PROFILE_OUT`` (default ``/tmp/swarm-profile``).
"""

from __future__ import annotations

import collections
import cProfile
import gc
import io
import os
import pstats
import runpy
import signal
import sys
import tracemalloc
from types import FrameType


def main() -> None:
    mode = os.environ.get("BENCH_PROFILE", "")
    out = os.environ.get("BENCH_PROFILE_OUT", "/tmp/swarm-profile")
    count = [0]
    profile = cProfile.Profile()

    def path(suffix: str) -> str:
        return f"{out}.{count[0]}.{suffix}"

    def dump_cprofile(_signum: int, _frame: FrameType | None) -> None:
        profile.disable()
        profile.dump_stats(path("pstats"))
        text = io.StringIO()
        for key in ("cumulative", "tottime"):
            stats = pstats.Stats(profile, stream=text)
            stats.sort_stats(key).print_stats(45)
        with open(path("txt"), "w") as f:
            f.write(text.getvalue())
        count[0] += 1
        profile.clear()
        profile.enable()

    def dump_tracemalloc(_signum: int, _frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        )
        lines = [f"traced: {sum(s.size for s in snapshot.statistics('filename')) / 2**20:.1f} MiB"]
        lines.append("\n== by file (top 25)")
        lines += [str(s) for s in snapshot.statistics("filename")[:25]]
        lines.append("\n== by line (top 40)")
        lines += [str(s) for s in snapshot.statistics("lineno")[:40]]
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        lines.append("\n== live gc objects by type (top 40)")
        lines += [f"{n:9d} {name}" for name, n in types.most_common(40)]
        with open(path("txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        count[0] += 1

    if mode == "cprofile":
        signal.signal(signal.SIGUSR1, dump_cprofile)
        profile.enable()
    elif mode == "tracemalloc":
        # Traced from SIGUSR2 on (the bench sends it once the operator started): under tracing the
        # imports take minutes on a busy machine, and what the operator allocates after its
        # start is what its resources hold, which is what we look for.
        signal.signal(signal.SIGUSR2, lambda _s, _f: tracemalloc.start(1))
        signal.signal(signal.SIGUSR1, dump_tracemalloc)
    else:
        raise SystemExit(f"BENCH_PROFILE={mode!r}: use cprofile or tracemalloc")
    sys.argv = ["swarm_operator", *sys.argv[1:]]
    runpy.run_module("swarm_operator", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
