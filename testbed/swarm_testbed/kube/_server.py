"""Serving the emulator over HTTP, in the caller's event loop or in a thread of its own.

The async form is for the CLI and async tests. The thread form is for sync tests and for tests that run
the operator as a subprocess: the emulator needs a loop that keeps running while the test blocks on
``subprocess`` or the (synchronous) kubernetes client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import kmock
import yaml

from swarm_testbed.kube._emulator import KubeEmulator

T = TypeVar("T")


def write_kubeconfig(url: str, path: Path, *, namespace: str = "default") -> Path:
    """A kubeconfig for kubectl, kopf and the kubernetes client (plain http, a dummy bearer token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class KubeEmulatorServer:
    """An async context manager running :class:`KubeEmulator` behind ``kmock.Server``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crd_dirs: Sequence[Path] = (),
    ) -> None:
        self._host = host
        self._port = port
        self._crd_dirs = crd_dirs
        self._emulator: KubeEmulator | None = None
        self._server: kmock.Server | None = None

    @property
    def emulator(self) -> KubeEmulator:
        if self._emulator is None:
            raise RuntimeError("the emulator server is not running")
        return self._emulator

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator server is not running")
        return str(self._server.url).rstrip("/")

    def write_kubeconfig(self, path: Path) -> Path:
        return write_kubeconfig(self.url, path)

    async def __aenter__(self) -> Self:
        emulator = KubeEmulator(crd_dirs=self._crd_dirs)
        await emulator.__aenter__()
        server = kmock.Server(emulator, host=self._host, port=self._port or None)
        try:
            await server.__aenter__()
        except BaseException:
            await emulator.__aexit__(None, None, None)
            raise
        self._emulator, self._server = emulator, server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        emulator, server = self._emulator, self._server
        self._emulator = self._server = None
        if emulator is None or server is None:
            return
        # Open watches would hold aiohttp's shutdown for its full grace period (60 s): end them first.
        emulator.close_watches()
        try:
            await server.__aexit__(exc_type, exc_value, traceback)
        finally:
            await emulator.__aexit__(exc_type, exc_value, traceback)

    @classmethod
    def start_in_thread(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crd_dirs: Sequence[Path] = (),
        kubeconfig: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> ThreadedKubeEmulator:
        """Run a server on its own event loop in a daemon thread; return once it is listening."""
        handle = ThreadedKubeEmulator(cls(host=host, port=port, crd_dirs=crd_dirs), kubeconfig)
        handle._start(startup_timeout)
        return handle


class ThreadedKubeEmulator:
    """A running :class:`KubeEmulatorServer` in a background thread. Stop it with :meth:`stop`."""

    def __init__(self, server: KubeEmulatorServer, kubeconfig: Path | None) -> None:
        self._server = server
        self._kubeconfig_target = kubeconfig
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)
        self.url: str = ""
        self.kubeconfig: Path | None = None

    @property
    def emulator(self) -> KubeEmulator:
        """The emulator; mutate it only through :meth:`call` (it lives on another thread's loop)."""
        return self._server.emulator

    def _start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Kubernetes emulator did not start in time")
        if self._failure is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._failure

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            async with self._server:
                self.url = self._server.url
                if self._kubeconfig_target is not None:
                    self.kubeconfig = self._server.write_kubeconfig(self._kubeconfig_target)
                self._ready.set()
                await self._stopping.wait()
        except BaseException as exc:  # reported to the starting thread, not lost in this one
            self._failure = exc
            self._ready.set()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """Run ``fn(*args)`` on the emulator's loop (e.g. ``handle.call(emu.create_object, body)``)."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Close watches, stop the server and join the thread (idempotent)."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the Kubernetes emulator did not stop in time")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
