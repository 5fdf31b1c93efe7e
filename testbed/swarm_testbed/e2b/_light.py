"""BENCHMARKS ONLY — canned commands (``E2BEmulator(canned_commands=True)``).

Not a rule of E2B: a shortcut that lets one 2-core machine carry a thousand sandboxes. With it, no
command starts a process: the operator's identity check, setup, probe and teardown scripts are
recognised by their text and answered at once with the report the script would print when every
agent runs (no workspace, MCP or coordinator); any other command exits 0 with no output. Everything
else — the envd streaming protocol, stdin hand-over, signals, sandbox life cycle, the control plane
and its counters — is the emulator's ordinary path. Off by default; only ``benchmarks/bench_soak.py``
turns it on, and its figures say so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shlex
import signal
import time
from typing import Any

__all__ = ["CannedChild", "canned_output"]

# Above any kernel's pid_max (2**22): a signal sent to one of these by number finds no process.
_PIDS = itertools.count(10_000_000)
_BEGIN, _END = "---SWARM-REPORT-BEGIN---", "---SWARM-REPORT-END---"


def _var(script: str, name: str, default: str = "") -> str:
    match = re.search(rf"^{name}=(.*)$", script, re.MULTILINE)
    if not match:
        return default
    parts = shlex.split(match.group(1))
    return parts[0] if parts else ""


def _report(body: dict[str, Any]) -> bytes:
    return f"{_BEGIN}\n{json.dumps(body)}\n{_END}\n".encode()


def canned_output(script: str, env: dict[str, str], state: dict[str, Any]) -> bytes:
    """What the operator's script in ``script`` would print on a healthy sandbox; ``state`` is the
    sandbox's own memory across commands (agents started so far)."""
    if "swarm-identity" in script:
        names = re.findall(r'"\$\{(\w+)-\}"', script)
        return ("swarm-identity " + " ".join(env.get(n, "") for n in names) + "\n").encode()
    kind = re.search(r"^# swarm-operator bootstrap \((\w+)\)", script, re.MULTILINE)
    if kind is None:
        return b""
    session = _var(script, "SWARM_SESSION", "swarm")
    agents = int(_var(script, "SWARM_AGENTS", "0") or 0)
    command = _var(script, "SWARM_COMMAND") or None
    coordinator = _var(script, "SWARM_COORD_ENABLED", "0") == "1"
    now = int(time.time())
    if kind.group(1) == "teardown":
        signalled, state["agents"] = state.get("agents", 0), 0
        return _report(
            {
                "kind": "teardown",
                "version": 1,
                "session": session,
                "server": signalled > 0,
                "signalled": signalled,
                "graceful": True,
                "killed": False,
                "gone": True,
            }
        )
    before = state.get("agents", 0) if kind.group(1) == "setup" else agents
    panes = [
        {
            "index": i,
            "target": f"{session}:{i}.0",
            "pane_id": f"%{i}",
            "pid": 1000 + i,
            "alive": True,
            "dead": False,
            "exit_status": None,
            "command": command,
            "restarts": 0,
        }
        for i in range(agents)
    ]
    if kind.group(1) == "probe":
        return _report(
            {
                "kind": "probe",
                "version": 1,
                "session": session,
                "server": True,
                "agents": {"desired": agents, "alive": agents, "dead": 0},
                "missing": [],
                "extra": 0,
                "panes": panes,
                "registry": None,
                "activity": now,
                "clock": now,
            }
        )
    state["agents"] = agents
    return _report(
        {
            "kind": "setup",
            "version": 1,
            "session": session,
            "socket": _var(script, "SWARM_SOCKET"),
            "state_dir": _var(script, "SWARM_STATE_DIR"),
            "server": True,
            "agents": {"desired": agents, "ready": agents, "failed": 0},
            "panes": panes,
            "created": list(range(before, agents)),
            "removed": list(range(agents, before)),
            "restarted": [],
            "env_missing": [],
            "timed_out": False,
            "coordinator": {
                "enabled": coordinator,
                "installed": coordinator,
                "discovered": None,
                "error": None,
            },
            "steps": {},
            "errors": [],
        }
    )


class _CannedStdin:
    """The stdin pipe of a canned command: the first hand-over (envd gets it in one request) ends it."""

    def __init__(self, child: CannedChild) -> None:
        self._child = child
        self._closed = False

    def is_closing(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        self.close()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self._closed = True
        self._child.finish(0)


class CannedChild:
    """Stands where ``asyncio.subprocess.Process`` does for a started command; prints ``output`` and
    exits 0 at once, or, for a command started with stdin, once its stdin arrives or closes."""

    def __init__(self, output: bytes, *, stdin: bool) -> None:
        self.pid = next(_PIDS)
        self.stdout = asyncio.StreamReader()
        self.stderr = asyncio.StreamReader()
        self.stderr.feed_eof()
        self._output = output
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stdin = _CannedStdin(self) if stdin else None
        if not stdin:
            self.finish(0)

    def finish(self, code: int) -> None:
        if self._exit.done():
            return
        if code == 0:
            self.stdout.feed_data(self._output)
        self.stdout.feed_eof()
        self._exit.set_result(code)

    def send_signal(self, sig: signal.Signals) -> None:
        self.finish(-int(sig))

    async def wait(self) -> int:
        return await self._exit
