"""The sandbox as a person's terminal: ``swarm-operator logs`` and ``attach`` (:mod:`swarm_operator.console`).

Only the backend package imports the ``e2b`` SDK (an import-linter contract), so the console reaches the
sandbox through here. These calls use the SDK's *synchronous* client: the console is a short-lived
command at a terminal with its own threads for streams, not part of the operator's event loop. The SDK is
imported inside each function so that ``swarm-operator status`` never pays for it.

E2B's exceptions stay the SDK's here: the console turns each into the one line a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._command import _STARTUP_ENV, command_line
from ._protocol import CommandResult

#: Bound on envd confirming that a command started (the command's own run time is the caller's).
_COMMAND_START_S = 15.0

__all__ = [
    "SdkErrors",
    "connect_sync",
    "download_file",
    "pty_size",
    "run_script",
    "sandbox_paused",
    "sdk_errors",
]


def connect_sync(sandbox_id: str, api_key: str) -> Any:
    """The running sandbox through the synchronous SDK (``e2b.Sandbox``); raises the SDK's errors."""
    from e2b import Sandbox

    return Sandbox.connect(sandbox_id, api_key=api_key)


def sandbox_paused(sandbox_id: str, api_key: str, *, timeout: float) -> bool:
    """Whether E2B's control plane has the sandbox paused — read without resuming it (``connect``
    would resume it). The async SDK, on a loop of its own: a sync control-plane call made first
    leaves the sync SDK's shared transport in a state where a later PTY stream stalls."""
    import asyncio

    from e2b import AsyncSandbox, SandboxState

    info = asyncio.run(AsyncSandbox.get_info(sandbox_id, api_key=api_key, request_timeout=timeout))
    return bool(info.state == SandboxState.PAUSED)


def run_script(sandbox: Any, script: str, *, user: str, timeout: float) -> CommandResult:
    """Run ``script`` in the connected ``sandbox`` as ``user``, the way the operator's backend runs its
    scripts: without the agents' shell startup files (``_e2b.command_line``), within ``timeout``
    seconds. A non-zero exit is a result; the SDK's other errors go up as they are."""
    from e2b.sandbox.commands.command_handle import CommandExitException

    try:
        result = sandbox.commands.run(
            command_line(script),
            envs=dict(_STARTUP_ENV),
            user=user,
            cwd="~",
            timeout=timeout,
            request_timeout=_COMMAND_START_S,
        )
    except CommandExitException as exc:
        return CommandResult(exc.exit_code, exc.stdout or "", exc.stderr or "")
    return CommandResult(result.exit_code, result.stdout or "", result.stderr or "")


def download_file(sandbox: Any, path: str, dest: Path, *, user: str, timeout: float) -> int:
    """Stream the sandbox's file ``path`` (relative: to ``user``'s home) into ``dest`` through envd's
    file API, never whole in memory; ``timeout`` bounds the whole transfer. Returns the bytes written."""
    written = 0
    with dest.open("wb") as out:
        for chunk in sandbox.files.read(path, format="stream", user=user, request_timeout=timeout):
            out.write(chunk)
            written += len(chunk)
    return written


def pty_size(rows: int, cols: int) -> Any:
    """The SDK's ``PtySize`` for ``sandbox.pty.create``/``resize``."""
    from e2b.sandbox.commands.command_handle import PtySize

    return PtySize(rows=rows, cols=cols)


@dataclass(frozen=True)
class SdkErrors:
    """The SDK's exception classes the console tells apart, for its ``except`` clauses."""

    authentication: type[Exception]
    not_found: type[Exception]
    sandbox: type[Exception]
    command_exit: type[Exception]


def sdk_errors() -> SdkErrors:
    """The SDK's exception classes, imported on first need."""
    from e2b import exceptions
    from e2b.sandbox.commands.command_handle import CommandExitException

    return SdkErrors(
        authentication=exceptions.AuthenticationException,
        not_found=exceptions.NotFoundException,
        sandbox=exceptions.SandboxException,
        command_exit=CommandExitException,
    )
