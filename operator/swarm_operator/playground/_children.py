"""The playground's child processes: how each is started and stopped, and how a straggler is found.

Apart from the session (``_session.py``) because these are the rules that make clean-up certain:
each child dies with its parent (``PR_SET_PDEATHSIG``), and any process whose environment carries
the playground's marker is found by :func:`stragglers`, whoever started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "die_with_parent", "stragglers"]


def stragglers(marker: str) -> list[int]:
    """Pids (not ours) of live processes whose environment mentions ``marker`` anywhere."""
    needle, found = marker.encode(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read():
                    with open(f"/proc/{entry.name}/stat", "rb") as s:
                        if s.read().rsplit(b")", 1)[-1].split()[0] != b"Z":
                            found.append(int(entry.name))
        except OSError:
            continue
    return found


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the playground process dies, however it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One child process of the playground, and the log its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
