"""``swarm-operator doctor``: check, live, every E2B contract the operator relies on.

The operator is proved against an emulator; this is how a user with a real key (or CI, against the
emulator) learns whether the endpoint in front of them keeps the same rules, before a swarm finds out
the hard way. Each contract is one row of a table (contract | expected | seen | ok) and any mismatch
makes the exit status non-zero.

It talks to E2B through the official async SDK directly, not through the operator's backend, on
purpose: the backend *maps* specs onto requests, and the point here is to see the raw rules that
mapping must respect (a host in ``allowOut`` needs ``0.0.0.0/0`` in ``denyOut``, for instance).

Nothing is left behind: every sandbox it creates carries the metadata tag
``swarm-operator-doctor=<run id>``; whatever happens (a failed check, Ctrl-C, SIGTERM) the sandboxes
are killed in a ``finally``, then listed by that tag to prove none remain — which also catches a
sandbox whose create answer was lost. Every call is bounded by a timeout; no secret is printed (the
gateway token is random, per run, and only ever travels in a command's environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Check", "Options", "TAG", "format_table", "main", "run"]

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


class _Run:
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
        check = Check(contract, expected, _one_line(seen), ok)
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


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _refusal(exc: BaseException) -> tuple[int | None, str]:
    """(HTTP status, first line) of an SDK error."""
    status = getattr(exc, "status_code", None)
    message = _one_line(str(exc) or type(exc).__name__, 100)
    if status is None and message[:3].isdigit():
        status = int(message[:3])
    return status, message


# ----- the checks ---------------------------------------------------------------------------------
async def _check_create(run: _Run) -> Any:
    """Create with metadata and a host rule set the API accepts (create_instance.go, sandbox_create.go)."""
    contract = f"create: metadata + allowOut [{EGRESS_HOST}] + denyOut [{ALL_TRAFFIC}]"
    try:
        sandbox = await run.create(
            run.options.template,
            min(300, run.options.lifetime_cap_s),
            network={"allow_out": [EGRESS_HOST], "deny_out": [ALL_TRAFFIC]},
        )
    except Exception as exc:
        run.add(contract, "accepted", f"refused: {_refusal(exc)[1]}", False)
        return None
    from e2b import AsyncSandbox

    info = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
    tagged = (info.metadata or {}).get(TAG) == run.options.run_id
    run.add(
        contract,
        "accepted; metadata read back",
        f"sandbox {sandbox.sandbox_id}, metadata {'read back' if tagged else f'missing: {info.metadata}'}",
        tagged,
    )
    return sandbox


async def _check_egress_refusal(run: _Run) -> None:
    """e2b-dev/infra packages/api/internal/handlers/sandbox_create.go: a domain in allowOut without
    0.0.0.0/0 in denyOut is a 400 (ErrMsgDomainsRequireBlockAll); the operator's egress mapping
    adds 0.0.0.0/0 because of it."""
    contract = f"egress: allowOut [{EGRESS_HOST}] without denyOut {ALL_TRAFFIC}"
    try:
        sandbox = await run.create(
            run.options.template, min(60, run.options.lifetime_cap_s), network={"allow_out": [EGRESS_HOST]}
        )
    except Exception as exc:
        status, message = _refusal(exc)
        run.add(contract, "refused (400)", f"refused: {message}", status == 400)
        return
    run.add(
        contract, "refused (400)", f"accepted (sandbox {sandbox.sandbox_id}): the egress rule differs", False
    )


async def _check_identity(run: _Run, sandbox: Any) -> None:
    """envd fills E2B_SANDBOX_ID from MMDS after start (e2b-dev/infra packages/envd init.go, mmds.go):
    the operator retries its identity check briefly; so does this."""
    contract = "identity: E2B_SANDBOX_ID inside"
    expected = f"= sandbox id within {run.options.identity_wait_s:g}s"
    started = time.monotonic()
    seen = ""
    while True:
        result = await run.bounded(
            sandbox.commands.run(
                'printf %s "${E2B_SANDBOX_ID:-}"',
                user=run.options.user,
                timeout=run.options.call_timeout_s,
                **run.opts(),
            )
        )
        seen = result.stdout.strip()
        waited = time.monotonic() - started
        if seen == sandbox.sandbox_id:
            run.add(contract, expected, f"matched after {waited:.1f}s", True)
            return
        if waited >= run.options.identity_wait_s:
            run.add(contract, expected, f"{seen or '(empty)'} after {waited:.1f}s", False)
            return
        await asyncio.sleep(0.5)


async def _check_lease(run: _Run, sandbox: Any) -> None:
    """keep_alive.go: set_timeout sets the end to now + T, silently clamped to the plan's cap counted
    from the sandbox's start."""
    from e2b import AsyncSandbox

    cap = run.options.lifetime_cap_s
    info = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
    elapsed = (datetime.datetime.now(datetime.UTC) - info.started_at).total_seconds()
    renew = max(10, min(run.options.lease_s, int(cap - elapsed) - 30))
    contract = f"lease: set_timeout({renew}s) within the {cap}s cap"
    try:
        await run.bounded(AsyncSandbox.set_timeout(sandbox.sandbox_id, renew, **run.opts()))
        after = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
        left = (after.end_at - datetime.datetime.now(datetime.UTC)).total_seconds()
        run.add(contract, f"accepted, ends in ~{renew}s", f"ends in {left:.0f}s", abs(left - renew) <= 15)
    except Exception as exc:
        run.add(contract, f"accepted, ends in ~{renew}s", f"refused: {_refusal(exc)[1]}", False)

    contract = f"lease: set_timeout past the {cap}s cap"
    expected = f"clamped: ends by start + {cap}s"
    try:
        await run.bounded(AsyncSandbox.set_timeout(sandbox.sandbox_id, cap + 600, **run.opts()))
        after = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
        life = (after.end_at - after.started_at).total_seconds()
        run.add(contract, expected, f"ends at start + {life:.0f}s", life <= cap + 5)
    except Exception as exc:
        run.add(contract, expected, f"refused: {_refusal(exc)[1]}", False)
    # Leave it a short life again: the rest of the run needs minutes, not the cap.
    with contextlib.suppress(Exception):
        await run.bounded(AsyncSandbox.set_timeout(sandbox.sandbox_id, min(300, cap), **run.opts()))


