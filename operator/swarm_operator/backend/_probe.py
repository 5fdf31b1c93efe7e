"""The state of one ``swarm-operator doctor`` run, and the vocabulary its checks share.

A :class:`Probe` holds the rows so far and every sandbox the run created, so that the clean-up
(``doctor.py``) can kill them whatever happened; every SDK call a check makes is bounded through it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "ALL_TRAFFIC",
    "EGRESS_HOST",
    "MCP_PORT",
    "PLAN_CAPS",
    "TAG",
    "Check",
    "Options",
    "Probe",
    "one_line",
    "refusal",
]

#: Metadata key on every sandbox the doctor creates; its value is the run's id.
TAG = "swarm-operator-doctor"
#: The host name used in the egress rule set (a host every swarm needs).
EGRESS_HOST = "github.com"
ALL_TRAFFIC = "0.0.0.0/0"
MCP_PORT = 50005
#: E2B's plan caps on a sandbox's life, counted from its start (e2b-dev/infra
#: packages/api/internal/handlers/keep_alive.go; the SDK's create docstring: Hobby 1 h, Pro 24 h).
PLAN_CAPS = {"hobby": 3_600, "pro": 86_400}

T = TypeVar("T")


@dataclass
class Check:
    """One row: what the operator relies on, what it expects, what the endpoint did."""

    contract: str
    expected: str
    seen: str
    ok: bool


@dataclass
class Options:
    template: str
    mcp_template: str = "mcp-gateway"
    lifetime_cap_s: int = PLAN_CAPS["hobby"]
    lease_s: int = 600
    user: str = "user"
    call_timeout_s: float = 30.0
    create_timeout_s: float = 60.0
    identity_wait_s: float = 10.0
    gateway_wait_s: float = 20.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


class Probe:
    """The state of one doctor run: rows so far and every sandbox id it has seen created."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.checks: list[Check] = []
        self.created: list[str] = []
        #: Creates sent and not yet answered: an interrupted one may still start a sandbox.
        self.in_flight = 0

    @property
    def tag(self) -> dict[str, str]:
        return {TAG: self.options.run_id}

    def add(self, contract: str, expected: str, seen: str, ok: bool) -> None:
        check = Check(contract, expected, one_line(seen), ok)
        self.checks.append(check)
        print(f"  {'ok ' if ok else 'FAIL'} {contract}: {check.seen}", file=sys.stderr, flush=True)

    async def bounded(self, awaitable: Awaitable[T], seconds: float | None = None) -> T:
        """Every SDK call: also bounded here, past the SDK's own request timeout."""
        return await asyncio.wait_for(awaitable, (seconds or self.options.call_timeout_s) + 5)

    def opts(self, seconds: float | None = None) -> dict[str, Any]:
        return {"request_timeout": seconds or self.options.call_timeout_s}

    async def create(self, template: str, timeout_s: int, **kwargs: Any) -> Any:
        from e2b import AsyncSandbox

        self.in_flight += 1
        try:
            sandbox = await self.bounded(
                AsyncSandbox.create(
                    template=template,
                    timeout=timeout_s,
                    metadata=dict(self.tag),
                    **kwargs,
                    **self.opts(self.options.create_timeout_s),
                ),
                self.options.create_timeout_s,
            )
        finally:
            self.in_flight -= 1
        self.created.append(sandbox.sandbox_id)
        return sandbox


def one_line(text: str, limit: int = 120) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def refusal(exc: BaseException) -> tuple[int | None, str]:
    """(HTTP status, first line) of an SDK error."""
    status = getattr(exc, "status_code", None)
    message = one_line(str(exc) or type(exc).__name__, 100)
    if status is None and message[:3].isdigit():
        status = int(message[:3])
    return status, message
