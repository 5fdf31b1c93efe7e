"""PTYs in the E2B emulator, through the official SDK unmodified (sync and async): ``sandbox.pty``.

The emulator runs a pty process on a real pseudo-terminal that is its controlling terminal, so
``tty``, ``stty size`` after a resize, and tmux attached to it behave as in a real sandbox.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable

import pytest
from e2b import AsyncSandbox, CommandExitException, PtySize, Sandbox
from e2b.sandbox_sync.commands.command_handle import CommandHandle

from swarm_testbed.e2b import EmulatorThread, Isolation

pytestmark = pytest.mark.timeout(60)

_ANSI = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Za-z0-9]|[=>])")


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Terminal:
    """Waits on a sync pty handle in a thread (the way a caller streams one); ``wait(pattern)``
    polls what the terminal showed, ``error`` is what ``handle.wait()`` raised at the end."""

    def __init__(self, handle: CommandHandle) -> None:
        self.handle = handle
        self.output = bytearray()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.handle.wait(on_pty=self.output.extend)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.finished.set()

    def text(self) -> str:
        return _ANSI.sub(b"", bytes(self.output)).decode(errors="replace").replace("\r", "")

    def wait(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.text())
            if match:
                found.append(match)
            return bool(match)

        assert _wait_for(seen, timeout), f"{pattern!r} never shown; terminal showed:\n{self.text()}"
        return found[0]


def test_pty_shell_sync(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create(timeout=60)
    try:
        handle = sandbox.pty.create(PtySize(rows=24, cols=80), envs={"FROM_PTY": "p"}, timeout=30)
        term = Terminal(handle)
        assert handle.pid in [p.pid for p in sandbox.commands.list()]

        sandbox.pty.send_stdin(handle.pid, b"echo hello-$((6*7)) $FROM_PTY $TERM\n")
        term.wait(r"\nhello-42 p xterm-256color\n")
        sandbox.pty.send_stdin(handle.pid, b"echo tty=$(tty) size=$(stty size) pwd=$PWD\n")
        term.wait(r"\ntty=/dev/pts/\d+ size=24 80 pwd=/home/user\n")

        sandbox.pty.resize(handle.pid, PtySize(rows=40, cols=123))
        sandbox.pty.send_stdin(handle.pid, b"echo resized=$(stty size)\n")
        term.wait(r"\nresized=40 123\n")

        sandbox.pty.stream_input(handle.pid, iter([b"echo stre", b"amed-$((1+1))\n"]))
        term.wait(r"\nstreamed-2\n")

        sandbox.pty.send_stdin(handle.pid, b"exit 3\n")
        assert term.finished.wait(10)
        assert isinstance(term.error, CommandExitException) and term.error.exit_code == 3
    finally:
        sandbox.kill()


async def test_pty_shell_async(e2b_env: EmulatorThread) -> None:
    sandbox = await AsyncSandbox.create(timeout=60)
    try:
        output = bytearray()

        def text() -> str:
            return _ANSI.sub(b"", bytes(output)).decode(errors="replace").replace("\r", "")

        async def wait(pattern: str, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while not re.search(pattern, text()):
                assert time.monotonic() < deadline, f"{pattern!r} never shown; terminal showed:\n{text()}"
                await asyncio.sleep(0.05)

        handle = await sandbox.pty.create(PtySize(rows=30, cols=100), on_data=output.extend, timeout=30)
        await sandbox.pty.send_stdin(handle.pid, b"echo hello-$((6*7)) $(tty)\n")
        await wait(r"\nhello-42 /dev/pts/\d+\n")
        await sandbox.pty.resize(handle.pid, PtySize(rows=50, cols=132))
        await sandbox.pty.send_stdin(handle.pid, b"echo size=$(stty size)\n")
        await wait(r"\nsize=50 132\n")

        assert await handle.kill() is True
        with pytest.raises(CommandExitException):
            await asyncio.wait_for(handle.wait(), 10)
        assert handle.pid not in [p.pid for p in await sandbox.commands.list()]
        assert await sandbox.pty.kill(handle.pid) is False
    finally:
        await sandbox.kill()


def test_pty_runs_tmux(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create("with-tmux", timeout=60)  # a template of one's own: stock base has no tmux
    try:
        handle = sandbox.pty.create(PtySize(rows=30, cols=100), timeout=30)
        term = Terminal(handle)
        sandbox.pty.send_stdin(handle.pid, b"tmux new-session -s ptytest\n")
        term.wait(r"\[ptytest\]")  # tmux's status line: it found a terminal and drew on it

        sandbox.pty.send_stdin(handle.pid, b"echo inside-$((2*3))\r")

        def pane() -> str:
            return sandbox.commands.run("tmux capture-pane -p -t ptytest", timeout=10).stdout

        assert _wait_for(lambda: "inside-6" in pane()), pane()
        clients = sandbox.commands.run(
            "tmux list-clients -F '#{client_tty} #{client_width}x#{client_height}'", timeout=10
        ).stdout
        assert re.fullmatch(r"/dev/pts/\d+ 100x30\n", clients), clients

        sandbox.pty.resize(handle.pid, PtySize(rows=33, cols=90))  # tmux follows SIGWINCH
        assert _wait_for(
            lambda: (
                sandbox.commands.run(
                    "tmux list-clients -F '#{client_width}x#{client_height}'", timeout=10
                ).stdout
                == "90x33\n"
            )
        )

        assert handle.kill() is True
        assert term.finished.wait(10) and isinstance(term.error, CommandExitException)
        assert handle.pid not in [p.pid for p in sandbox.commands.list()]
        # The session outlives its client, as on a real VM.
        assert "ptytest" in sandbox.commands.run("tmux ls", timeout=10).stdout
    finally:
        sandbox.kill()


def test_sandbox_kill_ends_pty_processes(e2b_env: EmulatorThread) -> None:
    sandbox = Sandbox.create(timeout=60)
    handle = sandbox.pty.create(PtySize(rows=24, cols=80), timeout=30)
    term = Terminal(handle)
    sandbox.pty.send_stdin(handle.pid, b"sleep 300 & echo child=$!\n")
    child = int(term.wait(r"\nchild=(\d+)\n").group(1))
    assert _alive(handle.pid) and _alive(child)

    sandbox.kill()
    assert _wait_for(lambda: not _alive(handle.pid) and not _alive(child))
    assert term.finished.wait(15), "the pty's stream never ended"
    assert term.error is not None  # the sandbox went away under it, as a real VM's would


@pytest.mark.parametrize("isolation", list(Isolation), ids=lambda i: i.value)
def test_pty_under_every_isolation(
    isolation: Isolation, e2b_emulator_factory: Callable[..., EmulatorThread], e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(isolation=isolation)
    sandbox = Sandbox.create(timeout=60, api_key=e2b_api_key, api_url=emulator.url, sandbox_url=emulator.url)
    try:
        probe = sandbox.commands.run("echo $HOME", timeout=10)
        if isolation is not Isolation.DIRECTORIES and probe.stdout != "/home/user\n":
            pytest.skip(f"{isolation.value} isolation does not work on this machine")
        handle = sandbox.pty.create(PtySize(rows=21, cols=77), timeout=30)
        term = Terminal(handle)
        sandbox.pty.send_stdin(handle.pid, b"echo $(tty) $(stty size) ok-$((3*3)); exit\n")
        term.wait(r"\n/dev/pts/\d+ 21 77 ok-9\n")
        assert term.finished.wait(10) and term.error is None
    finally:
        sandbox.kill()
