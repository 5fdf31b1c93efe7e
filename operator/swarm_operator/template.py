"""The prebuilt E2B template for swarms: ``swarm-operator template``.

A sandbox from this template reaches Ready without installing anything: tmux, git, Python, Node.js,
the agent CLI and the coordinator are in the image, and the coordinator's pin is recorded in
``~/.swarm-template/coordinator``; the setup script treats a ``coordinator.install`` equal to that
pin as satisfied (any other pin is installed into the sandbox as before). Without this template the
setup script installs what is missing on the first run (its ``provision`` step), from the same pins:
:data:`~swarm_operator.model.COORDINATOR_PIN` and
:data:`~swarm_operator.bootstrap.CLAUDE_CODE_PACKAGE` are the defaults here and there, one copy each.

The default base is Debian 13 (trixie): its Python 3.13 satisfies claudeswarm (>= 3.12), which
bookworm's 3.11 does not.

The definition uses the ``e2b`` SDK's template builder (reached through the backend package, the only
importer of the SDK), so it can be printed offline (as the
Dockerfile-like text the SDK derives, or its JSON) and built with the user's API key, which is read
from the environment (``E2B_API_KEY``), never from the command line.

For MCP, build ``--from-template mcp-gateway`` (E2B's image that ships its gateway); the default
Debian base has no gateway, and MCP entries then report Failed.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from typing import Any, Final

from swarm_operator.backend import build_template, new_template, render_template
from swarm_operator.bootstrap import CLAUDE_CODE_PACKAGE, NPM_PINNED
from swarm_operator.model import COORDINATOR_PIN, is_pinned_install

__all__ = ["DEFAULT_BASE", "definition", "main_build", "render"]

DEFAULT_BASE: Final = "debian:trixie"
SYSTEM_PACKAGES: Final = ("tmux", "git", "ca-certificates", "curl", "python3", "python3-venv",
                          "python3-pip", "nodejs", "npm", "util-linux")
MARKER: Final = "/home/user/.swarm-template/coordinator"


def definition(*, coordinator: str | None = None, agent_cli: str | None = None, base: str | None = None,
               from_template: str | None = None) -> Any:
    """The template as an ``e2b.AsyncTemplate`` builder chain; None means the operator's own pin (or
    base). Raises ValueError for an unpinned coordinator or agent CLI: a template is built once and
    used for months; it must not drift."""
    coordinator = COORDINATOR_PIN if coordinator is None else coordinator
    agent_cli = CLAUDE_CODE_PACKAGE if agent_cli is None else agent_cli
    base = DEFAULT_BASE if base is None else base

    if coordinator == "preinstalled" or not is_pinned_install(coordinator):
        raise ValueError(f"--coordinator {coordinator!r} must be pinned: name==X.Y.Z or "
                         "git+https://host/repo@<40-hex commit SHA>")
    if not NPM_PINNED.match(agent_cli):
        raise ValueError(f"--agent-cli {agent_cli!r} must be an exact npm version, e.g. "
                         f"{CLAUDE_CODE_PACKAGE}")
    start = new_template()
    builder = start.from_template(from_template) if from_template else start.from_image(base)
    return (
        builder
        .apt_install(list(SYSTEM_PACKAGES), no_install_recommends=True)
        .npm_install(agent_cli, g=True)
        .run_cmd(f"pip install --break-system-packages --no-cache-dir -- {shlex.quote(coordinator)}", user="root")
        .run_cmd(f"mkdir -p /home/user/.swarm-template && printf %s {shlex.quote(coordinator)} > {MARKER}",
                 user="user")
        .set_workdir("/home/user")
    )


def render(template: Any, fmt: str = "dockerfile") -> str:
    """The definition as text, offline: ``dockerfile`` (readable steps) or ``json`` (the SDK's)."""
    return render_template(template, fmt)


def main_build(template: Any, name: str, *, cpu_count: int | None = None, memory_mb: int | None = None) -> int:
    """Build ``template`` as ``name`` with the key in ``E2B_API_KEY``; build logs go to stderr."""
    if not os.environ.get("E2B_API_KEY"):
        print("swarm-operator template: set E2B_API_KEY (the key is read from the environment only)",
              file=sys.stderr)
        return 2

    def log(entry: Any) -> None:
        print(str(entry), file=sys.stderr)

    info = asyncio.run(build_template(template, name, cpu_count=cpu_count, memory_mb=memory_mb, on_log=log))
    print(getattr(info, "template_id", None) or info)
    return 0
