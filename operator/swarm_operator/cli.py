"""The ``swarm-operator`` command line: thin argument parsing that delegates at once.

Subcommands import what they need lazily, so ``swarm-operator version`` does not pay for kopf, the
kubernetes client or the E2B SDK, and the emulators (an optional extra) are only imported when used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from swarm_operator import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-operator",
        description="Kubernetes operator running swarms of coding agents in E2B sandboxes.",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=_cmd_version)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig or cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; glob patterns allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (the default when no --namespace is given)")
    run.add_argument("--standalone", action="store_true",
                     help="no peering: do not coordinate with other operator instances")
    run.add_argument("--peering", default=None, metavar="NAME",
                     help="kopf peering object name, for one active instance among replicas")
    run.add_argument("--liveness", default=None, metavar="URL",
                     help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz")
    run.set_defaults(handler=_cmd_run)

    emulate = sub.add_parser("emulate", help="run an offline emulator (E2B or the Kubernetes API)")
    emulate_sub = emulate.add_subparsers(metavar="TARGET")

    e2b = emulate_sub.add_parser("e2b", help="an E2B-compatible control plane and envd on one port")
    e2b.add_argument("--host", default="127.0.0.1")
    e2b.add_argument("--port", type=int, default=0, help="0 picks a free port")
    e2b.add_argument("--api-key", default=None, help="the only key accepted (default: any e2b_ key)")
    e2b.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every call")
    e2b.add_argument("--fault-rate", type=float, default=0.0, help="share of calls that fail (0..1)")
    e2b.add_argument("--seed", type=int, default=None, help="seed for the fault injector")
    e2b.add_argument("--quota", type=int, default=None, help="most sandboxes alive at once")
    e2b.set_defaults(handler=_cmd_emulate_e2b)

    kube = emulate_sub.add_parser("kube", help="a Kubernetes API emulator with our CRD loaded")
    kube.add_argument("--host", default="127.0.0.1")
    kube.add_argument("--port", type=int, default=0, help="0 picks a free port")
    kube.add_argument("--kubeconfig", type=Path, required=True, help="where to write its kubeconfig")
    kube.set_defaults(handler=_cmd_emulate_kube)
    return parser


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"swarm-operator {__version__}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from swarm_operator import logs
    from swarm_operator.config import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"swarm-operator: bad setting: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)

    import kopf

    from swarm_operator import handlers  # noqa: F401  (registers the handlers with kopf)

    memo = kopf.Memo()
    memo.settings = settings
    status = 0
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone or args.peering is None,
            peering_name=args.peering,
            liveness_endpoint=args.liveness,
            memo=memo,
        )
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # a start-up failure (no kubeconfig, API unreachable) in one line
        print(f"swarm-operator: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    # See run_async: the E2B SDK's HTTP engine can abort a normal interpreter exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _cmd_emulate_e2b(args: argparse.Namespace) -> int:
    from swarm_operator.emulators.e2b import E2BEmulator

    async def serve() -> None:
        async with E2BEmulator(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            seed=args.seed,
            quota=args.quota,
        ) as emulator:
            print(f"E2B emulator listening on {emulator.url}", flush=True)
            await _until_signalled()

    return run_async(serve)


def _cmd_emulate_kube(args: argparse.Namespace) -> int:
    from swarm_operator.emulators.kube import KubeEmulatorServer

    async def serve() -> None:
        async with KubeEmulatorServer(host=args.host, port=args.port) as server:
            server.write_kubeconfig(args.kubeconfig)
            print(f"Kubernetes emulator listening on {server.url} (kubeconfig: {args.kubeconfig})",
                  flush=True)
            await _until_signalled()

    return run_async(serve)


async def _until_signalled() -> None:
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
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


async def _awaited(factory: Callable[[], Awaitable[Any]]) -> None:
    await factory()