async def _check_plan_cap(run: _Run) -> None:
    """keep_alive.go / sandbox_create.go: a create whose timeout exceeds the plan's cap is a 400."""
    cap = run.options.lifetime_cap_s
    contract = f"plan cap: create with timeout {cap + 60}s"
    try:
        sandbox = await run.create(run.options.template, cap + 60)
    except Exception as exc:
        status, message = _refusal(exc)
        run.add(contract, "refused (400)", f"refused: {message}", status == 400)
        return
    run.add(
        contract,
        "refused (400)",
        f"accepted (sandbox {sandbox.sandbox_id}): cap over {cap}s? see --plan",
        False,
    )


_TOOLS_SCRIPT = """
for t in tmux git node apt-get; do
    if command -v "$t" >/dev/null 2>&1; then echo "$t present"; else echo "$t absent"; fi
done
if sudo -n true >/dev/null 2>&1; then echo "sudo ok"; else echo "sudo refused"; fi
"""


async def _check_tools(run: _Run, sandbox: Any) -> None:
    """What the setup script needs in the template, or can install with apt-get through sudo
    (templates/base/e2b.Dockerfile has no tmux; finalize/configure.sh gives ``user`` NOPASSWD sudo)."""
    result = await run.bounded(
        sandbox.commands.run(
            _TOOLS_SCRIPT, user=run.options.user, timeout=run.options.call_timeout_s, **run.opts()
        )
    )
    found = dict(line.split(" ", 1) for line in result.stdout.split("\n") if " " in line)
    sudo = found.get("sudo") == "ok"
    installable = sudo and found.get("apt-get") == "present"
    template = run.options.template
    run.add(
        f"tools ({template}): sudo -n true as {run.options.user}",
        "passwordless sudo",
        "ok" if sudo else "refused",
        sudo,
    )
    for tool in ("tmux", "git", "node"):
        present = found.get(tool) == "present"
        seen = (
            "present"
            if present
            else (
                "absent; installable (apt-get + sudo)"
                if installable
                else "absent, and no apt-get with sudo to install it"
            )
        )
        run.add(f"tools ({template}): {tool}", "present or installable", seen, present or installable)


