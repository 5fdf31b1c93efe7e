"""kopf registrations, and nothing else: each handler delegates to :mod:`swarm_operator.lifecycle`
at once and translates its outcome into kopf's vocabulary (temporary / permanent errors).

Importing this module registers the handlers with kopf's default registry; ``swarm-operator run``
does so before starting kopf.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from swarm_operator import lifecycle
from swarm_operator.backend import BackendPool, BackendTimeouts
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
from swarm_operator.lifecycle import keeper as lifecycle_keeper
from swarm_operator.lifecycle.shard import ShardPlan, assign_forever
from swarm_operator.lifecycle.startup import seed_limiter
from swarm_operator.metrics import Metrics, new_registry, start_server
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec
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
    ref, status = ResourceRef.from_body(body), lifecycle_keeper.status_of(body)
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
    spec = lifecycle_keeper.spec_of(body)
    if spec is None:
        return  # the reconcile reports the spec
    await _translated(
        memo.runtime,
        "reconcile",
        lifecycle.resume(
            ResourceRef.from_body(body), spec, lifecycle_keeper.status_of(body), memo.runtime, retry=retry
        ),
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
        lifecycle.delete(
            ResourceRef.from_body(body), spec, lifecycle_keeper.status_of(body), memo.runtime, retry=retry
        ),
    )


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def keeper(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The resource's three clocks (lease, Secrets, health) in one daemon: see lifecycle/keeper.py."""
    runtime: Runtime = memo.runtime
    await lifecycle_keeper.run(stopped, memo.shutdown, body, runtime, lifecycle_keeper.clocks(body, runtime))


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
