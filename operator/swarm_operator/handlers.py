"""kopf registrations, and nothing else: each handler delegates to :mod:`swarm_operator.lifecycle`
at once and translates its outcome into kopf's vocabulary (temporary / permanent errors).

Importing this module registers the handlers with kopf's default registry; ``swarm-operator run``
does so before starting kopf.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from swarm_operator import lifecycle
from swarm_operator.backend import BackendPool, BackendTimeouts, SandboxNotFound
from swarm_operator.cluster import (
    ConfigMapReleaseRecord,
    KubeResourceLister,
    KubeShardLabeller,
    KubeStatusWriter,
    api_client,
    core_api,
)
from swarm_operator.config import Settings
from swarm_operator.lifecycle import GiveUp, ResourceRef, RetryLater, Runtime
from swarm_operator.lifecycle.shard import ShardPlan, assign_forever
from swarm_operator.lifecycle.startup import seed_limiter
from swarm_operator.metrics import Metrics, new_registry, start_server
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.names import FINALIZER, GROUP, PLURAL, RESUME_ANNOTATION, VERSION
from swarm_operator.ratelimit import CreationLimiter
from swarm_operator.secrets import SecretKeyRef, SecretReader
from swarm_operator.sweeper import Sweeper, keys_in_use

logger = logging.getLogger("swarm_operator.handlers")

KUBE_THREADS = 32


class _KopfEvents:
    """Posts Events through kopf's own queue (batched, retried, off the handler's path)."""

    def record(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None:
        body: kopf.RawBody = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SwarmSandbox",
            "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
        }
        try:
            kopf.event(kopf.Body(body), type=type_, reason=reason, message=message)
        except LookupError:  # outside kopf's context (no posting queue): the log line suffices
            pass


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Settings = getattr(memo, "settings", None) or Settings.from_env()
    _kopf_settings(settings, config)
    _watch_scope(settings, memo, ShardPlan.parse(config.shard))
    # The kubernetes client is synchronous and runs in threads; asyncio's default pool (a few
    # threads on a small node) would queue hundreds of resources' Secret reads and status writes.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=KUBE_THREADS, thread_name_prefix="kube")
    )
    client = api_client(pool_size=KUBE_THREADS)
    metrics = Metrics(new_registry())
    memo.metrics_close = start_server(config.metrics_port, metrics.registry)
    memo.runtime = _runtime(config, client, metrics)
    # Before any handler may create: the limiter replays what E2B knows of earlier processes.
    await seed_limiter(memo.runtime, timeout_s=config.control_timeout_seconds * 2)
    lister = KubeResourceLister(
        client, namespaces=getattr(memo, "namespaces", None), timeout_s=config.kube_timeout_seconds
    )
    memo.sweeper_task = asyncio.create_task(_sweep_forever(memo.runtime, lister))
    memo.shard_task = _start_labeller(config, memo, client)
    # Set at cleanup. kopf can start a daemon for an event that arrives while it is shutting down,
    # after its daemon killer is gone; such a daemon would never see ``stopped`` and would hold
    # the exit until kopf cancels it as a hung task (and exits non-zero). They watch this too.
    memo.shutdown = asyncio.Event()
    logger.info("operator %s started", config.operator_id)


def _kopf_settings(settings: kopf.OperatorSettings, config: Settings) -> None:
    """kopf's persistence and networking, as ours."""
    # Our own names for kopf's bookkeeping, and annotations only: status is ours and schema-pruned.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP,
        key="last-handled-configuration",
    )
    settings.networking.request_timeout = config.kube_timeout_seconds * 4
    settings.networking.connect_timeout = config.kube_timeout_seconds
    settings.watching.server_timeout = 300
    settings.posting.level = logging.INFO


def _runtime(config: Settings, client: Any, metrics: Metrics) -> Runtime:
    """The lifecycle's collaborators, each bounded by the operator's settings."""
    return Runtime(
        settings=config,
        backends=BackendPool(
            timeouts=BackendTimeouts(
                control_s=config.control_timeout_seconds,
                command_s=config.command_timeout_seconds,
            ),
            observer=metrics.e2b_observer,
            user=config.sandbox_user,
            output_limit_bytes=config.command_output_limit_bytes,
        ),
        secrets=SecretReader(
            core_api(client),
            timeout_s=config.kube_timeout_seconds,
            ttl_s=config.secret_check_seconds,
            max_total_bytes=config.max_secret_bytes,
            operator_wide=[
                SecretKeyRef(
                    config.namespace, config.default_api_key_secret, config.default_api_key_secret_key
                )
            ],
        ),
        status=KubeStatusWriter(client, timeout_s=config.kube_timeout_seconds),
        events=_KopfEvents(),
        metrics=metrics,
        limiter=CreationLimiter(
            config.creations_per_minute, config.creations_per_hour, config.max_sandboxes_per_namespace
        ),
        released=ConfigMapReleaseRecord(
            client,
            namespace=config.namespace,
            operator_id=config.operator_id,
            timeout_s=config.kube_timeout_seconds,
        ),
    )


