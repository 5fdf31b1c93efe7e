"""One emulated sandbox: its record (what the control plane reports) and its live processes.

Commands are real local processes, so a test exercises real shells, real exit codes and a real tmux.
Every process of a sandbox carries a marker variable in its environment; killing the sandbox kills
whatever carries it, daemons included.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import fcntl
import json
import os
import secrets
import shutil
import signal
import string
import struct
import termios
from dataclasses import dataclass, field
from typing import Any

from swarm_testbed.e2b._connect import RPCError
from swarm_testbed.e2b._isolation import (
    MARKER_VAR,
    SANDBOX_HOME,
    SandboxFS,
    kill_marked,
    signal_marked,
)
from swarm_testbed.e2b._light import CannedChild, canned_output

ENVD_VERSION = "0.6.4"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_READ_CHUNK = 64 * 1024
# After the main process exits, how long to let its pipes drain: a daemon it left behind may hold
# them open forever (envd likewise reports the exit, not the pipes' end).
_DRAIN_GRACE = 0.2
# Makes the pty the child's controlling terminal (TIOCSCTTY on fd 0) in a new session, then execs:
# the pid the SDK is told about stays the shell's. It must not be a process-group leader, or
# ``setsid`` forks (and the pid we know would exit at once): start it in the emulator's group.
_SETSID = shutil.which("setsid")


def new_id(length: int = 20) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


GONE = object()  # queued to stream subscribers when the sandbox dies under them


@dataclass
class Process:
    """A command started through ``process.Process/Start``, and who is listening to it."""

    pid: int
    config: dict[str, Any]
    tag: str | None
    child: asyncio.subprocess.Process
    subscribers: set[asyncio.Queue[Any]] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    end: dict[str, Any] | None = None
    pty: int | None = None  # the master side of its pseudo-terminal, when started with one

    def publish(self, event: Any) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait(event)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"config": self.config, "pid": self.pid}
        if self.tag is not None:
            info["tag"] = self.tag
        return info


@dataclass
class Sandbox:
    """What E2B knows about a sandbox, plus the emulator's handles on its processes."""

    sandbox_id: str
    template_id: str
    alias: str | None
    metadata: dict[str, str]
    env_vars: dict[str, str]
    create_request: dict[str, Any]
    started_at: datetime.datetime
    end_at: datetime.datetime
    fs: SandboxFS
    auto_pause: bool = False
    identity: str | None = None  # the E2B_SANDBOX_ID its processes see (differs only on purpose)
    #: When E2B_SANDBOX_ID appears in envd's environment: e2b-dev/infra packages/envd/internal/api/
    #: init.go and packages/envd/internal/host/mmds.go fill it from MMDS asynchronously after start,
    #: so a command right after create may see no E2B_SANDBOX_ID.
    identity_visible_at: datetime.datetime | None = None
    #: Where the lifetime cap counts from (keep_alive.go: the instance's StartTime; a resume is a
    #: new instance).
    lifetime_start: datetime.datetime | None = None
    #: Variables the emulator adds to every command (PIP_INDEX_URL of its stand-in index).
    emulator_env: dict[str, str] = field(default_factory=dict)
    #: The egress rules E2B would apply (after create_instance.go's allow_internet_access rule).
    egress: dict[str, list[str]] = field(default_factory=dict)
    state: str = "running"
    envd_access_token: str = field(default_factory=lambda: secrets.token_hex(16))
    client_id: str = "6532622b"
    cpu_count: int = 2
    memory_mb: int = 1024
    disk_size_mb: int = 10240
    token: str = field(default_factory=lambda: secrets.token_hex(12))
    processes: dict[int, Process] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: BENCHMARKS ONLY (``E2BEmulator(canned_commands=True)``, see ``_light``): commands are answered
    #: with canned reports and start no process; ``canned_state`` is what those answers remember.
    canned: bool = False
    canned_state: dict[str, Any] = field(default_factory=dict)
    ended: str | None = None  # "killed" or "expired" once gone

    def __post_init__(self) -> None:
        if self.lifetime_start is None:
            self.lifetime_start = self.started_at

    # ----- control-plane views -------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "templateID": self.template_id,
            "sandboxID": self.sandbox_id,
            "clientID": self.client_id,
            "envdVersion": ENVD_VERSION,
        }
        if self.alias:
            data["alias"] = self.alias
        return data

    def created_view(self) -> dict[str, Any]:
        """The ``Sandbox`` model answered by create and connect."""
        return {
            **self._common(),
            "envdAccessToken": self.envd_access_token,
            "trafficAccessToken": None,
            "domain": None,
        }

    def listed_view(self) -> dict[str, Any]:
        return {
            **self._common(),
            "startedAt": rfc3339(self.started_at),
            "endAt": rfc3339(self.end_at),
            "cpuCount": self.cpu_count,
            "memoryMB": self.memory_mb,
            "diskSizeMB": self.disk_size_mb,
            "state": self.state,
            "metadata": dict(self.metadata),
        }

    def detail_view(self) -> dict[str, Any]:
        detail = self.listed_view()
        detail["envdAccessToken"] = self.envd_access_token
        detail["domain"] = None
        detail["lifecycle"] = {"autoResume": False, "onTimeout": "pause" if self.auto_pause else "kill"}
        if "allow_internet_access" in self.create_request:
            detail["allowInternetAccess"] = self.create_request["allow_internet_access"]
        if isinstance(self.create_request.get("network"), dict):
            detail["network"] = self.create_request["network"]
        return detail

    def inspection_view(self) -> dict[str, Any]:
        """Everything a test may want to assert on, secrets included (it is a test double)."""
        return {
            "sandboxID": self.sandbox_id,
            "templateID": self.template_id,
            "state": self.ended or self.state,
            "alive": self.ended is None,
            "metadata": dict(self.metadata),
            "envVarKeys": sorted(self.env_vars),
            "envVars": dict(self.env_vars),
            "createRequest": self.create_request,
            "commands": list(self.commands),
            "runningPids": sorted(p.pid for p in self.processes.values() if not p.done.is_set()),
            "startedAt": rfc3339(self.started_at),
            "endAt": rfc3339(self.end_at),
            "home": str(self.fs.home),
            "isolation": self.fs.isolation.value,
            "mcpGateway": self.mcp_gateway(),
            "stockTemplate": self.fs.image.name if self.fs.image is not None else None,
            "toolsHidden": self.fs.whiteouts is not None,
            "installs": self.fs.installs(),
            "egress": self.egress,
        }

    def mcp_gateway(self) -> dict[str, Any] | None:
        """What the stand-in ``mcp-gateway`` (``emulators/e2b/bin``) was started with in this sandbox:
        ``{"config": ..., "port": ..., "token_set": ...}``, or None when no gateway ran."""
        received = self.fs.home / ".mcp-gateway-standin" / "received.json"
        try:
            return json.loads(received.read_text())
        except (OSError, ValueError):
            return None

    # ----- processes -----------------------------------------------------------------------------
    def _environment(self, envs: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "USER": "user",
            "LOGNAME": "user",
            "SHELL": "/bin/bash",
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": self.identity or self.sandbox_id,
            "E2B_TEMPLATE_ID": self.template_id,
            **self.emulator_env,
            **self.fs.base_env(),
            **self.env_vars,
            **envs,
        }
        if self.identity_visible_at is not None and utcnow() < self.identity_visible_at:
            del env["E2B_SANDBOX_ID"]  # not filled from MMDS yet (envd init.go / mmds.go)
        env[MARKER_VAR] = self.token  # last, so no envVar can shadow the kill switch
        return env

    async def start(
        self,
        config: dict[str, Any],
        tag: str | None,
        stdin: bool,
        pty_size: tuple[int, int] | None = None,
        user: str | None = None,
    ) -> Process:
        """Start a command as a real local process inside this sandbox's private space.

        With ``pty_size`` (rows, cols) the process runs on a fresh pseudo-terminal that is its
        controlling terminal (stdin, stdout and stderr all on it), as envd does for ``pty`` starts.
        """
        cmd = config.get("cmd") or ""
        args = [str(a) for a in config.get("args") or []]
        envs = {str(k): str(v) for k, v in (config.get("envs") or {}).items()}
        cwd = self.fs.resolve(config.get("cwd") or SANDBOX_HOME)
        if not cmd:
            raise RPCError("invalid_argument", "process.cmd is required")
        if not self.fs.host_path(cwd).is_dir():
            raise RPCError("invalid_argument", f"cwd '{cwd}' does not exist")
        uid = self.fs.uid_for(user)
        argv, host_cwd = self.fs.command_argv(cmd, args, cwd, uid)
        self.commands.append(
            {
                "argv": [cmd, *args],
                "cwd": cwd,
                "envs": dict(envs),
                "tag": tag,
                "pty": pty_size is not None,
                "user": user,
                "uid": uid,
            }
        )
        master: int | None = None
        if self.canned and pty_size is None:
            script = " ".join(args)
            output = canned_output(script, self._environment(envs), self.canned_state)
            child: Any = CannedChild(output, stdin=stdin)
            process = Process(pid=child.pid, config={**config, "cwd": cwd}, tag=tag, child=child)
            self.commands[-1]["pid"] = child.pid
            self.processes[child.pid] = process
            return process
        try:
            if pty_size is None:
                child = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=host_cwd,
                    env=self._environment(envs),
                    stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
            else:
                master, child = await self._start_on_pty(argv, host_cwd, self._environment(envs), pty_size)
        except OSError as exc:
            raise RPCError("internal", f"failed to start process: {exc}") from None
        echo = dict(config)
        echo["cwd"] = cwd
        process = Process(pid=child.pid, config=echo, tag=tag, child=child, pty=master)
        self.commands[-1]["pid"] = child.pid
        self.processes[child.pid] = process
        return process

    @staticmethod
    async def _start_on_pty(
        argv: list[str], cwd: str, env: dict[str, str], size: tuple[int, int]
    ) -> tuple[int, asyncio.subprocess.Process]:
        master, slave = os.openpty()
        try:
            set_window_size(slave, *size)
            if _SETSID is not None:
                argv, preexec, new_session = [_SETSID, "--ctty", *argv], None, False
            else:  # no util-linux: do setsid's work in the child
                argv, preexec, new_session = argv, _become_tty_session_leader, False
            child = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=new_session,
                preexec_fn=preexec,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child has its own copies; ours would keep the master from EOF
        os.set_blocking(master, False)
        return master, child

    def resize(self, process: Process, rows: int, cols: int) -> None:
        """TIOCSWINSZ on the master; the kernel sends SIGWINCH to the terminal's foreground group."""
        if process.pty is None:
            raise RPCError("failed_precondition", f"process {process.pid} has no pty")
        try:
            set_window_size(process.pty, rows, cols)
        except OSError as exc:
            raise RPCError("failed_precondition", f"pty of process {process.pid}: {exc}") from None

    async def write_pty(self, process: Process, data: bytes) -> None:
        """Type ``data`` into the process's terminal (waits while the terminal's buffer is full)."""
        fd = process.pty
        if fd is None:
            raise RPCError("failed_precondition", f"process {process.pid} has no pty")
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            if process.pty is None:
                raise RPCError("failed_precondition", f"pty of process {process.pid} is closed")
            try:
                view = view[os.write(fd, view) :]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                raise RPCError("failed_precondition", f"pty of process {process.pid}: {exc}") from None
            writable = loop.create_future()
            loop.add_writer(fd, lambda w=writable: w.done() or w.set_result(None))
            try:
                await asyncio.wait_for(writable, timeout=1.0)
            except TimeoutError:
                pass  # re-check: the process may have gone meanwhile
            finally:
                loop.remove_writer(fd)

    def follow(self, process: Process) -> asyncio.Task[None]:
        """Pump the process's output to its subscribers, then its end. Subscribe before calling."""
        return asyncio.create_task(self._pump(process), name=f"e2b-emulator-pump-{process.pid}")

    async def _pump(self, process: Process) -> None:
        child = process.child

        async def read(stream: asyncio.StreamReader | None, name: str) -> None:
            if stream is None:
                return
            while chunk := await stream.read(_READ_CHUNK):
                process.publish({"data": {name: base64.b64encode(chunk).decode()}})

        readers: list[asyncio.Future[Any]] = [
            asyncio.create_task(read(child.stdout, "stdout")),
            asyncio.create_task(read(child.stderr, "stderr")),
        ]
        if process.pty is not None:
            readers.append(_read_pty(process))
        code = await child.wait()
        _, pending = await asyncio.wait(readers, timeout=_DRAIN_GRACE)
        for task in pending:
            task.cancel()
        if process.pty is not None:
            asyncio.get_running_loop().remove_reader(process.pty)
            os.close(process.pty)
            process.pty = None
        if code >= 0:
            end = {"exitCode": code, "exited": True, "status": f"exit status {code}"}
        else:
            name = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}.get(
                signal.Signals(-code), signal.Signals(-code).name
            )
            end = {"exitCode": -1, "exited": False, "status": f"signal: {name}"}
        process.end = end
        process.done.set()
        process.publish({"end": end})

    def find(self, selector: dict[str, Any] | None) -> Process:
        selector = selector or {}
        if "pid" in selector:
            process = self.processes.get(int(selector["pid"]))
        elif "tag" in selector:
            process = next((p for p in self.processes.values() if p.tag == selector["tag"]), None)
        else:
            raise RPCError("invalid_argument", "process selector needs pid or tag")
        if process is None or process.done.is_set():
            raise RPCError("not_found", f"process with {selector} not found")
        return process

    def signal_process(self, process: Process, sig: signal.Signals) -> None:
        if isinstance(process.child, CannedChild):
            process.child.send_signal(sig)
            return
        try:
            os.killpg(process.pid, sig)
        except OSError:
            try:
                os.kill(process.pid, sig)
            except OSError:
                raise RPCError("not_found", f"process {process.pid} not found") from None

    # ----- whole-sandbox life cycle -------------------------------------------------------------
    async def pause(self) -> None:
        self.state = "paused"
        await asyncio.to_thread(signal_marked, self.token, signal.SIGSTOP)

    async def resume(self) -> None:
        self.state = "running"
        await asyncio.to_thread(signal_marked, self.token, signal.SIGCONT)

    async def destroy(self, why: str) -> None:
        """Kill every process the sandbox started (daemons too) and drop its files."""
        self.ended = why
        for process in self.processes.values():
            process.publish(GONE)  # before the kill: streams end as "sandbox gone", not "exit -1"
        for process in self.processes.values():
            if isinstance(process.child, CannedChild):
                process.child.send_signal(signal.SIGKILL)
                continue
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
        await asyncio.to_thread(kill_marked, self.token)
        waits = [p.done.wait() for p in self.processes.values() if not p.done.is_set()]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5)
        await asyncio.to_thread(self.fs.remove)


# ----- pseudo-terminals ---------------------------------------------------------------------------
def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _become_tty_session_leader() -> None:  # pragma: no cover - runs in the child, without setsid(1)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_pty(process: Process) -> asyncio.Future[None]:
    """Publish whatever the terminal shows as ``data.pty`` events; resolves when every slave end
    is closed (the master then reads EIO) — or is cancelled by the pump after the drain grace."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    fd = process.pty
    assert fd is not None

    def ready() -> None:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the last process holding the terminal has closed it
            chunk = b""
        if chunk:
            process.publish({"data": {"pty": base64.b64encode(chunk).decode()}})
            return
        loop.remove_reader(fd)
        if not finished.done():
            finished.set_result(None)

    loop.add_reader(fd, ready)
    return finished
