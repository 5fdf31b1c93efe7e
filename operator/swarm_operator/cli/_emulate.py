"""``swarm-operator emulate`` and ``dev``: the offline emulators and the playground.

They live in the test bed, a sibling distribution (``swarm_testbed``, in ``testbed/``) that the
container image does not ship: imported only when used, with a one-line error saying how to install
them when they are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._async import run_async, until_signalled


def add_emulate(sub: Any) -> None:
    emulate = sub.add_parser("emulate", help="run an offline emulator (E2B or the Kubernetes API)")
    emulate_sub = emulate.add_subparsers(metavar="TARGET")
    _add_e2b(emulate_sub)
    kube = emulate_sub.add_parser("kube", help="a Kubernetes API emulator with our CRD loaded")
    kube.add_argument("--host", default="127.0.0.1")
    kube.add_argument("--port", type=int, default=0, help="0 picks a free port")
    kube.add_argument("--kubeconfig", type=Path, required=True, help="where to write its kubeconfig")
    kube.set_defaults(handler=_cmd_emulate_kube)


def _add_e2b(emulate_sub: Any) -> None:
    e2b = emulate_sub.add_parser("e2b", help="an E2B-compatible control plane and envd on one port")
    e2b.add_argument("--host", default="127.0.0.1")
    e2b.add_argument("--port", type=int, default=0, help="0 picks a free port")
    e2b.add_argument("--api-key", default=None, help="the only key accepted (default: any e2b_ key)")
    e2b.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every call")
    e2b.add_argument("--fault-rate", type=float, default=0.0, help="share of calls that fail (0..1)")
    e2b.add_argument("--seed", type=int, default=None, help="seed for the fault injector")
    e2b.add_argument("--quota", type=int, default=None, help="most sandboxes alive at once")
    e2b.add_argument(
        "--home-template",
        type=Path,
        default=None,
        metavar="DIR",
        help="copied into every sandbox's home, like a template image (.profile, tools)",
    )
    _add_e2b_service_rules(e2b)
    e2b.set_defaults(handler=_cmd_emulate_e2b)


def _add_e2b_service_rules(e2b: argparse.ArgumentParser) -> None:
    """The E2B rules the emulator reproduces that a test may tune or, by name, relax."""
    e2b.add_argument(
        "--plan",
        choices=("hobby", "pro"),
        default="hobby",
        help="E2B plan whose lifetime cap applies: hobby 1 h, pro 24 h (default %(default)s)",
    )
    e2b.add_argument(
        "--lifetime-cap-seconds",
        type=int,
        default=None,
        metavar="N",
        help="override the plan's lifetime cap (counted from each sandbox's start)",
    )
    e2b.add_argument(
        "--identity-delay-seconds",
        type=float,
        default=0.2,
        metavar="S",
        help="E2B_SANDBOX_ID appears in a sandbox this long after start (default %(default)s)",
    )
    e2b.add_argument(
        "--permissive-egress",
        action="store_true",
        help="accept any network rule (NOT what E2B does: for checks that must fail)",
    )
    e2b.add_argument(
        "--no-stock-templates",
        dest="stock_templates",
        action="store_false",
        help="every template, base included, has the host's tools (NOT what E2B does)",
    )


def add_dev(sub: Any) -> None:
    dev = sub.add_parser("dev", help="the playground: emulators, operator and examples, live, in one command")
    dev.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="manifests to apply (repeatable; default: examples/*.yaml)",
    )
    dev.add_argument(
        "--e2b",
        choices=("emulator", "real"),
        default="emulator",
        help="E2B emulator (default) or the real service (needs E2B_API_KEY)",
    )
    dev.add_argument("--keep-temp", action="store_true", help="keep the temp directory (logs) at exit")
    dev.set_defaults(handler=_cmd_dev)


#: What to say when a command needs the test bed and it is not installed.
TESTBED_MISSING = (
    "needs the test bed (the swarm_testbed package, not in the container image): "
    "run scripts/setup, or pip install -e testbed/ from a checkout"
)


def _has_testbed() -> bool:
    import importlib.util

    return importlib.util.find_spec("swarm_testbed") is not None


def _cmd_emulate_e2b(args: argparse.Namespace) -> int:
    if not _has_testbed():
        print(f"swarm-operator emulate: {TESTBED_MISSING}", file=sys.stderr)
        return 1
    from swarm_testbed.e2b import E2BEmulator

    async def serve() -> None:
        async with E2BEmulator(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            seed=args.seed,
            quota=args.quota,
            home_template=args.home_template,
            plan=args.plan,
            lifetime_cap_seconds=args.lifetime_cap_seconds,
            identity_delay_seconds=args.identity_delay_seconds,
            permissive_egress=args.permissive_egress,
            stock_templates=args.stock_templates,
        ) as emulator:
            print(f"E2B emulator listening on {emulator.url}", flush=True)
            await until_signalled()

    return run_async(serve)


def _cmd_emulate_kube(args: argparse.Namespace) -> int:
    if not _has_testbed():
        print(f"swarm-operator emulate: {TESTBED_MISSING}", file=sys.stderr)
        return 1
    from swarm_operator._crd import package_path
    from swarm_testbed.kube import KubeEmulatorServer

    async def serve() -> None:
        # The test bed knows no product: it serves the CRDs it is given, ours.
        async with KubeEmulatorServer(
            host=args.host, port=args.port, crd_dirs=[package_path().parent]
        ) as server:
            server.write_kubeconfig(args.kubeconfig)
            print(
                f"Kubernetes emulator listening on {server.url} (kubeconfig: {args.kubeconfig})", flush=True
            )
            await until_signalled()

    return run_async(serve)


def _cmd_dev(args: argparse.Namespace) -> int:
    if not _has_testbed():  # the Kubernetes emulator, even with real E2B
        print(f"swarm-operator dev: {TESTBED_MISSING}", file=sys.stderr)
        return 1
    from swarm_operator.playground import Playground, PlaygroundError, default_manifests

    try:
        manifests = args.files or default_manifests()
        return Playground(manifests, e2b=args.e2b, keep_temp=args.keep_temp).run()
    except PlaygroundError as exc:
        print(f"swarm-operator dev: {exc}", file=sys.stderr)
        return 1
