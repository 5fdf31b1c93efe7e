"""The agents, from spec to running panes: the spec's inputs (Secrets, the agent.config ConfigMap)
→ a :class:`bootstrap.BootstrapPlan` → one idempotent setup run → ``status.agents``,
``status.workspace`` and ``status.mcp`` (written by :mod:`.report`).

* **Nothing half-made.** Everything the sandbox will be given is checked
  (:func:`~swarm_operator.lifecycle.plan.unusable`) before a sandbox exists, so a spec the setup
  script cannot take never leaves a sandbox behind.
* **Never hang.** Initialisation is bounded by the backend's timeouts and ``initAttempts`` retries
  with backoff; when the budget is spent the sandbox is killed before the resource is marked Failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import NoReturn

from swarm_operator import agentconfig, bootstrap, logs
from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    SandboxBackend,
    SandboxInfo,
    SandboxNotFound,
)
from swarm_operator.conditions import TERMINAL_REASONS, ConditionType, Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle import bounds, results
from swarm_operator.lifecycle.plan import plan
from swarm_operator.lifecycle.report import (
    count_command,
    record_agents,
    record_tools,
    registry_shortfall,
    report_text,
)
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook, give_up
from swarm_operator.model import (
    InvalidSpecError,
    SwarmSandboxSpec,
)
from swarm_operator.secrets import SecretKeyRef
from swarm_operator.secrets import api_key_ref as _api_key_ref
from swarm_operator.secrets import default_api_key_ref as default_api_key_ref  # re-exported

logger = logging.getLogger("swarm_operator.lifecycle")


def api_key_ref(ref: ResourceRef, spec: SwarmSandboxSpec, settings: Settings) -> SecretKeyRef:
    """Where the resource's E2B API key lives (:func:`swarm_operator.secrets.api_key_ref`, which the
    console uses too)."""
    return _api_key_ref(ref.namespace, spec.e2b.api_key_secret_ref if spec.e2b else None, settings)


async def read_secrets(
    ref: ResourceRef, spec: SwarmSandboxSpec, runtime: Runtime, *, key_only: bool = False
) -> tuple[str, dict[str, str]]:
    """The E2B API key and the setup script's environment, with every secretKeyRef resolved.

    The environment holds the agents' variables (``agent.env``, ``ANTHROPIC_API_KEY`` from
    ``agent.apiKeySecretRef``) and the script-only ``SWARM_SECRET_*`` values (workspace password,
    MCP tokens), which the script uses and unsets before any agent starts.
    """
    key_ref = api_key_ref(ref, spec, runtime.settings)
    env_refs: dict[str, SecretKeyRef] = {}
    envs: dict[str, str] = {}
    for var in spec.agent.env:
        if var.value_from is not None:
            selector = var.value_from.secret_key_ref
            env_refs[var.name] = SecretKeyRef(ref.namespace, selector.name, selector.key)
        else:
            envs[var.name] = var.value or ""
    if key_only:
        env_refs.clear()
        envs.clear()
    else:
        env_refs.update(agentconfig.tool_secret_refs(ref.namespace, spec))
    values = await runtime.secrets.read_many([key_ref, *env_refs.values()], scope=ref.uid)
    envs.update({name: values[sref] for name, sref in env_refs.items()})
    return values[key_ref], envs


async def agent_files(ref: ResourceRef, spec: SwarmSandboxSpec, runtime: Runtime) -> dict[str, str]:
    """The agent.config ConfigMap's files (key -> text)."""
    config = spec.agent.config
    if config is None:
        return {}
    return await runtime.secrets.read_config_map(
        ref.namespace, config.config_map_name, optional=bool(config.optional)
    )


async def initialise(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox: SandboxInfo,
    envs: Mapping[str, str],
    files: Mapping[str, str] | None = None,
) -> None:
    """Run the setup script until every agent runs, retrying on the same sandbox with backoff.

    The script is idempotent (a rerun keeps healthy agents, restarts dead ones, and converges the
    pane count), so the same call serves first start, retries, adoption after a crash and scaling.
    When the attempts are spent the sandbox is killed: a half-initialised sandbox must not bill.
    """
    settings = book.runtime.settings
    try:
        setup_plan = results.with_start(plan(book.ref, spec, envs, settings, files), book)
    except InvalidSpecError as exc:
        await give_up(book, Reason.INVALID_SPEC, f"invalid spec: {exc}")
    script = bootstrap.render_setup(setup_plan)
    # The budget is the sandbox's, in status: a restart (or a retry after another failure)
    # continues the count instead of starting over (see lifecycle.budget).
    first = bounds.used(book, sandbox.id) + 1
    cause = _last_cause(book) if first > settings.init_attempts else ""
    for attempt in range(first, settings.init_attempts + 1):
        failed = await _attempt(book, spec, backend, sandbox, setup_plan, script, envs)
        if failed is None:
            return
        cause = failed
        # Counted once it failed, and written with the retry message below (or the kill): an
        # attempt cut short by an operator restart is not the sandbox's failure and is not spent.
        bounds.charge(book, sandbox.id, attempt)
        if attempt < settings.init_attempts:
            unregistered = cause.startswith("step coordinator:")
            book.set(
                ConditionType.AGENTS_READY,
                "False",
                Reason.AGENTS_NOT_REGISTERED if unregistered else Reason.INITIALIZING,
                f"attempt {attempt}/{settings.init_attempts} failed, retrying: {cause}",
            )
            await book.commit()
            await asyncio.sleep(settings.init_backoff_seconds * 2 ** (attempt - 1))
    await bounds.exhausted(book, backend, sandbox.id, cause)


