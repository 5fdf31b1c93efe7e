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

Supply chain: what the build installs is pinned by content where the builder allows it.

* The agent CLI: the operator's pin of Claude Code is packed (``npm pack``) and its sha512 checked
  against the registry's ``dist.integrity`` recorded in
  :data:`~swarm_operator.bootstrap.NPM_INTEGRITY` before ``npm install -g`` installs that file; a
  mismatch fails the build; its native per-platform package for the build machine is packed and
  checked the same way and installed beside it with ``--omit=optional``. A custom ``--agent-cli`` pin
  with no recorded integrity is installed by name (npm checks it against the registry only).
* The coordinator: for the default pin its dependencies come from the shipped lock
  (``bootstrap/coordinator.lock``, copied into the build context) with ``--require-hashes
  --only-binary=:all:`` (wheels only), and the coordinator itself from its git commit with
  ``--no-deps --no-build-isolation``. A custom ``--coordinator`` pin installs as pip resolves it.
* The base image is pinned by digest: :data:`DEFAULT_BASE` names Debian's dated ``trixie-20260918``
  build by the digest of its multi-platform image index, as Docker's official-images team publishes
  it (docker-library/repo-info ``repos/debian/remote/trixie-20260918.md``, commit 0de62c7b). A
  registry that serves other bytes under that reference fails the pull instead of changing the
  template. The digest was read from that record, not from a pull (Docker Hub is not reachable where
  this was written). Any other ``--base`` must carry its own ``@sha256:<digest>`` or the builder
  refuses it (``allow_unpinned_base`` lifts that, for a base the user vouches for). A
  ``--from-template`` base (an E2B template, e.g. ``mcp-gateway``) is a name E2B resolves: it has no
  digest to pin.

The definition uses the ``e2b`` SDK's template builder (reached through the backend package, the only
importer of the SDK), so it can be printed offline (as the
Dockerfile-like text the SDK derives, or its JSON) and built with the user's API key, which is read
from the environment (``E2B_API_KEY``), never from the command line.

