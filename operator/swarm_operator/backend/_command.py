"""How one command runs in a sandbox: the shell it starts in, and the cap on what it may print.

Kept apart from the backend's calls because these are the rules that keep the operator safe from
whatever a sandbox does (its agents own it): a bounded output, a kill past the cap, no
agent-editable startup file read before the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Mapping

from e2b import AsyncSandbox
from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

__all__ = ["DEFAULT_OUTPUT_LIMIT_BYTES", "CappedStream", "OutputFlood", "command_line", "run_capped"]

_KILL_TIMEOUT_S = 5.0  # bound on killing a flooding command (envd's kill is one RPC)

#: Per stream (stdout, stderr) of one command, unless the backend is given another cap.
DEFAULT_OUTPUT_LIMIT_BYTES = 1024 * 1024

# --- how a command starts ----------------------------------------------------------------------
# The SDK's only command API, ``commands.run``, always starts ``/bin/bash -l -c CMD``
# (e2b/sandbox_async/commands/command.py: ``_start``); nothing public takes another argv. A login
# bash runs /etc/profile and then the first of ~/.bash_profile, ~/.bash_login, ~/.profile — files
# in the agents' own, writable home — *before* CMD, so wrapping CMD cannot skip them. What the
# SDK does let us choose is the environment (envd puts request envs last, and "only the last
# values of the env vars are used": e2b-dev/infra packages/envd/internal/services/process/
# handler/handler.go) and the working directory. So the shell starts with HOME pointing at a
# directory that does not exist: bash finds ``~/.*`` startup files through $HOME, so it reads
# none. The command starts in ``~`` (envd expands it to the user's real home:
# packages/envd/internal/permissions/path.go), and CMD's first line sets HOME back from there.
# BASH_ENV/ENV (read by non-interactive shells) are emptied the same way.
# /etc/profile still runs: it is root's, and an agent that rewrites it with its passwordless sudo
# owns the sandbox anyway. What keeps the operator safe from any of it is the output cap and the
# timeout below, not the absence of startup files.
_STARTUP_ENV = {"HOME": "/nonexistent/swarm-operator", "BASH_ENV": "", "ENV": ""}
# The PATH entries Debian's stock /etc/skel/.profile adds, which E2B's templates' tools rely on
# (e.g. pip --user installs in ~/.local/bin), without running the agent-editable file.
_PRELUDE = (
    "HOME=$PWD; export HOME; unset BASH_ENV ENV\n"
    'if [ -d "$HOME/bin" ]; then PATH="$HOME/bin:$PATH"; fi\n'
    'if [ -d "$HOME/.local/bin" ]; then PATH="$HOME/.local/bin:$PATH"; fi\n'
    "export PATH\n"
)


def command_line(script: str, cwd: str | None = None) -> str:
    """The CMD the backend hands the SDK for ``script``: the prelude that restores HOME and PATH
    (see above), a ``cd`` into ``cwd`` when one is given, then the script itself."""
    cd = f"cd -- {shlex.quote(cwd)} || exit 1\n" if cwd else ""
    return _PRELUDE + cd + script


class OutputFlood(Exception):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.stream = stream


class CappedStream:
    """One output stream of a command, kept up to ``limit`` bytes; past it, ``flooded`` is set and
    the rest is dropped unread into memory (the SDK is told ``retain_output=False``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[str] = []
        self.flooded = asyncio.Event()

    def feed(self, chunk: str) -> None:
        if self.flooded.is_set():
            return
        self.size += len(chunk.encode("utf-8", "replace"))
        if self.size > self.limit:
            self.chunks.clear()
            self.flooded.set()
            return
        self.chunks.append(chunk)

    def text(self) -> str:
        return "".join(self.chunks)


async def wait_capped(handle: AsyncCommandHandle[None], out: CappedStream, err: CappedStream) -> int:
    """The command's exit code; past either stream's cap the command is killed (SIGKILL through
    envd), the stream dropped, and :class:`OutputFlood` raised. Non-zero exits raise the SDK's
    ``CommandExitException`` as ``commands.run`` does."""
    done = asyncio.ensure_future(handle.wait())
    floods = {
        asyncio.ensure_future(out.flooded.wait()): "stdout",
        asyncio.ensure_future(err.flooded.wait()): "stderr",
    }
    try:
        finished, _ = await asyncio.wait({done, *floods}, return_when=asyncio.FIRST_COMPLETED)
        flooded = next((name for task, name in floods.items() if task in finished), None)
        if flooded is None:
            return (await done).exit_code
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_KILL_TIMEOUT_S):
                await handle.kill()
        raise OutputFlood(flooded)
    finally:
        for task in (done, *floods):
            task.cancel()
        with contextlib.suppress(Exception):
            await handle.disconnect()
        await asyncio.gather(done, *floods, return_exceptions=True)


async def run_capped(
    sandbox: AsyncSandbox,
    script: str,
    *,
    envs: Mapping[str, str] | None,
    cwd: str | None,
    user: str,
    timeout_s: float,
    start_s: float,
    out: CappedStream,
    err: CappedStream,
    stdin: bytes | None,
) -> int:
    """Start ``script`` in the sandbox (see :func:`command_line` for the shell it gets), hand it
    ``stdin`` and wait for its exit code with both streams capped (:func:`wait_capped`)."""
    handle = await sandbox.commands.run(
        command_line(script, cwd),
        background=True,
        envs={**(dict(envs) if envs else {}), **_STARTUP_ENV},
        cwd="~",
        user=user,
        timeout=timeout_s,
        request_timeout=start_s,
        on_stdout=out.feed,
        on_stderr=err.feed,
        retain_output=False,
        stdin=stdin is not None,
    )
    if stdin is not None:
        # Handed over once, in one envd request, the moment the command exists: it never enters
        # the command's environment (envd's process list, /proc). The script reads its own end
        # marker and closes stdin itself. A failed send leaves a command waiting on stdin: it is
        # killed before the error goes up.
        try:
            await handle.send_stdin(stdin, request_timeout=start_s)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.kill(), _KILL_TIMEOUT_S)
            raise
    return await wait_capped(handle, out, err)
