"""The agents, from spec to running panes: the spec's inputs (Secrets, the agent.config ConfigMap)
→ a :class:`bootstrap.BootstrapPlan` → one idempotent setup run → ``status.agents``,
``status.workspace`` and ``status.mcp``.

* **Nothing half-made.** Everything the sandbox will be given is checked (:func:`unusable`) before
  a sandbox exists, so a spec the setup script cannot take never leaves a sandbox behind.
* **Never hang.** Initialisation is bounded by the backend's timeouts and ``initAttempts`` retries
  with backoff; when the budget is spent the sandbox is killed before the resource is marked Failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NoReturn

import pydantic

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
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.sandbox import kill_and_record
from swarm_operator.lifecycle.status import StatusBook, give_up
from swarm_operator.model import (
    AgentItem,
    AgentsStatus,
    InvalidSpecError,
    McpServerStatus,
    MetricsStatus,
    SwarmSandboxSpec,
    WorkspaceStatus,
)
from swarm_operator.secrets import SecretKeyRef
from swarm_operator.secrets import api_key_ref as _api_key_ref
from swarm_operator.secrets import default_api_key_ref as default_api_key_ref  # re-exported

logger = logging.getLogger("swarm_operator.lifecycle")

#: Where the workspace goes when spec.workspace.path is unset (relative to the home directory).
DEFAULT_WORKSPACE_PATH = "workspace"


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


def plan(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    envs: Mapping[str, str],
    settings: Settings,
    files: Mapping[str, str] | None = None,
) -> bootstrap.BootstrapPlan:
    """The setup script's whole input, from the spec and the names (never values) of its env."""
    workspace = spec.workspace
    return bootstrap.BootstrapPlan(
        session=bootstrap.session_name(ref.namespace, ref.name, ref.uid),
        socket=bootstrap.socket_name(ref.namespace, ref.name, ref.uid),
        agents=spec.agents,
        command=spec.agent.command,
        args=list(spec.agent.args),
        env_names=sorted(n for n in envs if not n.startswith(bootstrap.SECRET_ENV_PREFIX)),
        coordinator_enabled=spec.coordinator.enabled,
        coordinator_install=spec.coordinator.install or settings.coordinator_install,
        ready_timeout_s=settings.ready_timeout_seconds,
        install_timeout_s=bounds.install_timeout_seconds(settings),
        git_timeout_s=bounds.git_timeout_seconds(settings),
        restart_dead=spec.health_check.restart_dead_agents,
        max_restarts=spec.health_check.max_restarts,
        workdir=(workspace.path or DEFAULT_WORKSPACE_PATH) if workspace else "",
        workspace_repo=workspace.repo if workspace else "",
        workspace_ref=workspace.ref if workspace else "",
        workspace_username=workspace.username if workspace else "x-access-token",
        workspace_allow_floating=workspace.allow_floating_ref if workspace else False,
        agent_config=agentconfig.claude_config_json(spec, files or {}),
        mcp=agentconfig.mcp_config_json(spec),
    )


def teardown_plan(ref: ResourceRef) -> bootstrap.BootstrapPlan:
    """Enough of a plan to find the resource's tmux server: teardown needs no spec at all."""
    return bootstrap.BootstrapPlan(
        session=bootstrap.session_name(ref.namespace, ref.name, ref.uid),
        socket=bootstrap.socket_name(ref.namespace, ref.name, ref.uid),
        agents=1,
        command="true",
    )


def unusable(build_plan: Callable[[], bootstrap.BootstrapPlan], envs: Mapping[str, str]) -> list[str]:
    """What the schema let through but no process can take: NUL bytes, names the script reserves.

    A NUL cannot travel in an environment variable or an argument; the setup script's own names
    (``SWARM_*``) would be shadowed. Each problem names the field, never a secret value.
    """
    problems = [
        f"spec.agent.env[{name}]: the value holds a NUL byte, which no environment variable can carry"
        for name, value in envs.items()
        if "\x00" in value
    ]
    problems += [
        f"{_env_field(name)}: {size} bytes as NAME=value, over the {MAX_ENV_STRING_BYTES} "
        f"bytes Linux passes in one environment variable"
        for name, size in _env_sizes(envs)
        if size > MAX_ENV_STRING_BYTES
    ]
    if problems:
        return problems
    try:
        setup_plan = build_plan()
        # Rendered and measured here, before any sandbox exists: a script too big for one command
        # must never be found out after the create (it would leave a sandbox Initializing).
        size = len(bootstrap.render_setup(setup_plan, check=False).encode("utf-8"))
        if size > bootstrap.MAX_SCRIPT_BYTES:
            problems.append(_too_big(setup_plan, size))
    except InvalidSpecError as exc:
        problems.extend(exc.problems)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = _PLAN_FIELDS.get(str(err["loc"][0]) if err["loc"] else "", "spec")
            where = "".join(f"[{p}]" for p in err["loc"][1:])
            message = str(err.get("ctx", {}).get("error") or err["msg"])
            problems.append(f"{field}{where}: {message}")
    return problems


