"""``swarm-operator doctor``: check, live, every E2B contract the operator relies on.

The operator is proved against an emulator; this is how a user with a real key (or CI, against the
emulator) learns whether the endpoint in front of them keeps the same rules, before a swarm finds out
the hard way. Each contract is one row of a table (contract | expected | seen | ok) and any mismatch
makes the exit status non-zero.

It talks to E2B through the official async SDK directly, not through the operator's backend, on
purpose: the backend *maps* specs onto requests, and the point here is to see the raw rules that
mapping must respect (a host in ``allowOut`` needs ``0.0.0.0/0`` in ``denyOut``, for instance).

Nothing is left behind: every sandbox it creates carries the metadata tag
``swarm-operator-doctor=<run id>``; whatever happens (a failed check, Ctrl-C, SIGTERM) the sandboxes
are killed in a ``finally``, then listed by that tag to prove none remain — which also catches a
sandbox whose create answer was lost. Every call is bounded by a timeout; no secret is printed (the
gateway token is random, per run, and only ever travels in a command's environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ._contracts import (
    check_create,
    check_egress_refusal,
    check_identity,
    check_kill,
    check_lease,
    check_mcp,
    check_plan_cap,
    check_tools,
)
from ._probe import PLAN_CAPS, TAG, Check, Options, Probe, refusal

__all__ = ["PLAN_CAPS", "TAG", "Check", "Options", "format_table", "main", "run"]

T = TypeVar("T")


async def _guarded(run: Probe, name: str, check: Awaitable[T]) -> T | None:
    """One check; an answer it did not expect (a timeout, a broken sandbox) is its failed row, and
    the next check still runs."""
    try:
        return await check
    except TimeoutError:
        run.add(name, "an answer in time", f"no answer within {run.options.call_timeout_s:g}s", False)
    except Exception as exc:
        run.add(name, "an answer", f"{type(exc).__name__}: {refusal(exc)[1]}", False)
    return None


async def _checks(run: Probe) -> None:
    sandbox = await _guarded(run, "create", check_create(run))
    await _guarded(run, "egress", check_egress_refusal(run))
    await _guarded(run, "plan cap", check_plan_cap(run))
    if sandbox is not None:
        await _guarded(run, "identity", check_identity(run, sandbox))
        await _guarded(run, "lease", check_lease(run, sandbox))
        await _guarded(run, "tools", check_tools(run, sandbox))
    await _guarded(run, "mcp", check_mcp(run))
    if sandbox is not None:
        await _guarded(run, "kill", check_kill(run, sandbox))


async def _tagged(run: Probe) -> list[str]:
    from e2b import AsyncSandbox, SandboxQuery, SandboxState

    paginator = AsyncSandbox.list(
        query=SandboxQuery(metadata=run.tag, state=[SandboxState.RUNNING, SandboxState.PAUSED]),
        limit=100,
        **run.opts(),
    )
    found: list[str] = []
    while paginator.has_next:
        found += [s.sandbox_id for s in await run.bounded(paginator.next_items())]
    return found


async def _clean_up(run: Probe) -> None:
    """Kill every sandbox this run made or that carries its tag, then prove none remain."""
    from e2b import AsyncSandbox

    # A create cut short may still be starting its sandbox on the service: look a few times.
    for attempt in range(3 if run.in_flight else 1):
        if attempt:
            await asyncio.sleep(2)
        with contextlib.suppress(Exception):
            run.created += [i for i in await _tagged(run) if i not in run.created]
        for sandbox_id in run.created:
            with contextlib.suppress(Exception):
                await run.bounded(AsyncSandbox.kill(sandbox_id, **run.opts()))
    contract = f"nothing left behind ({TAG}={run.options.run_id})"
    try:
        left = await _tagged(run)
    except Exception as exc:
        run.add(contract, "0 sandboxes listed by tag", f"list failed: {refusal(exc)[1]}", False)
        return
    run.add(
        contract, "0 sandboxes listed by tag", f"{len(left)} ({', '.join(left)})" if left else "0", not left
    )


async def run(options: Options) -> tuple[list[Check], bool]:
    """Run every check, then clean up; returns the rows and whether the run was interrupted.

    SIGINT and SIGTERM cancel the checks, never the clean-up (which is itself bounded in time).
    """
    state = Probe(options)
    checks = asyncio.ensure_future(_checks(state))
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        checks.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
    try:
        await checks
    except asyncio.CancelledError:
        if not interrupted:
            raise
        state.add("interrupted", "a complete run", "stopped by a signal; cleaning up", False)
    except Exception as exc:  # an unexpected answer: a failed row, never a traceback before clean-up
        state.add("unexpected error", "none", f"{type(exc).__name__}: {refusal(exc)[1]}", False)
    finally:
        await _clean_up(state)  # signals now only set the flag: the clean-up runs to its end
        for sig in installed:
            loop.remove_signal_handler(sig)
    return state.checks, interrupted


def format_table(checks: Sequence[Check]) -> str:
    header = ("CONTRACT", "EXPECTED", "SEEN", "OK")
    rows = [(c.contract, c.expected, c.seen, "ok" if c.ok else "FAIL") for c in checks]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in [header, *rows]
    )


def _endpoint() -> str:
    return os.environ.get("E2B_API_URL") or f"https://api.{os.environ.get('E2B_DOMAIN') or 'e2b.app'}"


async def main(options: Options, *, out: Callable[[str], None] = print) -> int:
    """The command: 0 when every contract holds, 1 on a mismatch, 130 when interrupted,
    2 without a key."""
    if not os.environ.get("E2B_API_KEY"):
        print(
            "swarm-operator doctor: set E2B_API_KEY (and E2B_DOMAIN or E2B_API_URL/E2B_SANDBOX_URL "
            "for an endpoint other than E2B's cloud)",
            file=sys.stderr,
        )
        return 2
    print(
        f"swarm-operator doctor: {_endpoint()}, template {options.template}, tag {TAG}={options.run_id}",
        file=sys.stderr,
        flush=True,
    )
    checks, interrupted = await run(options)
    out(format_table(checks))
    if interrupted:
        return 130
    return 0 if all(c.ok for c in checks) else 1
