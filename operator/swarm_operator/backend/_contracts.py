"""The contracts ``swarm-operator doctor`` checks, one coroutine each: what the operator relies on
from E2B, each with the upstream source of the rule in its docstring.

Each adds its rows to the :class:`Probe`; ``doctor.py`` runs them in order and guards each, so an
unexpected answer is a failed row and the next check still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
import uuid
from typing import Any

from ._probe import ALL_TRAFFIC, EGRESS_HOST, MCP_PORT, TAG, Probe, refusal

__all__ = [
    "check_create",
    "check_egress_refusal",
    "check_identity",
    "check_kill",
    "check_lease",
    "check_mcp",
    "check_plan_cap",
    "check_tools",
]


async def check_create(run: Probe) -> Any:
    """Create with metadata and a host rule set the API accepts (create_instance.go, sandbox_create.go)."""
    contract = f"create: metadata + allowOut [{EGRESS_HOST}] + denyOut [{ALL_TRAFFIC}]"
    try:
        sandbox = await run.create(
            run.options.template,
            min(300, run.options.lifetime_cap_s),
            network={"allow_out": [EGRESS_HOST], "deny_out": [ALL_TRAFFIC]},
        )
    except Exception as exc:
        run.add(contract, "accepted", f"refused: {refusal(exc)[1]}", False)
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


async def check_egress_refusal(run: Probe) -> None:
    """e2b-dev/infra packages/api/internal/handlers/sandbox_create.go: a domain in allowOut without
    0.0.0.0/0 in denyOut is a 400 (ErrMsgDomainsRequireBlockAll); the operator's egress mapping
    adds 0.0.0.0/0 because of it."""
    contract = f"egress: allowOut [{EGRESS_HOST}] without denyOut {ALL_TRAFFIC}"
    try:
        sandbox = await run.create(
            run.options.template, min(60, run.options.lifetime_cap_s), network={"allow_out": [EGRESS_HOST]}
        )
    except Exception as exc:
        status, message = refusal(exc)
        run.add(contract, "refused (400)", f"refused: {message}", status == 400)
        return
    run.add(
        contract, "refused (400)", f"accepted (sandbox {sandbox.sandbox_id}): the egress rule differs", False
    )


async def check_identity(run: Probe, sandbox: Any) -> None:
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


async def check_lease(run: Probe, sandbox: Any) -> None:
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
        run.add(contract, f"accepted, ends in ~{renew}s", f"refused: {refusal(exc)[1]}", False)

    contract = f"lease: set_timeout past the {cap}s cap"
    expected = f"clamped: ends by start + {cap}s"
    try:
        await run.bounded(AsyncSandbox.set_timeout(sandbox.sandbox_id, cap + 600, **run.opts()))
        after = await run.bounded(AsyncSandbox.get_info(sandbox.sandbox_id, **run.opts()))
        life = (after.end_at - after.started_at).total_seconds()
        run.add(contract, expected, f"ends at start + {life:.0f}s", life <= cap + 5)
    except Exception as exc:
        run.add(contract, expected, f"refused: {refusal(exc)[1]}", False)
    # Leave it a short life again: the rest of the run needs minutes, not the cap.
    with contextlib.suppress(Exception):
        await run.bounded(AsyncSandbox.set_timeout(sandbox.sandbox_id, min(300, cap), **run.opts()))


async def check_plan_cap(run: Probe) -> None:
    """keep_alive.go / sandbox_create.go: a create whose timeout exceeds the plan's cap is a 400."""
    cap = run.options.lifetime_cap_s
    contract = f"plan cap: create with timeout {cap + 60}s"
    try:
        sandbox = await run.create(run.options.template, cap + 60)
    except Exception as exc:
        status, message = refusal(exc)
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


async def check_tools(run: Probe, sandbox: Any) -> None:
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


async def check_mcp(run: Probe) -> None:
    """SDK sandbox_async/main.py create(mcp=...): template ``mcp-gateway``, then
    ``mcp-gateway --config '<json>'`` as root with GATEWAY_ACCESS_TOKEN; port 50005, path /mcp."""
    template = run.options.mcp_template
    try:
        sandbox = await run.create(template, min(300, run.options.lifetime_cap_s))
    except Exception as exc:
        run.add(f"mcp: create from template {template}", "accepted", f"refused: {refusal(exc)[1]}", False)
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


async def check_kill(run: Probe, sandbox: Any) -> None:
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
