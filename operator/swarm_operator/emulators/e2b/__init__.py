"""E2B-compatible emulator: E2B's control plane and envd on one port, sandboxes as local processes.

Point the unmodified ``e2b`` SDK at it with ``E2B_API_URL`` and ``E2B_SANDBOX_URL`` both set to
:attr:`E2BEmulator.url`. Test-only HTTP routes (not counted, never faulted):

- ``GET /_emulator/stats`` — call counts by operation name (see :data:`OPERATIONS`), totals, faults;
- ``GET /_emulator/sandboxes[?all=1]`` — each sandbox's id, template, metadata, envVars (keys and
  values), the create request as sent (mcp, network, ...), every command's argv/cwd/envs;
- ``GET /_emulator/sandboxes/{id}``, ``POST /_emulator/reset``, ``GET|POST /_emulator/config``.
"""

from pathlib import Path

from swarm_operator.emulators.e2b._isolation import Isolation
from swarm_operator.emulators.e2b._knobs import (
    CONTROL_OPERATIONS,
    ENVD_OPERATIONS,
    FAULT_KINDS,
    OPERATIONS,
)
from swarm_operator.emulators.e2b._sandbox import ENVD_VERSION
from swarm_operator.emulators.e2b._server import E2BEmulator, EmulatorThread

__all__ = [
    "CONTROL_OPERATIONS",
    "ENVD_OPERATIONS",
    "ENVD_VERSION",
    "FAULT_KINDS",
    "OPERATIONS",
    "STANDIN_BIN",
    "E2BEmulator",
    "EmulatorThread",
    "Isolation",
]

#: The stand-in ``mcp-gateway`` (NOT E2B's): put this directory on a sandbox's PATH (e.g. through
#: ``home_template``'s ``~/.local/bin``) to exercise the operator's MCP setup offline.
STANDIN_BIN = Path(__file__).parent / "bin"
