"""Where the metrics live and how they are served: a registry of the operator's own, over HTTP.

The registry is passed around rather than the library's global one so that tests, and several
operators in one process (the playground, benchmarks), never collide on names.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["new_registry", "start_server"]


def new_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors the global one would have
    (memory, CPU, open fds: what you look at first when an operator misbehaves)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def start_server(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread; returns a closer that
    stops the server and frees the port. Port 0 means metrics are off: nothing is served and the
    closer does nothing (not "any free port", which nobody could scrape)."""
    if port == 0:
        return lambda: None
    server, thread = start_http_server(port, addr=addr, registry=registry)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)

    return close
