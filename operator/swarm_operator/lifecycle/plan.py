"""The setup script's whole input from the spec (:func:`plan`), and the check that a sandbox could
take it (:func:`unusable`), made before any sandbox exists so a spec the script cannot take never
leaves a sandbox behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pydantic

from swarm_operator import agentconfig, bootstrap
from swarm_operator.config import Settings
from swarm_operator.lifecycle import bounds
from swarm_operator.lifecycle.runtime import ResourceRef
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec

#: Where the workspace goes when spec.workspace.path is unset (relative to the home directory).
DEFAULT_WORKSPACE_PATH = "workspace"


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