For MCP, build ``--from-template mcp-gateway`` (E2B's image that ships its gateway); the default
Debian base has no gateway, and MCP entries then report Failed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shlex
import sys
from importlib import resources
from typing import Any, Final

from swarm_operator.backend import build_template, new_template, render_template
from swarm_operator.bootstrap import (
    CLAUDE_CODE_PACKAGE,
    NPM_INTEGRITY,
    NPM_NATIVE,
    NPM_PINNED,
    coordinator_lock,
)
from swarm_operator.model import COORDINATOR_PIN, is_pinned_install

__all__ = ["DEFAULT_BASE", "definition", "main_build", "render"]

#: docker-library/repo-info repos/debian/remote/trixie-20260918.md (commit 0de62c7b27b3407abe87eb16449e612934d145e2):
#: ``docker pull debian@sha256:9cc0...585c``, "Manifest MIME: application/vnd.oci.image.index.v1+json",
#: 16 entries (8 Linux platforms, amd64 and arm64 among them, each with its attestation), built
#: "Fri, 18 Sep 2026" by ``debian.sh ... 'trixie'``.
DEFAULT_BASE: Final = (
    "debian:trixie-20260918@sha256:9cc080028c43b27d2074d63a5f9caf7166d731494965616c1a6d2827a004585c"
)
#: An image reference pinned by content: ``name[:tag]@sha256:<64 hex>``.
PINNED_IMAGE: Final = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
SYSTEM_PACKAGES: Final = (
    "tmux",
    "git",
    "ca-certificates",
    "curl",
    "python3",
    "python3-venv",
    "python3-pip",
    "nodejs",
    "npm",
    "util-linux",
)
MARKER: Final = "/home/user/.swarm-template/coordinator"
#: Where the build puts the coordinator's lock (copied from the package).
LOCK_IN_IMAGE: Final = "/tmp/swarm-coordinator.lock"
_PIP: Final = "pip install --break-system-packages --no-cache-dir"


def _hex(integrity: str) -> str:
    return base64.b64decode(integrity.removeprefix("sha512-")).hex()


def _npm_verified(package: str, integrity: str, native: dict[str, str] | None = None) -> str:
    """One RUN line: pack ``package`` (and, when ``native`` maps ``uname -m`` to its native
    per-platform package, the one for the build machine), refuse each unless its sha512 is the
    pinned one, then install exactly those files (``--omit=optional``: npm fetches nothing else)."""
    line = (
        'd=$(mktemp -d) && cd "$d" && npm pack --silent '
        + shlex.quote(package)
        + f' && printf "%s  %s\\n" {_hex(integrity)} *.tgz | sha512sum -c --strict -'
    )
    if not native:
        return line + ' && npm install -g "$d"/*.tgz && cd / && rm -rf "$d"'
    cases = " ".join(
        f"{machine}) n={shlex.quote(pkg)}; h={_hex(NPM_INTEGRITY[pkg])};;"
        for machine, pkg in sorted(native.items())
    )
    return (
        line + f' && case "$(uname -m)" in {cases} *) echo "no pinned native package for $(uname -m)" >&2;'
        ' exit 1;; esac && mkdir native && cd native && npm pack --silent "$n"'
        ' && printf "%s  %s\\n" "$h" *.tgz | sha512sum -c --strict - && cd "$d"'
        ' && npm install -g --omit=optional "$d"/*.tgz "$d"/native/*.tgz && cd / && rm -rf "$d"'
    )


def definition(
    *,
    coordinator: str | None = None,
    agent_cli: str | None = None,
    base: str | None = None,
    from_template: str | None = None,
    allow_unpinned_base: bool = False,
) -> Any:
    """The template as an ``e2b.AsyncTemplate`` builder chain; None means the operator's own pin (or
    base). Raises ValueError for an unpinned coordinator, agent CLI or base image (unless
    ``allow_unpinned_base``): a template is built once and used for months; it must not drift."""
    coordinator = COORDINATOR_PIN if coordinator is None else coordinator
    agent_cli = CLAUDE_CODE_PACKAGE if agent_cli is None else agent_cli
    base = DEFAULT_BASE if base is None else base
    if not from_template and not allow_unpinned_base and not PINNED_IMAGE.match(base):
        raise ValueError(
            f"--base {base!r} must be pinned by digest: IMAGE[:TAG]@sha256:<64 hex> (a tag can be "
            "moved to other bytes; `docker buildx imagetools inspect IMAGE:TAG` prints the digest)"
        )

    if coordinator == "preinstalled" or not is_pinned_install(coordinator):
        raise ValueError(
            f"--coordinator {coordinator!r} must be pinned: name==X.Y.Z or "
            "git+https://host/repo@<40-hex commit SHA>"
        )
    if not NPM_PINNED.match(agent_cli):
        raise ValueError(
            f"--agent-cli {agent_cli!r} must be an exact npm version, e.g. {CLAUDE_CODE_PACKAGE}"
        )
    lock_pin, _ = coordinator_lock()
    start = new_template(file_context_path=str(resources.files("swarm_operator.bootstrap")))
    builder = start.from_template(from_template) if from_template else start.from_image(base)
    builder = builder.apt_install(list(SYSTEM_PACKAGES), no_install_recommends=True)
    integrity = NPM_INTEGRITY.get(agent_cli)
    builder = (
        builder.run_cmd(_npm_verified(agent_cli, integrity, NPM_NATIVE.get(agent_cli)), user="root")
        if integrity
        else builder.npm_install(agent_cli, g=True)
    )
    if coordinator == lock_pin:
        builder = (
            builder.copy("coordinator.lock", LOCK_IN_IMAGE)
            .run_cmd(f"{_PIP} --require-hashes --only-binary=:all: -r {LOCK_IN_IMAGE}", user="root")
            .run_cmd(f"{_PIP} --no-deps --no-build-isolation -- {shlex.quote(coordinator)}", user="root")
        )
    else:
        builder = builder.run_cmd(f"{_PIP} -- {shlex.quote(coordinator)}", user="root")
    return builder.run_cmd(
        f"mkdir -p /home/user/.swarm-template && printf %s {shlex.quote(coordinator)} > {MARKER}", user="user"
    ).set_workdir("/home/user")


def render(template: Any, fmt: str = "dockerfile") -> str:
    """The definition as text, offline: ``dockerfile`` (readable steps) or ``json`` (the SDK's)."""
    return render_template(template, fmt)


def main_build(
    template: Any, name: str, *, cpu_count: int | None = None, memory_mb: int | None = None
) -> int:
    """Build ``template`` as ``name`` with the key in ``E2B_API_KEY``; build logs go to stderr."""
    if not os.environ.get("E2B_API_KEY"):
        print(
            "swarm-operator template: set E2B_API_KEY (the key is read from the environment only)",
            file=sys.stderr,
        )
        return 2

    def log(entry: Any) -> None:
        print(str(entry), file=sys.stderr)

    info = asyncio.run(build_template(template, name, cpu_count=cpu_count, memory_mb=memory_mb, on_log=log))
    print(getattr(info, "template_id", None) or info)
    return 0
