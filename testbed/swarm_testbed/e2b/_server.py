"""The emulator itself: one aiohttp server on one port for the control plane, envd and inspection.

Point the unmodified SDK at it with ``E2B_API_URL`` and ``E2B_SANDBOX_URL`` both set to ``url``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import hashlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from swarm_testbed.e2b import _envd
from swarm_testbed.e2b._connect import (
    RPCError,
    decode_request,
    end_stream,
    is_streaming,
    open_stream,
    unary_error,
    unary_response,
)
from swarm_testbed.e2b._control import ControlPlane, api_error, effective_egress
from swarm_testbed.e2b._isolation import (
    Isolation,
    SandboxFS,
    detect_isolation,
    prepare_mcp_mountpoint,
    prepare_whiteouts,
)
from swarm_testbed.e2b._knobs import FAULT_KINDS, STOCK_TEMPLATES, Knobs, Stats, as_operations
from swarm_testbed.e2b._sandbox import Sandbox, new_id, utcnow
from swarm_testbed.e2b._templates import (
    HIDDEN_PROGRAMS,
    STOCK_IMAGES,
    coordinator_wheel,
    index_page,
)

API_KEY_SHAPE = re.compile(r"^e2b_[0-9a-f]{40}$")
_REAP_INTERVAL = 0.1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class E2BEmulator:
    """An E2B-compatible control plane and envd, serving real local processes as sandboxes.

    Use as an async context manager (``async with E2BEmulator() as emu: emu.url``); leaving it kills
    every sandbox. Sync code and other processes use :meth:`start_in_thread`.

    By default it follows the real service (each rule cites its upstream source where it is coded):

    - ``plan`` ("hobby" | "pro") sets the lifetime cap counted from a sandbox's start (1 h | 24 h);
      ``lifetime_cap_seconds`` overrides it (short caps for tests). Creates and connects asking for
      more are 400; ``set_timeout`` is clamped silently, then 400 "Max instance length exceeded".
    - ``stock_templates``: ``base`` (no tmux/claude/claudeswarm on PATH; ``sudo``, ``apt-get``,
      ``npm`` stand-ins that install offline), ``anthropic-claude-code`` (plus ``claude``) and
      ``mcp-gateway`` (plus E2B's gateway contract) always exist. Any other name is a user's own
      template: host tools plus ``home_template`` (that is how tests opt into tools by name).
      ``stock_templates=False`` makes every template, stock names included, the host's tools.
    - egress rules are validated as E2B does unless ``permissive_egress`` (deliberately wrong).
    - ``E2B_SANDBOX_ID`` appears ``identity_delay_seconds`` after start.
    - every 429 carries ``Retry-After: retry_after_seconds``; ``templates_forbidden`` answer 403.

    Misbehaviour knobs (off by default): ``latency_ms`` added to every call; ``fault_rate`` share of calls
    that fail, drawn from a ``seed``-ed generator among ``fault_kinds`` (429, 500, 502, timeout, drop),
    optionally only for ``fault_operations``; ``quota`` of concurrently running sandboxes (over it:
    429); ``identity_mismatch`` makes ``E2B_SANDBOX_ID`` inside a sandbox name another sandbox.
    ``canned_commands`` (benchmarks only, not E2B's behaviour) answers commands with canned reports
    instead of starting processes (``_light``).
    ``home_template`` is a directory copied into every new sandbox's home, the way a real E2B
    template's image provides ``/home/user`` (e.g. a ``.profile`` and tools in ``.local/bin``):
    commands run under ``bash -l``, whose profile resets PATH, so this is how a test or the
    playground gives sandboxes programs of their own.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        seed: int | None = None,
        quota: int | None = None,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        fault_operations: Iterable[str] | None = None,
        fault_hang_seconds: float = 30.0,
        plan: str = "hobby",
        lifetime_cap_seconds: int | None = None,
        identity_delay_seconds: float = 0.2,
        permissive_egress: bool = False,
        stock_templates: bool = True,
        templates_forbidden: Iterable[str] = (),
        retry_after_seconds: int = 1,
        max_timeout: int | None = None,
        default_timeout: int = 15,
        identity_mismatch: bool = False,
        user_uid: int | None = None,
        isolation: Isolation | str | None = None,
        workdir: str | Path | None = None,
        home_template: str | Path | None = None,
        templates: Iterable[str] | None = None,
        canned_commands: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        #: The one key accepted when set; assign a new one while running to emulate a rotation
        #: (the old key is refused from then on).
        self.api_key = api_key
        #: (operation, sha256[:12] of the X-API-KEY sent, accepted?) for recent control-plane calls:
        #: which key a client used, without keeping the key itself.
        self.auth_log: collections.deque[tuple[str, str, bool]] = collections.deque(maxlen=1000)
        #: When set, commands run for any user but ``root`` (and files written for them) belong to
        #: this unprivileged uid, as on E2B where ``user`` is an ordinary account. A command that names
        #: no user runs as root: it stands for a template whose default user is root, so a client
        #: that forgets to ask for ``user`` is caught.
        self.user_uid = user_uid
        if max_timeout is not None and lifetime_cap_seconds is None:
            lifetime_cap_seconds = max_timeout  # the knob's former name
        self.knobs = Knobs(
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            seed=seed,
            quota=quota,
            fault_kinds=tuple(fault_kinds),
            fault_operations=as_operations(fault_operations),
            fault_hang_seconds=fault_hang_seconds,
            plan=plan,
            lifetime_cap_seconds=lifetime_cap_seconds,
            default_timeout=default_timeout,
            identity_mismatch=identity_mismatch,
            identity_delay_seconds=identity_delay_seconds,
            permissive_egress=permissive_egress,
            retry_after_seconds=retry_after_seconds,
            templates_forbidden=frozenset(templates_forbidden),
        )
        #: BENCHMARKS ONLY, not a rule of E2B: commands start no process and get canned reports
        #: (``_light``), so one small machine carries a thousand sandboxes. Off unless asked for.
        self.canned_commands = canned_commands
        #: Whether ``base``/``anthropic-claude-code``/``mcp-gateway`` are modelled (see the class doc).
        self.stock_templates = stock_templates
        self._whiteouts: Path | None = None
        self._mcp_mountpoint = False
        self.stats = Stats()
        self.sandboxes: dict[str, Sandbox] = {}
        self.isolation: Isolation | None = Isolation(isolation) if isolation is not None else None
        self._workdir_parent = Path(workdir) if workdir is not None else None
        self.home_template = Path(home_template) if home_template is not None else None
        #: Template ids/aliases that exist besides the stock ones; None: any name is accepted
        #: (creating from an unknown one is a 404, as on E2B).
        self.templates: frozenset[str] | None = frozenset(templates) if templates is not None else None
        #: Wheels downloaded from the stand-in index, in order.
        self.pypi_downloads: list[str] = []
        self._workdir: Path | None = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.url = ""

    # ----- life cycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> E2BEmulator:
        self._closing = asyncio.Event()
        self._workdir = Path(tempfile.mkdtemp(prefix="e2b-emulator-", dir=self._workdir_parent))
        if self.isolation is None:
            self.isolation = await asyncio.to_thread(detect_isolation, self._workdir)
        if self.stock_templates:
            self._whiteouts = await asyncio.to_thread(
                prepare_whiteouts, self._workdir, HIDDEN_PROGRAMS, self.isolation
            )
            self._mcp_mountpoint = prepare_mcp_mountpoint(self.isolation)
        self._runner = web.AppRunner(
            self._build_app(), handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the asyncio server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._reaper = asyncio.create_task(self._reap(), name="e2b-emulator-reaper")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await self.kill_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> EmulatorThread:
        """Run an emulator on its own event loop in a daemon thread; ``.stop()`` ends it."""
        return EmulatorThread(cls(**kwargs))

    # ----- sandboxes -----------------------------------------------------------------------------
    def running_count(self) -> int:
        return sum(1 for s in self.sandboxes.values() if s.ended is None and s.state == "running")

    def template_exists(self, template: str) -> bool:
        if self.stock_templates and template in STOCK_TEMPLATES:
            return True
        return self.templates is None or template in self.templates

    def new_sandbox(
        self,
        *,
        template: str,
        timeout: int,
        metadata: dict[str, str],
        env_vars: dict[str, str],
        create_request: dict[str, Any],
        auto_pause: bool = False,
    ) -> Sandbox:
        assert self._workdir is not None and self.isolation is not None, "emulator not started"
        sandbox_id = new_id()
        now = utcnow()
        identity = None
        if self.knobs.identity_mismatch:
            identity = new_id()
        sandbox = Sandbox(
            sandbox_id=sandbox_id,
            template_id=template,
            alias=template if not re.fullmatch(r"[a-z0-9]{20}", template) else None,
            metadata=metadata,
            env_vars=env_vars,
            create_request=create_request,
            started_at=now,
            end_at=now + datetime.timedelta(seconds=timeout),
            fs=SandboxFS(
                self._workdir / sandbox_id,
                self.isolation,
                home_template=self.home_template,
                user_uid=self.user_uid,
                image=STOCK_IMAGES.get(template) if self.stock_templates else None,
                whiteouts=self._whiteouts,
                mcp_mountpoint=self._mcp_mountpoint,
            ),
            auto_pause=auto_pause,
            identity=identity,
            identity_visible_at=now + datetime.timedelta(seconds=self.knobs.identity_delay_seconds),
            # EMULATOR ONLY: the coordinator installs offline from the emulator's stand-in index.
            emulator_env={"PIP_INDEX_URL": f"{self.url}/_pypi/simple/", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            egress=effective_egress(create_request),
            canned=self.canned_commands,
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox

    async def destroy(self, sandbox: Sandbox, why: str) -> None:
        if sandbox.ended is None:
            await sandbox.destroy(why)

    async def kill_all(self) -> None:
        live = [s for s in self.sandboxes.values() if s.ended is None]
        await asyncio.gather(*(self.destroy(s, "killed") for s in live))

    async def reset(self) -> None:
        """Kill every sandbox and forget them, zero the counters (not the knobs)."""
        await self.kill_all()
        self.sandboxes.clear()
        self.stats.reset()

    def inspect(self, include_dead: bool = False) -> list[dict[str, Any]]:
        return [s.inspection_view() for s in self.sandboxes.values() if include_dead or s.ended is None]

    async def _reap(self) -> None:
        """Expire sandboxes whose timeout passed: killed, or paused when they asked for auto-pause."""
        while True:
            await asyncio.sleep(_REAP_INTERVAL)
            now = utcnow()
            for sandbox in list(self.sandboxes.values()):
                if sandbox.ended is None and sandbox.state == "running" and sandbox.end_at <= now:
                    try:
                        if sandbox.auto_pause:
                            await sandbox.pause()
                        else:
                            await self.destroy(sandbox, "expired")
                    except Exception:  # a reaper that dies leaks every later sandbox: keep going
                        continue

    # ----- HTTP ----------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        control = ControlPlane(self)
        c = self._control_route
        app.router.add_post("/v2/sandboxes", c("sandbox.create", control.create))
        app.router.add_post("/sandboxes", c("sandbox.create", control.create))
        app.router.add_get("/v2/sandboxes", c("sandbox.list", control.list))
        app.router.add_get("/sandboxes", c("sandbox.list", control.list_v1))
        app.router.add_get("/sandboxes/{sandbox_id}", c("sandbox.get", control.get))
        app.router.add_delete("/sandboxes/{sandbox_id}", c("sandbox.kill", control.kill))
        app.router.add_post("/sandboxes/{sandbox_id}/timeout", c("sandbox.timeout", control.set_timeout))
        app.router.add_post("/sandboxes/{sandbox_id}/refreshes", c("sandbox.refresh", control.refresh))
        app.router.add_post("/v2/sandboxes/{sandbox_id}/connect", c("sandbox.connect", control.connect))
        app.router.add_post("/sandboxes/{sandbox_id}/connect", c("sandbox.connect", control.connect))
        app.router.add_post("/sandboxes/{sandbox_id}/resume", c("sandbox.resume", control.resume))
        app.router.add_post("/sandboxes/{sandbox_id}/pause", c("sandbox.pause", control.pause))
        app.router.add_get("/sandboxes/{sandbox_id}/metrics", c("sandbox.metrics", control.metrics))

        app.router.add_get("/health", self._envd_route("envd.health", _envd.health))
        app.router.add_get("/files", self._envd_route("files.read", _envd.read_file))
        app.router.add_post("/files", self._envd_route("files.write", _envd.write_file))
        rpcs: Mapping[str, tuple[str, Callable[..., Awaitable[Any]]]] = {
            "/process.Process/Start": ("process.start", _envd.process_start),
            "/process.Process/Connect": ("process.connect", _envd.process_connect),
            "/process.Process/List": ("process.list", _envd.process_list),
            "/process.Process/SendInput": ("process.send_input", _envd.process_send_input),
            "/process.Process/SendSignal": ("process.send_signal", _envd.process_send_signal),
            "/process.Process/CloseStdin": ("process.close_stdin", _envd.process_close_stdin),
            "/process.Process/Update": ("process.update", _envd.process_update),
            "/filesystem.Filesystem/Stat": ("filesystem.stat", _envd.fs_stat),
            "/filesystem.Filesystem/ListDir": ("filesystem.list_dir", _envd.fs_list_dir),
            "/filesystem.Filesystem/MakeDir": ("filesystem.make_dir", _envd.fs_make_dir),
            "/filesystem.Filesystem/Remove": ("filesystem.remove", _envd.fs_remove),
            "/filesystem.Filesystem/Move": ("filesystem.move", _envd.fs_move),
            "/filesystem.Filesystem/WatchDir": ("filesystem.watch_dir", _envd.unimplemented),
            "/filesystem.Filesystem/CreateWatcher": ("filesystem.create_watcher", _envd.unimplemented),
            "/filesystem.Filesystem/GetWatcherEvents": ("filesystem.get_watcher_events", _envd.unimplemented),
            "/filesystem.Filesystem/RemoveWatcher": ("filesystem.remove_watcher", _envd.unimplemented),
        }
        for path, (operation, handler) in rpcs.items():
            app.router.add_post(path, self._rpc_route(operation, handler))
        app.router.add_post(
            "/process.Process/StreamInput",
            self._rpc_route("process.stream_input", _envd.process_stream_input, raw=True),
        )

        app.router.add_get("/_pypi/simple/{project}/", self._pypi_project)
        app.router.add_get("/_pypi/files/{filename}", self._pypi_file)
        app.router.add_get("/_emulator/stats", self._stats)
        app.router.add_get("/_emulator/sandboxes", self._inspect_all)
        app.router.add_get("/_emulator/sandboxes/{sandbox_id}", self._inspect_one)
        app.router.add_post("/_emulator/reset", self._reset)
        app.router.add_get("/_emulator/config", self._config)
        app.router.add_post("/_emulator/config", self._config)
        return app

    async def _misbehave(self, request: web.Request, operation: str) -> web.StreamResponse | None:
        """Apply the latency knob, then maybe a fault; returns the faulty answer if one was drawn."""
        if self.knobs.latency_ms > 0:
            await asyncio.sleep(self.knobs.latency_ms / 1000)
        kind = self.knobs.draw_fault(operation)
        if kind is None:
            return None
        self.stats.fault(kind)
        if kind == "timeout":
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=self.knobs.fault_hang_seconds)
            except TimeoutError:
                pass
            return api_error(504, "emulated fault: upstream timed out")
        if kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()  # nothing is written; aiohttp ends the request quietly
        if kind == "429":
            # e2b-dev/infra packages/api/internal/middleware/ratelimit/ratelimit.go: 429 with
            # Retry-After (whole seconds, at least 1) and {"code":429,"message":"Rate limit exceeded"}.
            return api_error(
                429,
                "Rate limit exceeded",
                headers={"Retry-After": str(max(1, self.knobs.retry_after_seconds))},
            )
        messages = {"500": "emulated fault: internal server error", "502": "emulated fault: bad gateway"}
        return api_error(int(kind), messages[kind])

    def _authorised(self, key: str | None) -> bool:
        if key is None:
            return False
        if self.api_key is not None:
            return key == self.api_key
        return bool(API_KEY_SHAPE.match(key))

    def _control_route(self, operation: str, handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def call(request: web.Request) -> web.StreamResponse:
            self.stats.count(operation)
            await request.read()  # the whole body before any answer (aiohttp pitfall)
            faulty = await self._misbehave(request, operation)
            if faulty is not None:
                return faulty
            key = request.headers.get("X-API-KEY")
            accepted = self._authorised(key)
            self.auth_log.append((operation, hashlib.sha256((key or "").encode()).hexdigest()[:12], accepted))
            if not accepted:
                return api_error(
                    401, "Invalid API key, please visit https://e2b.dev/docs/api-key to get your API key."
                )
            return await handler(request)

        return call

    def _envd_sandbox(self, request: web.Request) -> Sandbox | web.Response:
        sandbox_id = request.headers.get("E2b-Sandbox-Id", "")
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.ended is not None or sandbox.state != "running":
            return _envd.sandbox_not_found(sandbox_id or "<missing E2b-Sandbox-Id>")
        if request.headers.get("X-Access-Token") != sandbox.envd_access_token:
            return _envd.http_error(401, "unauthorized access, please provide a valid access token")
        return sandbox

    def _envd_route(
        self, operation: str, handler: Callable[[web.Request, Sandbox], Awaitable[web.StreamResponse]]
    ) -> Handler:
        async def call(request: web.Request) -> web.StreamResponse:
            self.stats.count(operation)
            if not request.content_type.startswith("multipart/"):
                await request.read()
            faulty = await self._misbehave(request, operation)
            if faulty is not None:
                return faulty
            sandbox = self._envd_sandbox(request)
            if isinstance(sandbox, web.Response):
                return sandbox
            return await handler(request, sandbox)

        return call

    def _rpc_route(
        self, operation: str, handler: Callable[..., Awaitable[Any]], raw: bool = False
    ) -> Handler:
        async def call(request: web.Request) -> web.StreamResponse:
            self.stats.count(operation)
            body = await request.read()
            streaming = is_streaming(request)
            faulty = await self._misbehave(request, operation)
            if faulty is not None:
                return faulty
            sandbox = self._envd_sandbox(request)
            if isinstance(sandbox, web.Response):
                return sandbox
            try:
                if raw:
                    return await handler(request, sandbox, body)
                result = await handler(request, sandbox, decode_request(body, streaming))
            except RPCError as error:
                if not streaming:
                    return unary_error(error)
                response = await open_stream(request)
                await response.write(end_stream(error))
                return response
            if isinstance(result, web.StreamResponse):
                return result
            return unary_response(result)

        return call

    # ----- the stand-in PyPI index (EMULATOR ONLY; never counted, never faulted) ---------------------
    async def _pypi_project(self, request: web.Request) -> web.Response:
        page = index_page(request.match_info["project"])
        if page is None:
            return web.Response(
                status=404, text="not found (the e2b emulator serves claude-swarm and uv only)"
            )
        return web.Response(text=page, content_type="text/html")

    async def _pypi_file(self, request: web.Request) -> web.Response:
        wheel = await asyncio.to_thread(coordinator_wheel, request.match_info["filename"])
        if wheel is None:
            return web.Response(status=404, text="not found")
        self.pypi_downloads.append(request.match_info["filename"])
        return web.Response(body=wheel, content_type="application/octet-stream")

    # ----- inspection (never counted, never faulted) ---------------------------------------------
    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def _inspect_all(self, request: web.Request) -> web.Response:
        include_dead = request.query.get("all", "").lower() in ("1", "true", "yes")
        return web.json_response(self.inspect(include_dead=include_dead))

    async def _inspect_one(self, request: web.Request) -> web.Response:
        sandbox = self.sandboxes.get(request.match_info["sandbox_id"])
        if sandbox is None:
            return web.json_response({"message": "unknown sandbox"}, status=404)
        return web.json_response(sandbox.inspection_view())

    async def _reset(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.Response(status=204)

    async def _config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = json.loads(await request.read() or b"{}")
                if "fault_operations" in changes:
                    as_operations(changes["fault_operations"])
                self.knobs.update(changes)
            except (ValueError, TypeError) as exc:
                return web.json_response({"message": str(exc)}, status=400)
        return web.json_response(self.knobs.as_json())


class EmulatorThread:
    """An :class:`E2BEmulator` running on its own event loop in a daemon thread.

    For sync tests and for processes that must talk to the emulator while doing blocking work.
    ``url`` and ``emulator`` are valid once the constructor returns; ``stop()`` kills every sandbox.
    """

    def __init__(self, emulator: E2BEmulator, start_timeout: float = 30.0) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="e2b-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout):
            raise TimeoutError("the E2B emulator did not start in time")
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        return self.emulator.url

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        try:
            async with self.emulator:
                self._ready.set()
                await self._stopped.wait()
        except BaseException as exc:  # surface start-up failures in the caller's thread
            self._error = exc
            self._ready.set()

    def call(self, factory: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
        """Run a coroutine on the emulator's loop from another thread and return its result."""

        async def run() -> Any:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def reset(self) -> None:
        self.call(self.emulator.reset)

    def inspect(self, include_dead: bool = False) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            return self.emulator.inspect(include_dead)

        return self.call(read)

    def stop(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        if self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)

    def __enter__(self) -> EmulatorThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