def _initialize_script() -> str:
    """An MCP initialize on the gateway, the token read from the environment (never in argv)."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "swarm-operator-doctor", "version": "1"},
            },
        }
    )
    return (
        'printf \'header = "Authorization: Bearer %s"\\n\' "$GATEWAY_ACCESS_TOKEN" | '
        f"curl -sS -m 5 -K - -X POST -H 'Content-Type: application/json' "
        f"-H 'Accept: application/json, text/event-stream' --data '{body}' "
        f"-w '\\nHTTP %{{http_code}}\\n' http://127.0.0.1:{MCP_PORT}/mcp 2>&1; exit 0"
    )


async def _check_mcp(run: _Run) -> None:
    """SDK sandbox_async/main.py create(mcp=...): template ``mcp-gateway``, then
    ``mcp-gateway --config '<json>'`` as root with GATEWAY_ACCESS_TOKEN; port 50005, path /mcp."""
    template = run.options.mcp_template
    try:
        sandbox = await run.create(template, min(300, run.options.lifetime_cap_s))
    except Exception as exc:
        run.add(f"mcp: create from template {template}", "accepted", f"refused: {_refusal(exc)[1]}", False)
        return
    where = await run.bounded(
        sandbox.commands.run(
            "command -v mcp-gateway; exit 0", user="root", timeout=run.options.call_timeout_s, **run.opts()
        )
    )
    path = where.stdout.strip()
    run.add(f"mcp ({template}): mcp-gateway on PATH", "present", path or "absent", bool(path))
    if not path:
        return
    token = uuid.uuid4().hex
    contract = f"mcp ({template}): mcp-gateway --config as root, MCP initialize on :{MCP_PORT}/mcp"
    envs = {"GATEWAY_ACCESS_TOKEN": token}
    # Started in the background: E2B's binary daemonises, a foreground stand-in would not return.
    handle = await run.bounded(
        sandbox.commands.run(
            "mcp-gateway --config '{}'", user="root", envs=envs, background=True, timeout=0, **run.opts()
        )
    )
    started = time.monotonic()
    seen = ""
    while time.monotonic() - started < run.options.gateway_wait_s:
        result = await run.bounded(
            sandbox.commands.run(
                _initialize_script(), user="root", envs=envs, timeout=run.options.call_timeout_s, **run.opts()
            )
        )
        seen = result.stdout.replace(token, "***")
        if "HTTP 200" in seen and '"protocolVersion"' in seen:
            run.add(
                contract,
                "initialize answered (200, protocolVersion)",
                f"answered after {time.monotonic() - started:.1f}s",
                True,
            )
            return
        await asyncio.sleep(1)
    # No answer: if the gateway itself ended, its own words say more than curl's.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(handle.wait(), 2)
    with contextlib.suppress(Exception):
        if handle.exit_code not in (None, 0):
            seen = f"mcp-gateway exited {handle.exit_code}: {handle.stderr.replace(token, '***')}"
    run.add(contract, "initialize answered (200, protocolVersion)", seen or "no answer", False)


async def _check_kill(run: _Run, sandbox: Any) -> None:
    """A kill ends it for good: get_info answers 404, a second kill answers False."""
    from e2b import AsyncSandbox
    from e2b.exceptions import NotFoundException

    killed = await run.bounded(AsyncSandbox.kill(sandbox.sandbox_id, **run.opts()))
    try:
        info = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
        gone = f"still listed ({info.state})"
    except NotFoundException:
        gone = "gone (404)"
    again = await run.bounded(AsyncSandbox.kill(sandbox.sandbox_id, **run.opts()))
    run.add(
        "kill",
        "True; then 404; a second kill False",
        f"{killed}; then {gone}; again {again}",
        killed is True and gone == "gone (404)" and again is False,
    )


async def _guarded(run: _Run, name: str, check: Awaitable[T]) -> T | None:
    """One check; an answer it did not expect (a timeout, a broken sandbox) is its failed row, and
    the next check still runs."""
    try:
        return await check
    except TimeoutError:
        run.add(name, "an answer in time", f"no answer within {run.options.call_timeout_s:g}s", False)
    except Exception as exc:
        run.add(name, "an answer", f"{type(exc).__name__}: {_refusal(exc)[1]}", False)
    return None


async def _checks(run: _Run) -> None:
    sandbox = await _guarded(run, "create", _check_create(run))
    await _guarded(run, "egress", _check_egress_refusal(run))
    await _guarded(run, "plan cap", _check_plan_cap(run))
    if sandbox is not None:
        await _guarded(run, "identity", _check_identity(run, sandbox))
        await _guarded(run, "lease", _check_lease(run, sandbox))
        await _guarded(run, "tools", _check_tools(run, sandbox))
    await _guarded(run, "mcp", _check_mcp(run))
    if sandbox is not None:
        await _guarded(run, "kill", _check_kill(run, sandbox))


async def _tagged(run: _Run) -> list[str]:
    from e2b import AsyncSandbox, SandboxQuery, SandboxState

    paginator = AsyncSandbox.list(
        query=SandboxQuery(metadata=run.tag, state=[SandboxState.RUNNING, SandboxState.PAUSED]),
        limit=100,
        **run.opts(),
    )
    found: list[str] = []
    while paginator.has_next:
        found += [s.sandbox_id for s in await run.bounded(paginator.next_items())]
    return found


async def _clean_up(run: _Run) -> None:
    """Kill every sandbox this run made or that carries its tag, then prove none remain."""
    from e2b import AsyncSandbox

    # A create cut short may still be starting its sandbox on the service: look a few times.
    for attempt in range(3 if run.in_flight else 1):
        if attempt:
            await asyncio.sleep(2)
        with contextlib.suppress(Exception):
            run.created += [i for i in await _tagged(run) if i not in run.created]
        for sandbox_id in run.created:
            with contextlib.suppress(Exception):
                await run.bounded(AsyncSandbox.kill(sandbox_id, **run.opts()))
    contract = f"nothing left behind ({TAG}={run.options.run_id})"
    try:
        left = await _tagged(run)
    except Exception as exc:
        run.add(contract, "0 sandboxes listed by tag", f"list failed: {_refusal(exc)[1]}", False)
        return
    run.add(
        contract, "0 sandboxes listed by tag", f"{len(left)} ({', '.join(left)})" if left else "0", not left
    )


async def run(options: Options) -> tuple[list[Check], bool]:
    """Run every check, then clean up; returns the rows and whether the run was interrupted.

    SIGINT and SIGTERM cancel the checks, never the clean-up (which is itself bounded in time).
    """
    state = _Run(options)
    checks = asyncio.ensure_future(_checks(state))
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        checks.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
    try:
        await checks
    except asyncio.CancelledError:
        if not interrupted:
            raise
        state.add("interrupted", "a complete run", "stopped by a signal; cleaning up", False)
    except Exception as exc:  # an unexpected answer: a failed row, never a traceback before clean-up
        state.add("unexpected error", "none", f"{type(exc).__name__}: {_refusal(exc)[1]}", False)
    finally:
        await _clean_up(state)  # signals now only set the flag: the clean-up runs to its end
        for sig in installed:
            loop.remove_signal_handler(sig)
    return state.checks, interrupted


def format_table(checks: Sequence[Check]) -> str:
    header = ("CONTRACT", "EXPECTED", "SEEN", "OK")
    rows = [(c.contract, c.expected, c.seen, "ok" if c.ok else "FAIL") for c in checks]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in [header, *rows]
    )


def _endpoint() -> str:
    return os.environ.get("E2B_API_URL") or f"https://api.{os.environ.get('E2B_DOMAIN') or 'e2b.app'}"


async def main(options: Options, *, out: Callable[[str], None] = print) -> int:
    """The command: 0 when every contract holds, 1 on a mismatch, 130 when interrupted,
    2 without a key."""
    if not os.environ.get("E2B_API_KEY"):
        print(
            "swarm-operator doctor: set E2B_API_KEY (and E2B_DOMAIN or E2B_API_URL/E2B_SANDBOX_URL "
            "for an endpoint other than E2B's cloud)",
            file=sys.stderr,
        )
        return 2
    print(
        f"swarm-operator doctor: {_endpoint()}, template {options.template}, tag {TAG}={options.run_id}",
        file=sys.stderr,
        flush=True,
    )
    checks, interrupted = await run(options)
    out(format_table(checks))
    if interrupted:
        return 130
    return 0 if all(c.ok for c in checks) else 1