async def _attempt(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    backend: SandboxBackend,
    sandbox: SandboxInfo,
    setup_plan: bootstrap.BootstrapPlan,
    script: str,
    envs: Mapping[str, str],
) -> str | None:
    """One setup run: ``None`` when every agent runs (recorded), else why not (one attempt spent)."""
    ref, settings = book.ref, book.runtime.settings
    started = time.monotonic()
    try:
        # The first run on a template that lacks tmux, the agent CLI or the coordinator installs
        # them, each installer bounded by the script: allow all of it, or the run is cut before
        # it can report. Later runs install nothing and return as fast as before.
        result = await backend.run(
            sandbox.id,
            script,
            stdin=bootstrap.secret_input(envs),
            timeout_s=bounds.setup_timeout_seconds(settings) + setup_plan.provision_budget_s,
        )
        count_command(book, failed=not result.ok)
        report = bootstrap.parse_report(report_text(result.stdout, ref.uid))
    except (AuthenticationFailed, SandboxNotFound):
        raise
    except BackendError as exc:
        count_command(book, failed=True)
        # A flood past the output cap or a hang to the timeout is the sandbox's doing, like a
        # 4xx or a 5xx: only a terminal refusal ends here; everything else spends an attempt.
        if exc.reason in TERMINAL_REASONS and not exc.transient:
            raise
        # Timeouts, 4xx, 5xx alike: each spends one attempt, so no failure keeps a sandbox
        # Initializing (and billing) for ever.
        return f"step init: {exc.reason}: {exc.message}"
    except ValueError as exc:  # no parsable report: the script could not do its job
        return (
            f"step init: setup script failed (exit {result.exit_code}): {exc}; "
            f"stderr: {logs.sandbox_text(result.stderr, ref.uid, limit=500)}"
        )
    _record_run(book, spec, report, started)
    await _refuse_unfixable(book, backend, sandbox, report)
    return _verdict(book, spec, sandbox, report, started)


def _record_run(
    book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport, started: float
) -> None:
    """A run that reported: its step times, what it installed, and what it found, to status."""
    book.step("init", time.monotonic() - started)
    book.runtime.metrics.sandbox_initialised(time.monotonic() - started)
    for name, seconds in report.steps.items():
        # provision is its own step: what a prebuilt template saves is read at a glance.
        book.step(name if name == "provision" else f"init.{name}", seconds)
    if report.installed:
        book.event(
            "Normal",
            Reason.PROVISIONED,
            f"installed {', '.join(report.installed)} at start; skip this with "
            f"`swarm-operator template --build`",
        )
    record_agents(book, spec, report.panes, report.agents.ready, report.restarted)
    record_tools(book, spec, report)


def _verdict(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    sandbox: SandboxInfo,
    report: bootstrap.BootstrapReport,
    started: float,
) -> str | None:
    """``None`` and AgentsReady=True when every agent runs (and is registered), else the cause."""
    ref = book.ref
    ready = report.agents.ready
    shortfall = registry_shortfall(spec, report)
    if report.ready and ready >= spec.agents and shortfall is None:
        bounds.clear(book, sandbox.id)
        book.set(
            ConditionType.AGENTS_READY, "True", Reason.AVAILABLE, f"{ready}/{spec.agents} agents running"
        )
        logger.info(
            "%d/%d agents running",
            ready,
            spec.agents,
            extra={
                **ref.log_extra,
                "sandbox_id": sandbox.id,
                "step": "init",
                "duration": round(time.monotonic() - started, 3),
            },
        )
        return None
    cause = f"step init: {ready}/{spec.agents} agents running"
    if shortfall is not None and report.ready and ready >= spec.agents:
        cause = f"step coordinator: {shortfall}"
    if report.errors:
        cause += ": " + logs.sandbox_text(
            "; ".join(
                f"{e.step}{'' if e.agent is None else f' agent {e.agent}'}: {e.message}"
                for e in report.errors
            ),
            ref.uid,
            limit=2000,
            keep="head",
        )
    return cause


def _last_cause(book: StatusBook) -> str:
    """Why the last counted attempt failed, as recorded (the budget was spent before a restart)."""
    agents = next((c for c in book.status.conditions if c.type == ConditionType.AGENTS_READY), None)
    if agents is not None and agents.status == "False" and agents.message:
        return agents.message
    return "the initialisation budget was spent before the operator restarted"


async def _refuse_unfixable(
    book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo, report: bootstrap.BootstrapReport
) -> None:
    """A setup run found something only a spec (or template) change fixes: kill, then give up."""
    if report.workspace is not None and report.workspace.floating:
        # A branch where a pin is required: the spec must change; the sandbox holds no agents.
        await _refuse(
            book,
            backend,
            sandbox,
            Reason.INVALID_SPEC,
            "the workspace ref floats",
            f"invalid spec: spec.workspace.ref: {report.workspace.error}",
        )


async def _refuse(
    book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo, reason: Reason, why: str, message: str
) -> NoReturn:
    await kill_and_record(book, backend, sandbox.id, reason, f"sandbox {sandbox.id} killed: {why}", message)
    await give_up(book, reason, message)
