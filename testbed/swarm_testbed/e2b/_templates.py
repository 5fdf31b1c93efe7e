"""E2B's stock templates as the emulator models them, and the offline stand-ins for installing tools.

Each emulated sandbox runs the host's programs, so a stock template is modelled by what it ADDS to
and HIDES from them inside the sandbox's private mount namespace (``_isolation``):

- ``base`` — e2b-dev/infra packages/orchestrator/pkg/template/build/phases/base (templates/base/
  e2b.Dockerfile): build-essential, curl, git, util-linux, gh, Node and yarn; **no tmux, no agent CLI,
  no coordinator**. finalize/configure.sh: ``useradd -m user`` and ``user ALL=(ALL:ALL) NOPASSWD: ALL``.
  The host's ``tmux``/``claude``/``claudeswarm``/``mcp-gateway`` are hidden (an overlay whiteout over
  ``/usr/bin``), and a private ``/usr/local/bin`` holds the stand-ins ``sudo``, ``apt-get``/``apt``
  and ``npm`` that install offline (see ``bin/``).
- ``anthropic-claude-code`` — E2B's published template with the Claude Code CLI: ``base`` plus a
  ``claude`` stand-in (the playground's).
- ``mcp-gateway`` — the SDK's ``Sandbox.default_mcp_template``: ``base`` plus the stand-in
  ``mcp-gateway`` speaking E2B's contract (``bin/mcp-gateway``).

Any other template name stands for a user's own template (``swarm-operator template --build``): the
host's tools as they are, plus ``home_template`` — which is how tests opt into tools by name.

The coordinator (PyPI ``claude-swarm``, CLI ``claudeswarm``) and ``uv`` (for a managed Python when
``python3`` is older than the coordinator needs) are served as stand-in wheels from the emulator's own
``/_pypi/simple/`` index; every sandbox gets ``PIP_INDEX_URL`` pointing there. That
variable exists only in the emulator (a real sandbox reaches pypi.org).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent
STANDIN_DIR = _HERE / "bin"
PLAYGROUND_DIR = _HERE.parent / "playground" / "bin"

#: Programs no stock template ships (templates/base/e2b.Dockerfile): hidden when the host has them.
HIDDEN_PROGRAMS = ("tmux", "claude", "claudeswarm", "mcp-gateway")
#: Hidden programs the stand-in ``apt-get install`` can bring back (the host's real binary).
APT_INSTALLABLE = ("tmux",)
#: Packages ``apt-get install`` reports as already present in ``base`` (e2b.Dockerfile).
APT_PRESENT = (
    "build-essential",
    "curl",
    "git",
    "util-linux",
    "gh",
    "nodejs",
    "yarn",
    "ca-certificates",
    "python3",
    "python3-venv",
    "python3-pip",
    "sudo",
)
#: The npm package whose global install puts the ``claude`` stand-in on PATH.
CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
#: The coordinator's PyPI name; its wheel carries the ``claudeswarm`` stand-in.
COORDINATOR_PROJECT = "claude-swarm"
#: uv's PyPI name; its stand-in wheel carries ``uv/__main__.py`` (``bin/uv``): the setup script
#: installs uv with pip when the template's python3 is older than the coordinator needs.
UV_PROJECT = "uv"


@dataclass(frozen=True)
class TemplateImage:
    """What a stock template's sandbox sees on top of the host: stand-ins in ``/usr/local/bin``
    (name -> source file) and the host programs hidden from it."""

    name: str
    tools: tuple[tuple[str, Path], ...]
    hidden: tuple[str, ...] = HIDDEN_PROGRAMS


_INSTALLERS = (
    ("sudo", STANDIN_DIR / "sudo"),
    ("apt-get", STANDIN_DIR / "apt-get"),
    ("apt", STANDIN_DIR / "apt-get"),
    ("npm", STANDIN_DIR / "npm"),
)

STOCK_IMAGES = {
    "base": TemplateImage("base", _INSTALLERS),
    "anthropic-claude-code": TemplateImage(
        "anthropic-claude-code", (*_INSTALLERS, ("claude", PLAYGROUND_DIR / "claude"))
    ),
    "mcp-gateway": TemplateImage("mcp-gateway", (*_INSTALLERS, ("mcp-gateway", STANDIN_DIR / "mcp-gateway"))),
}


# ----- the stand-in PyPI index ---------------------------------------------------------------------
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,3}$")
#: Versions the index lists for the coordinator: any pin of the form M.m.p within these bounds is
#: installable (the operator pins an exact version; the emulator cannot know which ahead of time).
_LISTED = [f"{a}.{b}.{c}" for a in range(0, 3) for b in range(0, 21) for c in range(0, 21)]
_UV_LISTED = [f"0.{b}.{c}" for b in range(0, 21) for c in range(0, 31)]


def normalise(project: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", project).lower()


def wheel_name(version: str) -> str:
    return f"claude_swarm-{version}-py3-none-any.whl"


def index_page(project: str) -> str | None:
    """The PEP 503 project page (None: no such project — pip then says it found no version)."""
    project = normalise(project)
    if project not in (COORDINATOR_PROJECT, UV_PROJECT):
        return None
    dist = project.replace("-", "_")
    names = [
        f"{dist}-{v}-py3-none-any.whl" for v in (_LISTED if project == COORDINATOR_PROJECT else _UV_LISTED)
    ]
    links = "\n".join(f'<a href="../../files/{n}">{n}</a><br/>' for n in names)
    return f"<!DOCTYPE html>\n<html><body><h1>{html.escape(project)}</h1>\n{links}\n</body></html>\n"


def coordinator_wheel(filename: str) -> bytes | None:
    """A stand-in wheel, built on demand in memory: ``claude-swarm`` installs the ``claudeswarm``
    stand-in as a script; ``uv`` installs the package ``uv`` whose ``__main__`` is the uv stand-in
    (``python3 -m uv``, as the real wheel offers)."""
    match = re.fullmatch(r"(claude_swarm|uv)-([0-9.]+)-py3-none-any\.whl", filename)
    if match is None or not _VERSION.match(match.group(2)):
        return None
    version = match.group(2)
    dist = f"{match.group(1)}-{version}"
    if match.group(1) == "uv":
        project, payload = (
            UV_PROJECT,
            {
                "uv/__init__.py": b"",
                "uv/__main__.py": (STANDIN_DIR / "uv").read_bytes(),
            },
        )
    else:
        project, payload = (
            COORDINATOR_PROJECT,
            {
                f"{dist}.data/scripts/claudeswarm": (PLAYGROUND_DIR / "claudeswarm").read_bytes(),
            },
        )
    files = {
        **payload,
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
            f"Summary: STAND-IN for {project} served by the E2B emulator (not the real tool)\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: swarm-operator-e2b-emulator\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (
                0o100755 if name.endswith("/claudeswarm") else 0o100644
            ) << 16  # S_IFREG: pip keeps +x
            wheel.writestr(info, data)
    return buffer.getvalue()
