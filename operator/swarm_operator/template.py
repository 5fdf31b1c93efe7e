"""The prebuilt E2B template for swarms: ``swarm-operator template``.

A sandbox from this template reaches Ready without installing anything: tmux, git, Python, Node.js,
the agent CLI and the coordinator are in the image, and the coordinator's pin is recorded in
``~/.swarm-template/coordinator``; the setup script treats a ``coordinator.install`` equal to that
pin as satisfied (any other pin is installed into the sandbox as before).

The definition uses the ``e2b`` SDK's template builder, so it can be printed offline (as the
Dockerfile-like text the SDK derives, or its JSON) and built with the user's API key, which is read
from the environment (``E2B_API_KEY``), never from the command line.

For MCP, build ``--from-template mcp-gateway`` (E2B's image that ships its gateway); the default
Debian base has no gateway, and MCP entries then report Failed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from typing import Any, Final

from swarm_operator.model import is_pinned_install

__all__ = ["definition", "main_build", "render"]

#: An exact npm package version, e.g. ``@anthropic-ai/claude-code@2.0.14``: no ranges, no tags.
_NPM_PINNED: Final = re.compile(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$")
SYSTEM_PACKAGES: Final = ("tmux", "git", "ca-certificates", "curl", "python3", "python3-venv",
                          "python3-pip", "nodejs", "npm", "util-linux")
MARKER: Final = "/home/user/.swarm-template/coordinator"


def definition(*, coordinator: str, agent_cli: str, base: str = "debian:bookworm",
               from_template: str | None = None) -> Any:
    """The template as an ``e2b.AsyncTemplate`` builder chain. Raises ValueError for an unpinned
    coordinator or agent CLI: a template is built once and used for months; it must not drift."""
    from e2b import AsyncTemplate

    if coordinator == "preinstalled" or not is_pinned_install(coordinator):
        raise ValueError(f"--coordinator {coordinator!r} must be pinned: name==X.Y.Z or "
                         "git+https://host/repo@<40-hex commit SHA>")
    if not _NPM_PINNED.match(agent_cli):
        raise ValueError(f"--agent-cli {agent_cli!r} must be an exact npm version, e.g. "
                         "@anthropic-ai/claude-code@2.0.14")
    start = AsyncTemplate()
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
    from e2b import AsyncTemplate

    return AsyncTemplate.to_json(template) if fmt == "json" else AsyncTemplate.to_dockerfile(template)


def main_build(template: Any, name: str, *, cpu_count: int | None = None, memory_mb: int | None = None) -> int:
    """Build ``template`` as ``name`` with the key in ``E2B_API_KEY``; build logs go to stderr."""
    from e2b import AsyncTemplate

    if not os.environ.get("E2B_API_KEY"):
        print("swarm-operator template: set E2B_API_KEY (the key is read from the environment only)",
              file=sys.stderr)
        return 2

    def log(entry: Any) -> None:
        print(str(entry), file=sys.stderr)

    info = asyncio.run(AsyncTemplate.build(template, name, cpu_count=cpu_count, memory_mb=memory_mb,
                                           on_build_logs=log))
    print(getattr(info, "template_id", None) or info)
    return 0
