"""The ``swarm-operator`` command line: thin argument parsing that delegates at once.

Subcommands import what they need lazily, so ``swarm-operator version`` does not pay for kopf, the
kubernetes client or the E2B SDK. The emulators (``emulate``, ``dev``) live in the test bed, a sibling
distribution (``swarm_testbed``, in ``testbed/``) that the container image does not ship: they are
imported only when used, and a one-line error says how to install them when they are missing.
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
    sub = parser.add_subparsers(metavar="COMMAND", dest="command")

    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=_cmd_version)
    _add_template(sub)
    _add_doctor(sub)

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
    e2b.add_argument(
        "--home-template",
        type=Path,
        default=None,
        metavar="DIR",
        help="copied into every sandbox's home, like a template image (.profile, tools)",
    )
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
    e2b.set_defaults(handler=_cmd_emulate_e2b)

    kube = emulate_sub.add_parser("kube", help="a Kubernetes API emulator with our CRD loaded")
    kube.add_argument("--host", default="127.0.0.1")
    kube.add_argument("--port", type=int, default=0, help="0 picks a free port")
    kube.add_argument("--kubeconfig", type=Path, required=True, help="where to write its kubeconfig")
    kube.set_defaults(handler=_cmd_emulate_kube)

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

    def swarm_command(name: str, help: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help)
        command.add_argument("name", metavar="NAME", help="the SwarmSandbox")
        command.add_argument(
            "-n",
            "--namespace",
            default=None,
            help="its namespace (default: the kubeconfig context's, else default)",
        )
        command.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
        return command

    attach = swarm_command("attach", "attach this terminal to the swarm's tmux session (Ctrl-] detaches)")
    attach.set_defaults(handler=_cmd_attach)
    status = swarm_command("status", "agents, health, sandbox, expiry, recent Events and step timings")
    status.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="json: the resource's status, for scripts",
    )
    status.set_defaults(handler=_cmd_status)
    resume = swarm_command("resume", "resume a swarm its operator paused for idleness (spec.idle)")
    resume.set_defaults(handler=_cmd_resume)
    logs = swarm_command("logs", "the coordinator's message log from inside the sandbox")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new messages")
    logs.add_argument("--tail", type=int, default=200, metavar="N", help="lines to show (default 200)")
    logs.set_defaults(handler=_cmd_logs)
    return parser


def _add_template(sub: Any) -> None:
    template = sub.add_parser("template", help="print or build the prebuilt E2B template for swarms")
    template.add_argument(
        "--coordinator",
        default=None,
        metavar="REQ",
        help="pinned coordinator (default: the operator's pin, also coordinator.install's default)",
    )
    template.add_argument(
        "--agent-cli",
        default=None,
        metavar="NPM",
        help="pinned agent CLI (default: the Claude Code version the setup script installs)",
    )
    template.add_argument("--base", default=None, help="base image (default debian:trixie)")
    template.add_argument(
        "--from-template",
        default=None,
        metavar="T",
        help="start from an E2B template instead, e.g. mcp-gateway (needed for MCP)",
    )
    template.add_argument("--format", choices=("dockerfile", "json"), default="dockerfile")
    template.add_argument(
        "--build",
        default=None,
        metavar="NAME",
        help="build it on E2B as NAME[:tag] with the key in E2B_API_KEY; "
        "without it the definition is printed, offline",
    )
    template.set_defaults(handler=_cmd_template)


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check, live, every E2B contract the operator relies on "
        "(needs E2B_API_KEY; creates and kills a few sandboxes)",
    )
    doctor.add_argument(
        "--template",
        default=None,
        metavar="T",
        help="template whose tools are checked (default: the operator's SWARM_DEFAULT_TEMPLATE setting)",
    )
    doctor.add_argument(
        "--mcp-template",
        default="mcp-gateway",
        metavar="T",
        help="template holding E2B's mcp-gateway (default %(default)s)",
    )
    doctor.add_argument(
        "--plan",
        choices=("hobby", "pro"),
        default="hobby",
        help="your E2B plan, for its lifetime cap (default %(default)s: 1 h; pro: 24 h)",
    )
    doctor.add_argument(
        "--lifetime-cap-seconds",
        type=int,
        default=None,
        metavar="N",
        help="the plan's cap in seconds, when it is neither (overrides --plan)",
    )
    doctor.add_argument(
        "--call-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="bound on each E2B call (default %(default)ss; a create gets twice it)",
    )
    doctor.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from swarm_operator.backend import doctor
    from swarm_operator.config import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"swarm-operator doctor: bad setting: {exc}", file=sys.stderr)
        return 2
    options = doctor.Options(
        template=args.template or settings.default_template,
        mcp_template=args.mcp_template,
        lifetime_cap_s=args.lifetime_cap_seconds or doctor.PLAN_CAPS[args.plan],
        lease_s=settings.lease_seconds,
        user=settings.sandbox_user,
        call_timeout_s=args.call_timeout,
        create_timeout_s=2 * args.call_timeout,
    )

    async def check() -> None:
        raise SystemExit(await doctor.main(options))

    return run_async(check)


def _cmd_template(args: argparse.Namespace) -> int:
    from swarm_operator import template

    try:
        definition = template.definition(
            coordinator=args.coordinator,
            agent_cli=args.agent_cli,
            base=args.base,
            from_template=args.from_template,
        )
    except ValueError as exc:
        print(f"swarm-operator template: {exc}", file=sys.stderr)
        return 2
    if args.build:
        return template.main_build(definition, args.build)
    print(template.render(definition, args.format))
    return 0


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
            await _until_signalled()

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
            await _until_signalled()

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


def _console(args: argparse.Namespace, action: Callable[[Any], int], *, uses_e2b: bool) -> int:
    """Load the swarm and run ``action`` on it; a :class:`ConsoleError` is one line and exit 1.

    Commands that used the E2B SDK leave through ``os._exit`` (see :func:`run_async`).
    """
    from swarm_operator import console

    status = 1
    try:
        namespace = args.namespace or _context_namespace(args.kubeconfig)
        status = action(console.load_swarm(args.name, namespace, kubeconfig=args.kubeconfig))
    except console.ConsoleError as exc:
        print(f"swarm-operator {args.command}: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    if not uses_e2b:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _context_namespace(kubeconfig: str | None) -> str:
    """The current context's namespace, as kubectl picks it; ``default`` when unset or unreadable."""
    from swarm_operator.cluster.user import context_namespace

    return context_namespace(kubeconfig)


