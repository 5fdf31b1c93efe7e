"""envd, the agent inside every sandbox: health, file transfer and the process/filesystem RPCs.

The SDK reaches it on the same port as the control plane; the emulator tells the two apart by the
``E2b-Sandbox-Id`` header (the edge proxy's routing key) and checks ``X-Access-Token``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import re
import shutil
import signal
import stat as stat_module
import struct
from pathlib import Path
from typing import Any

from aiohttp import web

from swarm_testbed.e2b._connect import (
    RPCError,
    end_stream,
    envelope,
    open_stream,
)
from swarm_testbed.e2b._sandbox import GONE, Process, Sandbox, rfc3339

KEEPALIVE_HEADER = "Keepalive-Ping-Interval"
_DEFAULT_KEEPALIVE = 50.0
_FILENAME = re.compile(r'filename\*?=(?:"((?:[^"\\]|\\.)*)"|([^;]+))')
_SIGNALS = {
    "SIGNAL_SIGKILL": signal.SIGKILL,
    "SIGNAL_SIGTERM": signal.SIGTERM,
    9: signal.SIGKILL,
    15: signal.SIGTERM,
}


def http_error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


def sandbox_not_found(sandbox_id: str) -> web.Response:
    """What E2B's edge answers for a sandbox that is gone: the SDK keys on "was not found"."""
    return http_error(502, f"The sandbox {sandbox_id} was not found")


# ----- plain HTTP ---------------------------------------------------------------------------------
async def health(request: web.Request, sandbox: Sandbox) -> web.StreamResponse:
    return web.Response(status=204)


async def read_file(request: web.Request, sandbox: Sandbox) -> web.StreamResponse:
    path = request.query.get("path")
    if not path:
        return http_error(400, "path is required")
    local = sandbox.fs.host_path(path)
    if not local.exists():
        return http_error(404, f"path '{sandbox.fs.resolve(path)}' does not exist")
    if local.is_dir():
        return http_error(400, f"path '{sandbox.fs.resolve(path)}' is a directory")
    data = await asyncio.to_thread(local.read_bytes)
    return web.Response(body=data, content_type="application/octet-stream")


async def write_file(request: web.Request, sandbox: Sandbox) -> web.StreamResponse:
    """Octet-stream (one file, path in the query) or multipart (field ``file``, path in filename)."""
    uploads: list[tuple[str, bytes]] = []
    query_path = request.query.get("path")
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            disposition = part.headers.get("Content-Disposition", "")  # type: ignore[union-attr]
            match = _FILENAME.search(disposition)
            filename = (match.group(1) or match.group(2)).strip() if match else None
            uploads.append((filename or "", await part.read(decode=False)))  # type: ignore[union-attr]
        if len(uploads) == 1 and query_path:
            uploads = [(query_path, uploads[0][1])]
    else:
        body = await request.read()  # aiohttp has undone Content-Encoding: gzip already
        if not query_path:
            return http_error(400, "path is required")
        uploads.append((query_path, body))
    if any(not path for path, _ in uploads):
        return http_error(400, "every uploaded file needs a path")
    written = []
    for path, data in uploads:
        sandbox_path = sandbox.fs.resolve(path)
        local = sandbox.fs.host_path(path)
        if local.is_dir():
            return http_error(400, f"path '{sandbox_path}' is a directory")
        await asyncio.to_thread(_write, local, data)
        if sandbox.fs.uid_for(request_user(request)) is not None:
            sandbox.fs.chown(local)
        written.append({"name": os.path.basename(sandbox_path), "type": "file", "path": sandbox_path})
    return web.json_response(written)


def _write(local: Path, data: bytes) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)


# ----- process.Process ----------------------------------------------------------------------------
async def _pump_stream(
    request: web.Request, sandbox: Sandbox, process: Process, queue: asyncio.Queue[Any]
) -> web.StreamResponse:
    """Relay a process's events as a Connect server stream, with keepalives while it is quiet."""
    try:
        interval = float(request.headers.get(KEEPALIVE_HEADER, _DEFAULT_KEEPALIVE))
    except ValueError:
        interval = _DEFAULT_KEEPALIVE
    response = await open_stream(request)
    try:
        await response.write(envelope({"event": {"start": {"pid": process.pid}}}))
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=max(interval, 0.05))
            except TimeoutError:
                await response.write(envelope({"event": {"keepalive": {}}}))
                continue
            if event is GONE:
                # A dying VM takes its connections with it: drop ours, so the SDK probes health,
                # learns the sandbox is gone and says so (SandboxNotRunningException).
                if request.transport is not None:
                    request.transport.abort()
                    return response
                await response.write(
                    end_stream(RPCError("unavailable", f"The sandbox {sandbox.sandbox_id} was not found"))
                )
                return response
            await response.write(envelope({"event": event}))
            if "end" in event:
                break
        await response.write(end_stream())
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away (or closed the stream early); the process carries on
    finally:
        process.subscribers.discard(queue)
    return response


