"""E2B-compatible emulator: E2B's control plane and envd on one port, sandboxes as local processes.

Point the unmodified ``e2b`` SDK at it with ``E2B_API_URL`` and ``E2B_SANDBOX_URL`` both set to
:attr:`E2BEmulator.url`. Test-only HTTP routes (not counted, never faulted):

- ``GET /_emulator/stats`` — call counts by operation name (see :data:`OPERATIONS`), totals, faults;
- ``GET /_emulator/sandboxes[?all=1]`` — each sandbox's id, template, metadata, envVars (keys and
  values), the create request as sent (mcp, network, ...), every command's argv/cwd/envs;
- ``GET /_emulator/sandboxes/{id}`` (also: ``stockTemplate``, ``toolsHidden``, ``installs`` made by the
  stand-in package managers, the effective ``egress``), ``POST /_emulator/reset``,
  ``GET|POST /_emulator/config``;
- ``GET /_pypi/simple/{claude-swarm,uv}/`` and ``/_pypi/files/*.whl``: EMULATOR ONLY, a PEP 503 index
  serving stand-in wheels of the coordinator (CLI ``claudeswarm``) and of uv (``python3 -m uv``, for a
  managed Python on a template older than the coordinator needs); every sandbox gets ``PIP_INDEX_URL``
  pointing at it so ``pip install claude-swarm==X`` and ``pip install --user uv==X`` work offline.

Its defaults follow the real service (see :class:`E2BEmulator` and ``_templates``); a test that needs
the old permissive behaviour names the knob (``stock_templates=False``, ``permissive_egress=True``,
``identity_delay_seconds=0``, ``lifetime_cap_seconds=...``).
"""

from pathlib import Path

from swarm_testbed.e2b._isolation import Isolation
from swarm_testbed.e2b._knobs import (
    CONTROL_OPERATIONS,
    ENVD_OPERATIONS,
    FAULT_KINDS,
    OPERATIONS,
    PLAN_LIFETIME_CAPS,
    STOCK_TEMPLATES,
)
from swarm_testbed.e2b._sandbox import ENVD_VERSION
from swarm_testbed.e2b._server import E2BEmulator, EmulatorThread

__all__ = [
    "CONTROL_OPERATIONS",
    "ENVD_OPERATIONS",
    "ENVD_VERSION",
    "FAULT_KINDS",
    "OPERATIONS",
    "PLAN_LIFETIME_CAPS",
    "STANDIN_BIN",
    "STOCK_TEMPLATES",
    "E2BEmulator",
    "EmulatorThread",
    "Isolation",
]

#: The stand-ins (NOT E2B's programs): ``mcp-gateway`` (E2B's gateway contract), ``sudo``, ``apt-get``,
#: ``npm``. Stock templates get them in their private /usr/local/bin; a test may also copy
#: ``mcp-gateway`` into ``home_template``'s ``~/.local/bin``.
STANDIN_BIN = Path(__file__).parent / "bin"