def _cmd_status(args: argparse.Namespace) -> int:
    from swarm_operator import console

    def show(swarm: Any) -> int:
        if args.output == "json":
            print(console.status_json(swarm))
        else:
            print(console.format_status(swarm, console.events(swarm)))
        return 0

    return _console(args, show, uses_e2b=False)


def _cmd_resume(args: argparse.Namespace) -> int:
    from swarm_operator import console

    def ask(swarm: Any) -> int:
        print(console.resume(swarm))
        return 0

    return _console(args, ask, uses_e2b=False)


def _cmd_logs(args: argparse.Namespace) -> int:
    from swarm_operator import console

    return _console(
        args, lambda swarm: console.logs(swarm, follow=args.follow, lines=args.tail), uses_e2b=True
    )


def _cmd_attach(args: argparse.Namespace) -> int:
    from swarm_operator import console

    def attach(swarm: Any) -> int:
        sandbox_id = swarm.sandbox_id  # "no sandbox yet" matters more than "no terminal"
        console.refuse_if_suspended(swarm)  # and so does "suspended" (connect checks E2B's side)
        if not sys.stdin.isatty():
            raise console.ConsoleError("attach needs a terminal (stdin is not a tty)")
        print(
            f"attaching to {swarm.namespace}/{swarm.name} (sandbox {sandbox_id}); Ctrl-] detaches", flush=True
        )
        return console.attach(swarm)

    return _console(args, attach, uses_e2b=True)


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