#: Linux's MAX_ARG_STRLEN (32 pages): the most one ``NAME=value`` string of a process's
#: environment may hold; a longer one makes the setup run fail with E2BIG inside the sandbox.
MAX_ENV_STRING_BYTES = 131_072


def _env_sizes(envs: Mapping[str, str]) -> list[tuple[str, int]]:
    return [
        (name, len(name.encode()) + 1 + len(value.encode("utf-8", "surrogatepass")))
        for name, value in envs.items()
    ]


def _env_field(name: str) -> str:
    if name.startswith(bootstrap.SECRET_ENV_PREFIX):
        return f"the Secret value behind {name} (workspace credentials or an MCP token)"
    return f"spec.agent.env[{name}]"


def _too_big(setup_plan: bootstrap.BootstrapPlan, size: int) -> str:
    """Which inputs make the script too big, largest first, so the message says what to shrink."""
    parts = {
        "spec.agent.args": sum(len(a.encode()) for a in setup_plan.args),
        "agent configuration (spec.agent.config ConfigMap and defaults)": len(
            setup_plan.agent_config.encode()
        ),
        "spec.mcp": len(setup_plan.mcp.encode()),
        "spec.workspace": len(setup_plan.workspace_repo.encode()) + len(setup_plan.workspace_ref.encode()),
    }
    biggest = ", ".join(f"{name} {n} bytes" for name, n in sorted(parts.items(), key=lambda p: -p[1]) if n)
    return (
        f"spec: the setup script these inputs render to is {size} bytes, over the "
        f"{bootstrap.MAX_SCRIPT_BYTES} bytes one command can carry ({biggest}); make them smaller"
    )


