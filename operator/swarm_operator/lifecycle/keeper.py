"""The keeper: one daemon per resource running its three clocks — the lease, the Secrets, the probe.

The lease is renewed while the resource exists (a sandbox found gone is recreated), the Secrets it
names are re-read by name (never a cluster-wide Secret watch, so RBAC needs no list/watch on Secrets;
a change reconciles) and the health probe runs every ``healthCheck.intervalSeconds``, phased so the
probes of resources that start together spread out.

One daemon, not three: each kopf daemon holds its own task, stopper, invocation context and waiters
(issue 19's tracemalloc profile); the three took ``runtime.lock`` in turn anyway. No kopf here: the
handler hands over kopf's stopper (anything with ``wait(seconds)`` and a truth value) and the live body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from swarm_operator.backend import SandboxNotFound
from swarm_operator.lifecycle.health import check_health, probe_interval
from swarm_operator.lifecycle.lease import renew_lease
from swarm_operator.lifecycle.reconcile import reconcile
from swarm_operator.lifecycle.rotation import watch_secrets
from swarm_operator.lifecycle.runtime import GiveUp, ResourceRef, RetryLater, Runtime
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec, SwarmSandboxStatus

__all__ = ["Clock", "clocks", "run", "spec_of", "status_of"]

logger = logging.getLogger("swarm_operator.handlers")


class Stopper(Protocol):
    """kopf's ``DaemonStopped``, as far as the keeper uses it."""

    def __bool__(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


def spec_of(body: Mapping[str, Any]) -> SwarmSandboxSpec | None:
    """The parsed spec, or None when the model refuses it (the reconcile reports InvalidSpec)."""
    try:
        return SwarmSandboxSpec.from_body(body.get("spec"))
    except InvalidSpecError:
        return None


def status_of(body: Mapping[str, Any]) -> SwarmSandboxStatus:
    return SwarmSandboxStatus.model_validate(dict(body.get("status") or {}))


def clocks(body: Mapping[str, Any], runtime: Runtime) -> list[Clock]:
    """The three clocks of one resource; renewals and Secret checks jittered ×0.9–1.1."""
    settings = runtime.settings
    phased = _Phased()

    def probe_every() -> float:
        # Backs off while the sandbox misbehaves (status.health.sandboxFaults); sooner when a
        # running sandbox will reach its budget before the next probe.
        try:
            status: SwarmSandboxStatus | None = status_of(body)
        except ValueError:  # a status the model cannot read: the plain interval
            status = None
        return phased(probe_interval(spec_of(body), status))

    return [
        Clock("lease", renew_lease, lambda: settings.lease_renew_seconds * random.uniform(0.9, 1.1)),
        Clock("secrets", watch_secrets, lambda: settings.secret_check_seconds * random.uniform(0.9, 1.1)),
        Clock("health", check_health, probe_every),
    ]


class _Phased:
    """The pauses of one resource's probe loop: the first a random part of the interval, every
    later one the whole interval.

    The random phase spreads the probes of resources that start together (an operator restart
    starts every daemon at once) over the interval; after it, a fixed pause keeps them spread and
    never probes more than once per interval (E2B's budget: one probe per interval per resource);
    a jitter on every pause shortens some intervals (×0.85–1.0 cost 8 % more probes).
    """

    def __init__(self) -> None:
        self._first = True

    def __call__(self, seconds: float) -> float:
        if self._first:
            self._first = False
            return seconds * random.random()
        return seconds


@dataclasses.dataclass
class Clock:
    """One periodic duty of the keeper: ``work(ref, spec, status, runtime)`` every ``interval()``."""

    name: str
    work: Callable[..., Awaitable[object]]
    interval: Callable[[], float]
    due: float = 0.0


async def run(
    stopped: Stopper,
    shutdown: asyncio.Event,
    body: Mapping[str, Any],
    runtime: Runtime,
    clocks: list[Clock],
) -> None:
    """The keeper's loop: wait for the clock due first, run its work on the live body, set it again.

    A spec the model refuses is skipped (the reconcile reports it). A sandbox found gone is
    recreated at once by a reconcile (the resource exists, so its sandbox must); any other failure
    is logged and counted, never allowed to end the daemon.
    """
    for clock in clocks:
        clock.due = time.monotonic() + clock.interval()
    while not stopped and not shutdown.is_set():
        clock = min(clocks, key=lambda c: c.due)
        await _pause(stopped, shutdown, max(0.0, clock.due - time.monotonic()))
        if stopped or shutdown.is_set() or body.get("metadata", {}).get("deletionTimestamp"):
            return
        await _tick(body, runtime, clock)
        clock.due = time.monotonic() + clock.interval()


async def _tick(body: Mapping[str, Any], runtime: Runtime, clock: Clock) -> None:
    ref = ResourceRef.from_body(body)
    started = time.monotonic()
    result = "success"
    try:
        spec = spec_of(body)
        if spec is not None:
            await clock.work(ref, spec, status_of(body), runtime)
    except SandboxNotFound:
        assert spec is not None  # only the work raises it
        result = "requeue"
        try:
            await reconcile(ref, spec, status_of(body), runtime)
        except (RetryLater, GiveUp) as exc:
            logger.info("recreate deferred: %s", exc, extra=ref.log_extra)
    except (RetryLater, GiveUp) as exc:
        result = "requeue"
        logger.info("%s: reconcile deferred: %s", clock.name, exc, extra=ref.log_extra)
    except Exception as exc:  # one bad pass must not end the daemon
        result = "error"
        logger.warning("%s failed: %s", clock.name, exc, extra=ref.log_extra)
    finally:
        runtime.metrics.reconciled(clock.name, result, time.monotonic() - started)


async def _pause(stopped: Stopper, shutdown: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if the daemon is stopped or the operator shuts down."""
    waiters = {asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(shutdown.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
