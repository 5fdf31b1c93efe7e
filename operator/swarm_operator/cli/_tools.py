"""``swarm-operator template`` and ``doctor``: the E2B-side tools (build a template, check the contracts)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._async import run_async


def add_template(sub: Any) -> None:
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
    template.add_argument(
        "--base",
        default=None,
        help="base image, pinned by digest (default: Debian trixie-20260918 at its recorded digest)",
    )
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


def add_doctor(sub: Any) -> None:
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
