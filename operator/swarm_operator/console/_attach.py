"""``attach``: the local terminal joined to the swarm's tmux session through an E2B PTY.

Three things run at once until the user detaches or the session ends: the PTY's output copied to the
local terminal (a thread, since the SDK blocks in native code), the local keys copied to the PTY (the
caller's thread, in raw mode), and the window size following SIGWINCH.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from swarm_operator.console._sandbox import connect, e2b_errors
from swarm_operator.console._swarm import ConsoleError, Swarm, first_line

__all__ = ["DETACH_KEY", "attach"]

#: Ctrl-] — telnet's and ``docker attach``'s escape: tmux (prefix Ctrl-b) and Claude Code leave it alone.
DETACH_KEY = b"\x1d"


def attach(
    swarm: Swarm,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    detach_key: bytes = DETACH_KEY,
) -> int:
    """Join the swarm's tmux session through an E2B PTY until the detach key or the session ends.

    The local terminal is put in raw mode so every key (Ctrl-C, the tmux prefix, arrows) reaches the
    panes; the window size follows SIGWINCH. Returns 0 on detach, else the remote client's exit code.
    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    sandbox = connect(swarm)
    pty = _Pty(sandbox, _open_pty(sandbox, swarm, out_fd), out_fd)
    status = 0
    with _window_changes() as resized:
        output = _Output.start(pty.handle, stdout)
        with _raw_terminal(in_fd):
            try:
                if _forward_keys(pty, in_fd, output.ended, resized, detach_key):
                    status = output.exit_code
            finally:
                if not output.ended.is_set():
                    with contextlib.suppress(Exception):
                        pty.handle.kill()  # ends only our tmux client: the session and its agents carry on
    stdout.write(b"\r\n")
    stdout.flush()
    return status


@dataclass(frozen=True)
class _Pty:
    """The remote terminal: the sandbox, the PTY's handle, and the local fd whose size it follows."""

    sandbox: Any
    handle: Any
    out_fd: int

    def send(self, data: bytes) -> None:
        self.sandbox.pty.send_stdin(self.handle.pid, data)

    def follow_size(self) -> None:
        with contextlib.suppress(Exception):
            self.sandbox.pty.resize(self.handle.pid, _terminal_size(self.out_fd))


def _terminal_size(out_fd: int) -> Any:
    """The local window as the SDK's PTY size (80x24 when ``out_fd`` is no terminal)."""
    from swarm_operator.backend import pty_size

    try:
        cols, rows = os.get_terminal_size(out_fd)
    except OSError:
        cols, rows = 80, 24
    return pty_size(rows, cols)


def _open_pty(sandbox: Any, swarm: Swarm, out_fd: int) -> Any:
    """A PTY in the sandbox running ``tmux attach`` to the swarm's session; its handle."""
    from swarm_operator.backend import sdk_errors

    errors = sdk_errors()
    with e2b_errors(swarm.sandbox_id):
        try:
            handle = sandbox.pty.create(
                _terminal_size(out_fd), timeout=0, envs={"TERM": os.environ.get("TERM", "xterm-256color")}
            )
        except errors.sandbox as exc:
            if "unimplemented" in str(exc).lower() or "not emulated" in str(exc).lower():
                raise ConsoleError(
                    f"this E2B endpoint does not offer terminals (PTY): {first_line(exc)}"
                ) from None
            raise
    # ``exec``: when tmux leaves (detach, session gone) the PTY ends with tmux's exit status.
    attach_cmd = (
        f"exec tmux -L {shlex.quote(swarm.socket)} attach-session -t {shlex.quote('=' + swarm.session)}\n"
    )
    sandbox.pty.send_stdin(handle.pid, attach_cmd.encode())
    return handle


@dataclass
class _Output:
    """The PTY's output copied to ``stdout`` by a thread; ``ended`` once the PTY ends, however."""

    ended: threading.Event = field(default_factory=threading.Event)
    exit_code: int = 0

    @classmethod
    def start(cls, handle: Any, stdout: IO[bytes]) -> _Output:
        from swarm_operator.backend import sdk_errors

        output, command_exit = cls(), sdk_errors().command_exit

        def show(chunk: bytes) -> None:
            stdout.write(chunk)
            stdout.flush()

        def pump() -> None:
            try:
                handle.wait(on_pty=show)
                output.exit_code = 0
            except command_exit as exc:
                output.exit_code = getattr(exc, "exit_code", None) or 1
            except Exception:  # the stream broke (sandbox gone, network): report failure, not a hang
                output.exit_code = 1
            finally:
                output.ended.set()

        threading.Thread(target=pump, name="swarm-attach-output", daemon=True).start()
        return output


def _forward_keys(
    pty: _Pty, in_fd: int, ended: threading.Event, resized: threading.Event, detach_key: bytes
) -> bool:
    """Copy local keys to the PTY (and window changes) until the remote side ends (True), or the
    detach key or the end of our stdin (False: a detach)."""
    while not ended.is_set():
        if resized.is_set():
            resized.clear()
            pty.follow_size()
        ready, _, _ = select.select([in_fd], [], [], 0.1)
        if not ready:
            continue
        data = os.read(in_fd, 4096)
        if not data:  # our stdin closed: behave as a detach
            return False
        head, key, _ = data.partition(detach_key)
        if head:
            pty.send(head)
        if key:
            return False
    return True


@contextlib.contextmanager
def _window_changes() -> Iterator[threading.Event]:
    """An Event set on every SIGWINCH while inside; only the main thread may handle signals, so
    elsewhere it is never set (the PTY keeps its first size)."""
    resized = threading.Event()
    previous = (
        signal.signal(signal.SIGWINCH, lambda *_: resized.set())
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        yield resized
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for the duration, restored however we leave (so a crash never leaves a dead tty)."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
