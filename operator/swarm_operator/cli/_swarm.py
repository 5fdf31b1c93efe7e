"""The commands on one swarm — status, logs, attach, pull, suspend, resume — for ``swarm-operator`` and
for the ``kubectl swarm`` plugin: one definition of each, two programs.

kubectl runs a plugin as ``kubectl-swarm ARGS...`` with every argument after ``swarm`` (its own flags
are not parsed for plugins), so the plugin takes ``-n/--namespace`` and ``--kubeconfig`` before or
after the command, and reads ``$KUBECONFIG`` and the context's namespace as kubectl does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._async import exit_now

#: The programs these commands are part of (the first word of every error line).
SWARM_OPERATOR = "swarm-operator"
KUBECTL_SWARM = "kubectl swarm"


def add_commands(sub: Any) -> None:
    """Add the per-swarm commands to a parser's subcommands (``sub``)."""
    attach = _command(sub, "attach", "attach this terminal to the swarm's tmux session (Ctrl-] detaches)")
    attach.set_defaults(handler=_cmd_attach)
    status = _command(sub, "status", "agents, health, sandbox, expiry, recent Events and step timings")
    status.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="json: the resource's status, for scripts",
    )
    status.set_defaults(handler=_cmd_status)
    logs = _command(sub, "logs", "the coordinator's message log from inside the sandbox")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new messages")
    logs.add_argument("--tail", type=int, default=200, metavar="N", help="lines to show (default 200)")
    logs.set_defaults(handler=_cmd_logs)
    pull = _command(sub, "pull", "download the swarm's workspace (every ref) as a verified git bundle")
    pull.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where NAME.bundle is written (default: the current directory)",
    )
    pull.set_defaults(handler=_cmd_pull)
    suspend = _command(sub, "suspend", "pause the swarm's sandbox (sets spec.suspend=true)")
    suspend.set_defaults(handler=_cmd_suspend)
    resume = _command(
        sub, "resume", "resume a suspended swarm (spec.suspend=false) or one paused for idleness (spec.idle)"
    )
    resume.set_defaults(handler=_cmd_resume)


def _command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = sub.add_parser(name, help=help)
    command.add_argument("name", metavar="NAME", help="the SwarmSandbox")
    _add_location(command, argparse.SUPPRESS)  # SUPPRESS: unset here keeps the plugin's global flag
    return command


def _add_location(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="its namespace (default: the kubeconfig context's, else default)",
    )
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)")


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-swarm``: the same commands as ``swarm-operator``'s, run as a kubectl plugin."""
    parser = argparse.ArgumentParser(
        prog=KUBECTL_SWARM, description="Look at and steer SwarmSandboxes (swarms of coding agents)."
    )
    _add_location(parser, None)
    parser.set_defaults(program=KUBECTL_SWARM)
    add_commands(parser.add_subparsers(metavar="COMMAND", dest="command"))
    return dispatch(parser, argv)


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand's handler (both command lines): help and 2 when
    none was chosen, 130 on Ctrl-C."""
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _console(args: argparse.Namespace, action: Callable[[Any], int], *, uses_e2b: bool) -> int:
    """Load the swarm and run ``action`` on it; a :class:`ConsoleError` is one line and exit 1.

    Commands that used the E2B SDK leave through ``os._exit`` (see :func:`run_async`).
    """
    from swarm_operator import console
    from swarm_operator.cluster.user import context_namespace

    kubeconfig = getattr(args, "kubeconfig", None)
    status = 1
    try:
        namespace = getattr(args, "namespace", None) or context_namespace(kubeconfig)
        status = action(console.load_swarm(args.name, namespace, kubeconfig=kubeconfig))
    except console.ConsoleError as exc:
        print(f"{getattr(args, 'program', SWARM_OPERATOR)} {args.command}: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    if not uses_e2b:
        return status
    exit_now(status)


def _cmd_status(args: argparse.Namespace) -> int:
    from swarm_operator import console

    def show(swarm: Any) -> int:
        if args.output == "json":
            print(console.status_json(swarm))
        else:
            print(console.format_status(swarm, console.events(swarm)))
        return 0

    return _console(args, show, uses_e2b=False)


def _cmd_suspend(args: argparse.Namespace) -> int:
    from swarm_operator import swarmctl

    return _console(args, lambda swarm: _say(swarmctl.suspend(swarm)), uses_e2b=False)


def _cmd_resume(args: argparse.Namespace) -> int:
    from swarm_operator import swarmctl

    return _console(args, lambda swarm: _say(swarmctl.resume(swarm)), uses_e2b=False)


def _say(line: str) -> int:
    print(line)
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from swarm_operator import console

    return _console(
        args, lambda swarm: console.logs(swarm, follow=args.follow, lines=args.tail), uses_e2b=True
    )


def _cmd_pull(args: argparse.Namespace) -> int:
    from swarm_operator import swarmctl

    def fetch(swarm: Any) -> int:
        pulled = swarmctl.pull(swarm, args.output_dir)
        print(
            f"wrote {pulled.path} ({pulled.size} bytes), the workspace of {swarm.namespace}/{swarm.name} "
            f"at HEAD {pulled.head}; clone it: git clone {pulled.path}"
        )
        return 0

    return _console(args, fetch, uses_e2b=True)


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
