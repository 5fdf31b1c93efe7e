"""The ``swarm-operator`` command line: thin argument parsing that delegates at once.

Subcommands import what they need lazily, so ``swarm-operator version`` does not pay for kopf, the
kubernetes client or the E2B SDK. The commands live in this package's modules by audience: the E2B
tools (``_tools``), the test bed's emulators and playground (``_emulate``), and the commands on one
swarm (``_swarm``), which the ``kubectl swarm`` plugin (:func:`kubectl_main`) shares.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from swarm_operator import __version__

from ._async import run_async
from ._emulate import add_dev, add_emulate
from ._swarm import add_commands, dispatch, kubectl_main
from ._tools import add_doctor, add_template

__all__ = ["kubectl_main", "main", "run_async"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    return dispatch(_build_parser(), argv)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-operator",
        description="Kubernetes operator running swarms of coding agents in E2B sandboxes.",
    )
    sub = parser.add_subparsers(metavar="COMMAND", dest="command")
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=_cmd_version)
    add_template(sub)
    add_doctor(sub)
    _add_run(sub)
    add_emulate(sub)
    add_dev(sub)
    add_commands(sub)  # status, logs, attach, pull, suspend, resume: also the kubectl plugin's
    return parser


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run the operator against the current kubeconfig or cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; glob patterns allowed)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    run.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: do not coordinate with other operator instances",
    )
    run.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="kopf peering object name, for one active instance among replicas",
    )
    run.add_argument(
        "--selector",
        default=None,
        metavar="SELECTOR",
        help="only SwarmSandboxes matching this label selector (server-side); for "
        "sharding resources across several operator releases",
    )
    run.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    run.set_defaults(handler=_cmd_run)


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
    memo.namespaces = list(args.namespace) or None
    memo.selector = args.selector
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
