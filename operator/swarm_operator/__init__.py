"""swarm-operator: runs swarms of coding agents in E2B sandboxes, driven by SwarmSandbox resources.

The public surface is small on purpose: the CLI (``swarm-operator``), the resource models, and the
operator-wide settings. Everything else lives in private-by-convention modules behind them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
