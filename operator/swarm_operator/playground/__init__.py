"""``swarm-operator dev``: the whole system on one laptop, in one command, gone again on Ctrl-C.

Three child processes, each started the way a user would start it — ``swarm-operator emulate kube``,
``swarm-operator emulate e2b`` (skipped with real E2B) and ``swarm-operator run`` — then the
operator's namespace and default API-key Secret, then the manifests; then a live table of every
SwarmSandbox until Ctrl-C.

Clean-up is the point of the design, so it is layered:

- children run in their own sessions, so the terminal's Ctrl-C reaches only us and we can stop them in
  order: resources deleted first (the operator's finalizers kill the sandboxes), then the operator,
  then the emulators (the E2B emulator kills whatever sandbox process is left);
- each child asks the kernel for SIGTERM if we die without cleaning up (``PR_SET_PDEATHSIG``);
- everything lives under one temp directory whose path is in every child's environment (and, through
  ``PATH``, in every emulated sandbox process's), so a final sweep finds any straggler — a tmux server
  included, which leaves its process group but not its environment — and the directory is removed.
"""

from ._children import stragglers
from ._progress import progress_row, render_table
from ._session import MARKER_VAR, Playground, PlaygroundError, default_manifests

__all__ = [
    "MARKER_VAR",
    "Playground",
    "PlaygroundError",
    "default_manifests",
    "progress_row",
    "render_table",
    "stragglers",
]