# Which spec field feeds each plan field, so a plan refusal names what the user wrote.
_PLAN_FIELDS = {
    "command": "spec.agent.command",
    "args": "spec.agent.args",
    "env_names": "spec.agent.env",
    "coordinator_install": "spec.coordinator.install",
    "agents": "spec.agents",
}


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
    ref, settings = book.ref, book.runtime.settings
    try:
        setup_plan = results.with_start(plan(ref, spec, envs, settings, files), book)
    except InvalidSpecError as exc:
        await give_up(book, Reason.INVALID_SPEC, f"invalid spec: {exc}")
    script = bootstrap.render_setup(setup_plan)
    # The budget is the sandbox's, in status: a restart (or a retry after another failure)
    # continues the count instead of starting over (see lifecycle.budget).
    first = bounds.used(book, sandbox.id) + 1
    cause = _last_cause(book) if first > settings.init_attempts else ""
    for attempt in range(first, settings.init_attempts + 1):
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
            cause = f"step init: {exc.reason}: {exc.message}"
        except ValueError as exc:  # no parsable report: the script could not do its job
            cause = (
                f"step init: setup script failed (exit {result.exit_code}): {exc}; "
                f"stderr: {logs.sandbox_text(result.stderr, ref.uid, limit=500)}"
            )
        else:
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
            await _refuse_unfixable(book, backend, sandbox, report)
            ready = report.agents.ready
            shortfall = registry_shortfall(spec, report)
            if report.ready and ready >= spec.agents and shortfall is None:
                bounds.clear(book, sandbox.id)
                book.set(
                    ConditionType.AGENTS_READY,
                    "True",
                    Reason.AVAILABLE,
                    f"{ready}/{spec.agents} agents running",
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
                return
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


def _last_cause(book: StatusBook) -> str:
    """Why the last counted attempt failed, as recorded (the budget was spent before a restart)."""
    agents = next((c for c in book.status.conditions if c.type == ConditionType.AGENTS_READY), None)
    if agents is not None and agents.status == "False" and agents.message:
        return agents.message
    return "the initialisation budget was spent before the operator restarted"


def count_command(book: StatusBook, *, failed: bool, executed: int = 1) -> None:
    """status.metrics.commandsExecuted/commandsFailed: every command the operator ran in the
    sandbox, timed-out ones (counted as failed) included."""
    metrics = book.status.metrics or MetricsStatus()
    metrics.commands_executed += executed
    if failed:
        metrics.commands_failed += 1
    book.status.metrics = metrics


def registry_shortfall(spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport) -> str | None:
    """With the coordinator enabled, every agent must be registered with it: the message saying
    how many are, or None when all are (or the coordinator is off). A discovery that failed is
    already an error of the run."""
    found = report.coordinator.discovered
    if not (spec.coordinator.enabled and report.coordinator.enabled) or found is None:
        return None
    if found < spec.agents:
        return f"{found}/{spec.agents} agents registered with the coordinator"
    return None


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


def report_text(stdout: str, uid: str) -> str:
    """A script's stdout, redacted with the resource's (``uid``) secrets before it is parsed.

    Everything read from a report (step errors, gateway messages, workspace fields) and every parse
    error (which quotes cut pieces of the output) then carries no secret value: redacting after a
    cut could miss a secret cut in half.
    """
    return logs.REDACTOR.redact(stdout, uid)


def mcp_down(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None) -> bool:
    """The spec wants MCP servers and the last look found the gateway not answering."""
    return bool(spec.mcp) and gateway is not None and not gateway.gateway


def mcp_items(spec: SwarmSandboxSpec, gateway: bootstrap.McpReport | None, uid: str) -> list[McpServerStatus]:
    """status.mcp from one look at the gateway (a setup run or a health probe).

    The messages are the gateway's own words (its log lines, a server's error), so sandbox text:
    redacted with the resource's (``uid``) secrets and bounded before they reach status.
    """
    items = []
    for entry in spec.mcp:
        if gateway is None:
            state, message = "Unknown", "the gateway was not checked (see the Ready condition)"
        elif not gateway.gateway:
            state, message = "Failed", gateway.error or "the MCP gateway is not running"
            if gateway.restarts:
                message += f" (gateway restarted {gateway.restarts} time(s))"
        elif gateway.servers is None:
            # The gateway answered MCP but reports no per-server health (E2B's does not).
            state, message = "Ready", ""
        elif (server := gateway.servers.get(entry.server_key)) is None:
            state, message = "Failed", f"the gateway does not report server {entry.server_key}"
        else:
            state, message = ("Ready" if server.ok else "Failed"), server.message
        items.append(
            McpServerStatus(
                name=entry.name, state=state, message=logs.sandbox_text(message, uid, limit=1024, keep="head")
            )
        )
    return items


def record_tools(book: StatusBook, spec: SwarmSandboxSpec, report: bootstrap.BootstrapReport) -> None:
    """status.workspace and status.mcp from the setup report (what the sandbox really has)."""
    if spec.workspace is None:
        book.status.workspace = None
    elif report.workspace is not None:
        # Echoed by the script from inside the sandbox: redacted, and bounded to what status holds
        # (an overlong value would otherwise fail the status model, not just look odd).
        def text(value: str | None, limit: int) -> str | None:
            return None if value is None else logs.sandbox_text(value, book.ref.uid, limit=limit, keep="head")

        workspace = report.workspace
        book.status.workspace = WorkspaceStatus(
            repo=text(workspace.repo, 2048),
            ref=text(workspace.ref, 255),
            commit=text(workspace.commit, 64),
            path=text(workspace.path, 4096),
            push=book.status.workspace.push if book.status.workspace else None,  # lifecycle.results'
        )
    if not spec.mcp:
        book.status.mcp = None
        return
    book.status.mcp = mcp_items(spec, report.mcp, book.ref.uid)


def record_agents(
    book: StatusBook,
    spec: SwarmSandboxSpec,
    panes: Sequence[bootstrap.PaneReport],
    ready: int,
    restarted: Iterable[int] = (),
) -> None:
    """status.agents from the panes a setup run or a probe saw; restart counts never go down."""
    previous = {item.id: item for item in (book.status.agents.items if book.status.agents else [])}
    restarted = set(restarted)
    items = []
    for pane in sorted(panes, key=lambda p: p.index)[: spec.agents]:
        old = previous.get(pane.index)
        items.append(
            AgentItem(
                id=pane.index,
                pane=pane.pane_id,
                state="Running" if pane.alive else "Dead",
                restarts=max(pane.restarts, (old.restarts if old else 0) + (pane.index in restarted)),
            )
        )
    book.status.agents = AgentsStatus(desired=spec.agents, ready=ready, items=items)
    if restarted:
        book.runtime.metrics.agents_restarted(len(restarted))
        metrics = book.status.metrics or MetricsStatus()
        metrics.restarts += len(restarted)
        book.status.metrics = metrics
