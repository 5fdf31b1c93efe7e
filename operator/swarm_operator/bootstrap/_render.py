"""Rendering: a constant script body behind a block of shell-quoted assignments.

The only place user text enters a script is :func:`_assign`, and it always goes through
:func:`shlex.quote`. The bodies (``*.sh`` next to this module) are constant: they read the values
from variables and pass them on as argv, so no value is ever parsed as shell code — not by bash, not
by tmux (commands with several arguments are executed without a shell), not by pip (``--``).
Secret values are never rendered at all: only their *names* are, and the script reads the values
once from its stdin (:func:`secret_input`) into variables it never exports.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from importlib import resources

from swarm_operator.bootstrap._plan import MCP_GATEWAY_PORT, BootstrapPlan
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END

__all__ = [
    "MAX_SCRIPT_BYTES",
    "render_probe",
    "render_setup",
    "render_task",
    "render_teardown",
    "secret_input",
    "task_input",
]

# The SDK runs a command as `bash -l -c SCRIPT`: the script is one argv string, which Linux caps at
# 128 KiB (MAX_ARG_STRLEN). Refuse early and clearly rather than fail as E2BIG inside the sandbox.
MAX_SCRIPT_BYTES = 120_000

_HEADER = """\
#!/bin/bash
# swarm-operator bootstrap ({kind}); rendered, do not edit. Exit 0 means a report was printed.
set -euo pipefail
umask 077
"""


# After the tmux server is gone, how long teardown waits for agents to finish exiting (they got a
# SIGHUP) before it reports them not gone.
_EXIT_WAIT_MS = 5000


def _body(name: str) -> str:
    return (resources.files(__package__) / name).read_text(encoding="utf-8")


def _assign(name: str, value: str | int | bool | Iterable[str]) -> str:
    if isinstance(value, bool):
        return f"{name}={int(value)}"
    if isinstance(value, int):
        return f"{name}={value}"
    if isinstance(value, str):
        return f"{name}={shlex.quote(value)}"
    return f"{name}=(" + " ".join(shlex.quote(v) for v in value) + ")"


def _seconds(value: float) -> str:
    # `sleep` takes decimals; keep a fixed, locale-free format.
    return f"{value:.3f}"


def _render(
    kind: str, plan: BootstrapPlan, extra: dict[str, str | int | bool | Iterable[str]], *, check: bool = True
) -> str:
    common: dict[str, str | int | bool | Iterable[str]] = {
        "SWARM_SESSION": plan.session,
        "SWARM_SOCKET": plan.socket,
        "SWARM_AGENTS": plan.agents,
        "SWARM_WORKDIR": plan.workdir,
        "SWARM_STATE_DIR": plan.state_dir,
        "SWARM_COORD_ENABLED": plan.coordinator_enabled,
        "SWARM_POLL_INTERVAL_S": _seconds(plan.poll_interval_s),
        "SWARM_BOOT_TAG": f"swarm-boot:{plan.session}",
        "SWARM_MARK_BEGIN": MARK_BEGIN,
        "SWARM_MARK_END": MARK_END,
    }
    lines = [_HEADER.format(kind=kind)]
    lines += [_assign(k, v) for k, v in {**common, **extra}.items()]
    script = "\n".join(lines) + "\n" + _body("_common.sh") + _body(f"{kind}.sh")
    size = len(script.encode("utf-8"))
    if check and size > MAX_SCRIPT_BYTES:
        raise ValueError(
            f"the rendered {kind} script is {size} bytes; at most {MAX_SCRIPT_BYTES} "
            "fit in one command (are the agent args huge?)"
        )
    return script


def render_setup(plan: BootstrapPlan, *, check: bool = True) -> str:
    """The idempotent setup script: create, rerun, scale to ``plan.agents``, restart dead agents.

    Hand it the agent env values (``plan.env_names``) and the script-only ``SWARM_SECRET_*`` values
    (workspace password, MCP tokens) on its stdin, encoded by :func:`secret_input`, never through
    its environment; parse its stdout with :func:`parse_report`. On a template that lacks tmux, the agent CLI or the coordinator the
    first run installs them: allow ``plan.provision_budget_s`` on top of the command's own timeout. ``check=False`` returns
    an oversized script instead of raising, for a caller that measures it and says which inputs to
    shrink.
    """
    return _render(
        "setup",
        plan,
        {
            "SWARM_COMMAND": plan.command,
            "SWARM_ARGS": plan.args,
            "SWARM_ENV_NAMES": plan.env_names,
            "SWARM_COORD_INSTALL": plan.coordinator_install,
            "SWARM_AGENT_CLI": plan.agent_cli_install or "",
            "SWARM_AGENT_CLI_INTEGRITY": plan.agent_cli_integrity or "",
            "SWARM_AGENT_CLI_NATIVE": [field for triple in plan.agent_cli_native or () for field in triple],
            "SWARM_COORD_LOCK": plan.coordinator_lock or "",
            "SWARM_PYTHON": plan.python,
            "SWARM_COORD_PYTHON": plan.coordinator_python,
            "SWARM_UV_PIN": plan.uv_pin,
            "SWARM_READY_TIMEOUT_MS": math.ceil(plan.ready_timeout_s * 1000),
            "SWARM_SETTLE_MS": math.ceil(plan.settle_s * 1000),
            "SWARM_INSTALL_TIMEOUT_S": plan.install_timeout_s,
            "SWARM_GIT_TIMEOUT_S": plan.git_timeout_s,
            "SWARM_DISCOVER_TIMEOUT_S": plan.discover_timeout_s,
            "SWARM_LOCK_TIMEOUT_S": plan.lock_timeout_s,
            "SWARM_RESTART_DEAD": plan.restart_dead,
            "SWARM_MAX_RESTARTS": -1 if plan.max_restarts is None else plan.max_restarts,
            "SWARM_WIDTH": plan.window_width,
            "SWARM_HEIGHT": plan.window_height,
            "SWARM_WS_REPO": plan.workspace_repo,
            "SWARM_WS_REF": plan.workspace_ref,
            "SWARM_WS_USERNAME": plan.workspace_username,
            "SWARM_WS_FLOATING_OK": plan.workspace_allow_floating,
            "SWARM_WS_START": plan.workspace_start,
            "SWARM_AGENT_CONFIG": plan.agent_config,
            "SWARM_MCP": plan.mcp,
            "SWARM_MCP_GATEWAY": plan.mcp_gateway,
            "SWARM_MCP_PORT": plan.mcp_port,
            "SWARM_MCP_E2B_PORT": MCP_GATEWAY_PORT,
            "SWARM_MCP_START_TIMEOUT_S": plan.mcp_start_timeout_s,
        },
        check=check,
    )


def secret_input(values: Mapping[str, str]) -> bytes:
    """The setup script's stdin: ``NAME NUL VALUE NUL`` per value, then an empty name.

    The script reads it at its start into shell variables it never exports, so no value is in the
    environment of the setup process (``/proc/PID/environ``, envd's process list) nor of anything it
    starts. NUL cannot occur in a name or an environment value, so the framing is unambiguous."""
    out = bytearray()
    for name, value in values.items():
        if "\x00" in name or "\x00" in value or not name:
            raise ValueError(f"secret {name!r}: NUL cannot be passed to a process")
        out += name.encode() + b"\x00" + value.encode("utf-8", "surrogateescape") + b"\x00"
    return bytes(out + b"\x00")


#: What the probe reads of the coordinator's message log, per file (claudeswarm rotates it at 10 MB),
#: the most commits it counts, and how long any one of its progress reads may take: a log or a
#: workspace an agent made huge costs the probe a bounded amount, never the whole probe timeout.
LOG_SCAN_BYTES = 16 * 1024 * 1024
PROGRESS_MAX = 100_000
PROGRESS_TIMEOUT_S = 5


def render_probe(plan: BootstrapPlan, *, base_commit: str | None = None) -> str:
    """A read-only health probe (panes alive/dead, commands, coordinator registry, and the MCP
    gateway through one MCP exchange when the spec configures servers), with the agents' progress
    measured against ``base_commit`` (the workspace's pinned commit; without one, no git figures);
    see :func:`parse_health`."""
    base = base_commit if base_commit is not None and re.fullmatch(r"[0-9a-f]{40}", base_commit) else ""
    return _render(
        "probe",
        plan,
        {
            "SWARM_MCP_ON": bool(plan.mcp),
            "SWARM_MCP_PORT": plan.mcp_port,
            "SWARM_WS_BASE": base,
            "SWARM_LOG_SCAN_BYTES": LOG_SCAN_BYTES,
            "SWARM_PROGRESS_MAX": PROGRESS_MAX,
            "SWARM_PROGRESS_TIMEOUT_S": PROGRESS_TIMEOUT_S,
        },
    )


def render_task(plan: BootstrapPlan, marks: Mapping[int, str]) -> str:
    """Type each pane's prompt into it, once: ``marks`` maps a pane index to its prompt's hash,
    which the script compares with (and after typing writes to) the pane's mark in the sandbox, so
    a rerun (an operator that crashed before recording the delivery) types nothing twice. The
    prompts themselves go on stdin (:func:`task_input`): a prompt can hold anything, and a command
    line is visible to every process in the sandbox. Parse its stdout with :func:`parse_task`."""
    return _render("task", plan, {"SWARM_TASK_PANES": [f"{i}:{h}" for i, h in sorted(marks.items())]})


def task_input(prompts: Mapping[int, str]) -> bytes:
    """The task script's stdin: ``INDEX NUL PROMPT NUL`` per pane, then an empty index (the
    framing of :func:`secret_input`)."""
    return secret_input({str(i): p for i, p in sorted(prompts.items())})


def render_teardown(plan: BootstrapPlan, *, grace_s: float = 10.0) -> str:
    """Ctrl-C every agent, wait up to ``grace_s`` for them to end, kill the tmux server, drop the env file."""
    if not 0 <= grace_s <= 3600:
        raise ValueError("grace_s must be within 0..3600 seconds")
    return _render(
        "teardown", plan, {"SWARM_GRACE_MS": math.ceil(grace_s * 1000), "SWARM_EXIT_WAIT_MS": _EXIT_WAIT_MS}
    )