def _watch_scope(settings: kopf.OperatorSettings, memo: kopf.Memo, plan: ShardPlan | None) -> None:
    """What kopf watches: the namespaces, and server-side label selectors (``--selector``, and the
    shard's own label when sharded), so this instance never even sees another shard's resources:
    it runs no handler, adds no finalizer and writes no annotation on one."""
    selectors = [s for s in (getattr(memo, "selector", None), plan and plan.own_selector) if s]
    if selectors:
        settings.watching.label_selectors[GROUP, VERSION, PLURAL] = ",".join(selectors)
    if getattr(memo, "namespaces", None):
        # Namespaced RBAC cannot list namespaces or CRDs cluster-wide: don't try (and warn).
        settings.scanning.disabled = True


def _start_labeller(config: Settings, memo: kopf.Memo, client: Any) -> asyncio.Task[None] | None:
    """When sharded: the task that labels new resources with their shard (any shard may)."""
    plan = ShardPlan.parse(config.shard)
    if plan is None:
        return None
    labeller = KubeShardLabeller(
        client, namespaces=getattr(memo, "namespaces", None), timeout_s=config.kube_timeout_seconds
    )
    logger.info("shard %d of %d: serving %s", plan.index, plan.shards, plan.own_selector)
    return asyncio.create_task(assign_forever(plan, labeller))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    shutdown: asyncio.Event | None = getattr(memo, "shutdown", None)
    if shutdown is not None:
        shutdown.set()
    for name in ("sweeper_task", "shard_task"):
        task: asyncio.Task[None] | None = getattr(memo, name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    getattr(memo, "metrics_close", lambda: None)()
    logger.info("operator stopped")


@kopf.on.probe(id="operator")
async def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Liveness detail: kopf answering proves the event loop runs; this proves our own loops do.

    A sweeper or shard-labeller task that died (neither ends on its own) fails the probe, so the
    kubelet restarts the pod rather than leave an operator that no longer cleans up after itself.
    """
    for name, what in (("sweeper_task", "the orphan sweeper"), ("shard_task", "the shard labeller")):
        task: asyncio.Task[None] | None = getattr(memo, name, None)
        if task is not None and task.done():
            raise RuntimeError(f"{what} stopped")
    runtime: Runtime = memo.runtime
    clients = len(runtime.backends) if isinstance(runtime.backends, Sized) else 0
    return {"e2bClients": clients, "resourcesTracked": runtime.tracked()}


async def _sweep_forever(runtime: Runtime, lister: KubeResourceLister) -> None:
    """The orphan sweeper's loop: one pass per interval, over every API key in use."""
    settings = runtime.settings
    sweeper = Sweeper(operator_id=settings.operator_id, grace_s=settings.sweep_grace_seconds)
    default_ref = lifecycle.default_api_key_ref(settings)
    while True:
        await asyncio.sleep(settings.sweep_interval_seconds * random.uniform(0.9, 1.1))
        keys = await keys_in_use(runtime.keys_in_use(), runtime.secrets, default_ref)
        try:
            report = await sweeper.sweep(
                [runtime.backends.for_key(k) for k in keys], lister.uids, runtime.released.ids
            )
        except Exception as exc:
            logger.warning("sweep failed: %s", exc)
            continue
        runtime.metrics.untracked(report.candidates - len(report.killed))
        if report.killed:
            runtime.metrics.orphan_killed(len(report.killed))
            logger.warning("sweep killed %d orphaned sandbox(es)", len(report.killed))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    ref, status = ResourceRef.from_body(body), _status(body)
    try:
        spec = SwarmSandboxSpec.from_body(body.get("spec"))
    except InvalidSpecError as exc:
        await _translated(memo.runtime, "reconcile", lifecycle.refuse_spec(ref, exc, status, memo.runtime))
        return
    await _translated(
        memo.runtime, "reconcile", lifecycle.reconcile(ref, spec, status, memo.runtime, retry=retry)
    )


@kopf.on.field(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RESUME_ANNOTATION))
async def resume_requested(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    """``swarm-operator resume`` set the annotation: lift an idle pause and reconcile."""
    spec = _spec(body)
    if spec is None:
        return  # the reconcile reports the spec
    await _translated(
        memo.runtime,
        "reconcile",
        lifecycle.resume(ResourceRef.from_body(body), spec, _status(body), memo.runtime, retry=retry),
    )


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    spec: SwarmSandboxSpec | lifecycle.UnusableSpec
    try:
        spec = SwarmSandboxSpec.from_body(body.get("spec"))
    except InvalidSpecError as exc:  # still deleted: with the key last used, per its deletionPolicy
        spec = lifecycle.UnusableSpec.of(body.get("spec"), exc)
    await _translated(
        memo.runtime,
        "delete",
        lifecycle.delete(ResourceRef.from_body(body), spec, _status(body), memo.runtime, retry=retry),
    )


def _spec(body: kopf.Body) -> SwarmSandboxSpec | None:
    """The parsed spec, or None when the model refuses it (the reconcile reports InvalidSpec)."""
    try:
        return SwarmSandboxSpec.from_body(body.get("spec"))
    except InvalidSpecError:
        return None


def _status(body: kopf.Body) -> SwarmSandboxStatus:
    return SwarmSandboxStatus.model_validate(dict(body.get("status") or {}))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def keeper(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The resource's three clocks in one daemon: the lease (renewed while the resource exists; a
    sandbox found gone is recreated), the Secrets it names (re-read by name, never a cluster-wide
    Secret watch, so RBAC needs no list/watch on Secrets; a change reconciles) and the health probe
    (every ``healthCheck.intervalSeconds``, phased so probes spread out).

    One daemon, not three: each kopf daemon holds its own task, stopper, invocation context and
    waiters (issue 19's tracemalloc profile); the three took ``runtime.lock`` in turn anyway.
    """
    runtime: Runtime = memo.runtime
    settings = runtime.settings
    phased = _Phased()

    def probe_interval() -> float:
        # Backs off while the sandbox misbehaves (status.health.sandboxFaults); sooner when a
        # running sandbox will reach its budget before the next probe.
        try:
            status: SwarmSandboxStatus | None = _status(body)
        except ValueError:  # a status the model cannot read: the plain interval
            status = None
        return phased(lifecycle.probe_interval(_spec(body), status))

    clocks = [
        _Clock(
            "lease", lifecycle.renew_lease, lambda: settings.lease_renew_seconds * random.uniform(0.9, 1.1)
        ),
        _Clock(
            "secrets",
            lifecycle.watch_secrets,
            lambda: settings.secret_check_seconds * random.uniform(0.9, 1.1),
        ),
        _Clock("health", lifecycle.check_health, probe_interval),
    ]
    await _periodically(stopped, memo.shutdown, body, runtime, clocks)


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
class _Clock:
    """One periodic duty of the keeper: ``work(ref, spec, status, runtime)`` every ``interval()``."""

    name: str
    work: Callable[..., Awaitable[object]]
    interval: Callable[[], float]
    due: float = 0.0


async def _periodically(
    stopped: kopf.DaemonStopped,
    shutdown: asyncio.Event,
    body: kopf.Body,
    runtime: Runtime,
    clocks: list[_Clock],
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


async def _tick(body: kopf.Body, runtime: Runtime, clock: _Clock) -> None:
    ref = ResourceRef.from_body(body)
    started = time.monotonic()
    result = "success"
    try:
        spec = _spec(body)
        if spec is not None:
            await clock.work(ref, spec, _status(body), runtime)
    except SandboxNotFound:
        assert spec is not None  # only the work raises it
        result = "requeue"
        try:
            await lifecycle.reconcile(ref, spec, _status(body), runtime)
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


async def _pause(stopped: kopf.DaemonStopped, shutdown: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if the daemon is stopped or the operator shuts down."""
    waiters = {asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(shutdown.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _translated(runtime: Runtime, handler: str, work: Any) -> None:
    """Await the lifecycle call, count it, and speak kopf's language about how it ended."""
    started = time.monotonic()
    result = "error"
    try:
        await work
        result = "success"
    except RetryLater as exc:
        result = "requeue"
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except GiveUp as exc:
        raise kopf.PermanentError(str(exc)) from None
    finally:
        runtime.metrics.reconciled(handler, result, time.monotonic() - started)