def request_user(request: web.Request) -> str | None:
    """The user a request acts as: envd reads it from ``Authorization: Basic base64(user:)``;
    None when the client named none (envd then uses the template's default user)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


async def process_start(
    request: web.Request, sandbox: Sandbox, message: dict[str, Any]
) -> web.StreamResponse:
    pty = message.get("pty")
    tag = message.get("tag")
    process = await sandbox.start(
        message.get("process") or {},
        tag,
        bool(message.get("stdin", False)),
        _pty_size(pty) if pty is not None else None,
        user=request_user(request),
    )
    queue: asyncio.Queue[Any] = asyncio.Queue()
    process.subscribers.add(queue)
    sandbox.follow(process)
    return await _pump_stream(request, sandbox, process, queue)


async def process_connect(
    request: web.Request, sandbox: Sandbox, message: dict[str, Any]
) -> web.StreamResponse:
    process = sandbox.find(message.get("process"))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    process.subscribers.add(queue)
    return await _pump_stream(request, sandbox, process, queue)


async def process_list(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    return {"processes": [p.info() for p in sandbox.processes.values() if not p.done.is_set()]}


def _pty_size(pty: Any) -> tuple[int, int]:
    """(rows, cols) of a ``PTY`` message; proto3 JSON leaves zeros out, so absent means 0."""
    size = pty.get("size") if isinstance(pty, dict) else None
    size = size if isinstance(size, dict) else {}
    try:
        return int(size.get("rows") or 0), int(size.get("cols") or 0)
    except (TypeError, ValueError):
        raise RPCError("invalid_argument", f"bad pty size {size!r}") from None


async def _write_input(sandbox: Sandbox, process: Process, process_input: dict[str, Any] | None) -> None:
    """A ``ProcessInput``: ``stdin`` goes to the stdin pipe, ``pty`` to the terminal."""
    process_input = process_input or {}
    if process_input.get("pty") is not None:
        await sandbox.write_pty(process, base64.b64decode(process_input["pty"]))
    elif process_input.get("stdin") is not None:
        await _write_stdin(process, base64.b64decode(process_input["stdin"]))


async def _write_stdin(process: Process, data: bytes) -> None:
    stdin = process.child.stdin
    if stdin is None or stdin.is_closing():
        raise RPCError("failed_precondition", f"stdin of process {process.pid} is not open")
    stdin.write(data)
    try:
        await stdin.drain()
    except ConnectionError as exc:
        raise RPCError("failed_precondition", f"stdin of process {process.pid} is closed: {exc}") from None


async def process_send_input(
    request: web.Request, sandbox: Sandbox, message: dict[str, Any]
) -> dict[str, Any]:
    process = sandbox.find(message.get("process"))
    await _write_input(sandbox, process, message.get("input"))
    return {}


async def process_stream_input(request: web.Request, sandbox: Sandbox, body: bytes) -> web.StreamResponse:
    """Client stream: a start message naming the process, then data messages, all in one body."""
    process: Process | None = None
    offset = 0
    while offset + 5 <= len(body):
        _, length = struct.unpack(">BI", body[offset : offset + 5])
        message = json.loads(body[offset + 5 : offset + 5 + length] or b"{}")
        offset += 5 + length
        if "start" in message:
            process = sandbox.find(message["start"].get("process"))
        elif "data" in message:
            if process is None:
                raise RPCError("failed_precondition", "data sent before start")
            await _write_input(sandbox, process, message["data"].get("input"))
    response = await open_stream(request)
    await response.write(envelope({}))
    await response.write(end_stream())
    return response


async def process_close_stdin(
    request: web.Request, sandbox: Sandbox, message: dict[str, Any]
) -> dict[str, Any]:
    process = sandbox.find(message.get("process"))
    if process.child.stdin is not None:
        process.child.stdin.close()
    return {}


async def process_send_signal(
    request: web.Request, sandbox: Sandbox, message: dict[str, Any]
) -> dict[str, Any]:
    process = sandbox.find(message.get("process"))
    sig = _SIGNALS.get(message.get("signal"))  # type: ignore[arg-type]
    if sig is None:
        raise RPCError("invalid_argument", f"unsupported signal {message.get('signal')!r}")
    sandbox.signal_process(process, sig)
    return {}


async def process_update(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    process = sandbox.find(message.get("process"))
    pty = message.get("pty")
    if pty is not None:
        sandbox.resize(process, *_pty_size(pty))
    return {}


# ----- filesystem.Filesystem ----------------------------------------------------------------------
def _entry(sandbox_path: str, local: Path) -> dict[str, Any]:
    info = local.lstat()
    is_link = stat_module.S_ISLNK(info.st_mode)
    target = local.stat() if is_link and local.exists() else info
    kind = "FILE_TYPE_DIRECTORY" if stat_module.S_ISDIR(target.st_mode) else "FILE_TYPE_FILE"
    entry: dict[str, Any] = {
        "name": os.path.basename(sandbox_path) or "/",
        "type": kind,
        "path": sandbox_path,
        "size": str(target.st_size),
        "mode": stat_module.S_IMODE(target.st_mode),
        "permissions": stat_module.filemode(target.st_mode),
        "owner": "user",
        "group": "user",
        "modifiedTime": rfc3339(datetime.datetime.fromtimestamp(target.st_mtime, datetime.UTC)),
    }
    if is_link:
        entry["symlinkTarget"] = os.readlink(local)
        entry["isSymlink"] = True
    return entry


def _existing(sandbox: Sandbox, path: str | None) -> tuple[str, Path]:
    if not path:
        raise RPCError("invalid_argument", "path is required")
    sandbox_path = sandbox.fs.resolve(path)
    local = sandbox.fs.host_path(path)
    if not local.exists() and not local.is_symlink():
        raise RPCError("not_found", f"path '{sandbox_path}' does not exist")
    return sandbox_path, local


async def fs_stat(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    sandbox_path, local = _existing(sandbox, message.get("path"))
    return {"entry": _entry(sandbox_path, local)}


async def fs_list_dir(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    sandbox_path, local = _existing(sandbox, message.get("path"))
    if not local.is_dir():
        raise RPCError("invalid_argument", f"path '{sandbox_path}' is not a directory")
    depth = int(message.get("depth") or 1)
    entries: list[dict[str, Any]] = []

    def walk(directory: Path, shown: str, level: int) -> None:
        for child in sorted(directory.iterdir(), key=lambda p: p.name):
            child_path = f"{shown.rstrip('/')}/{child.name}"
            entries.append(_entry(child_path, child))
            if level < depth and child.is_dir() and not child.is_symlink():
                walk(child, child_path, level + 1)

    await asyncio.to_thread(walk, local, sandbox_path, 1)
    return {"entries": entries}


async def fs_make_dir(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    path = message.get("path")
    if not path:
        raise RPCError("invalid_argument", "path is required")
    sandbox_path, local = sandbox.fs.resolve(path), sandbox.fs.host_path(path)
    if local.exists():
        raise RPCError("already_exists", f"directory '{sandbox_path}' already exists")
    local.mkdir(parents=True)
    return {"entry": _entry(sandbox_path, local)}


async def fs_remove(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    path = message.get("path")
    if path and not sandbox.fs.host_path(path).exists() and not sandbox.fs.host_path(path).is_symlink():
        return {}  # envd removes like ``rm -f``: a missing path is not an error
    _, local = _existing(sandbox, path)
    if local.is_dir() and not local.is_symlink():
        await asyncio.to_thread(shutil.rmtree, local)
    else:
        local.unlink()
    return {}


async def fs_move(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    _, source = _existing(sandbox, message.get("source"))
    destination = message.get("destination")
    if not destination:
        raise RPCError("invalid_argument", "destination is required")
    target = sandbox.fs.host_path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(shutil.move, str(source), str(target))
    return {"entry": _entry(sandbox.fs.resolve(destination), target)}


async def unimplemented(request: web.Request, sandbox: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    raise RPCError("unimplemented", "directory watching is not emulated")
