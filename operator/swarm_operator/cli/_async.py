"""How a CLI command that used asyncio (and the E2B SDK) ends: a clean shutdown, then ``os._exit``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM, so a server shuts down cleanly rather than being torn mid-write."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_async(factory: Callable[[], Awaitable[Any]]) -> int:
    """Run a coroutine to completion, then leave through ``os._exit``.

    The async E2B SDK's HTTP engine (pyqwest) aborts the interpreter in a share of normal exits after
    async use; a clean shutdown followed by ``os._exit`` keeps the exit status truthful.
    """
    status = 0
    try:
        asyncio.run(_awaited(factory))
    except KeyboardInterrupt:
        status = 130
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    exit_now(status)


def exit_now(status: int) -> NoReturn:
    """Flush and leave with ``status`` through ``os._exit`` (see :func:`run_async`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


async def _awaited(factory: Callable[[], Awaitable[Any]]) -> None:
    await factory()
