"""Secret rotation: notice that a Secret the resource uses changed, and restart the agents with the
new values (or report the restart pending), per ``agent.restartOnSecretChange``.

Only digests are kept, never values: in memory (:class:`runtime.Memory`) and, for the ones the agents
run with, in ``status.secrets.applied`` (HMAC under the resource's E2B API key), so a restarted
operator notices a rotation that happened while it was down. Without them (first sight, or the key
itself rotated) nothing is known, which is not a rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from swarm_operator import agentconfig, bootstrap
from swarm_operator.backend import SandboxBackend
from swarm_operator.conditions import Reason
from swarm_operator.lifecycle.agents import read_secrets
from swarm_operator.lifecycle.plan import teardown_plan
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import SecretsStatus, SwarmSandboxSpec, SwarmSandboxStatus
from swarm_operator.secrets import SecretNotFound


def _digest(api_key: str, name: str, value: str) -> str:
    """Keyed, so the digest kept in status cannot be checked against guesses without the API key."""
    return hmac.new(api_key.encode(), f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]


def _key_check(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"swarm-operator applied-digests key", hashlib.sha256).hexdigest()[:16]


def restore(runtime: Runtime, ref: ResourceRef, status: SwarmSandboxStatus) -> None:
    """A process that knows nothing yet takes the applied digests from status, when they were
    keyed with the API key in use: a rotation while the operator was down is then noticed."""
    memory = runtime.remember(ref.uid)
    secrets = status.secrets
    if (
        memory.secret_digests is not None
        or memory.api_key is None
        or secrets is None
        or secrets.applied is None
        or secrets.applied_key != _key_check(memory.api_key)
    ):
        return
    memory.secret_digests = dict(secrets.applied)


def _secret_env_names(ref: ResourceRef, spec: SwarmSandboxSpec) -> set[str]:
    names = {v.name for v in spec.agent.env if v.value_from is not None}
    return names | set(agentconfig.tool_secret_refs(ref.namespace, spec))


def rotated(
    runtime: Runtime,
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    envs: Mapping[str, str],
    *,
    since_seen: bool = False,
) -> list[str]:
    """Env names whose Secret-sourced value differs from what the agents were last started with
    (``since_seen``: from what was last read). Nothing is known on first sight (a fresh operator
    process): that is not a rotation."""
    memory = runtime.remember(ref.uid)
    known = memory.secret_seen if since_seen else memory.secret_digests
    api_key = memory.api_key
    if known is None or api_key is None:
        return []
    return sorted(
        name
        for name in _secret_env_names(ref, spec)
        if name in envs and known.get(name) not in (None, _digest(api_key, name, envs[name]))
    )


def secrets_applied(
    book: StatusBook, spec: SwarmSandboxSpec, envs: Mapping[str, str], changed: list[str], *, restarted: bool
) -> None:
    """Record what the agents now run with, and whether a restart is still pending."""
    ref = book.ref
    memory = book.runtime.remember(ref.uid)
    names = _secret_env_names(ref, spec)
    api_key = memory.api_key or ""
    current = {n: _digest(api_key, n, envs[n]) for n in names if n in envs}
    memory.secret_seen = current
    previous = book.status.secrets
    now = datetime.now(UTC)
    if changed and not restarted:
        if previous and previous.restart_pending and all(n in previous.message for n in changed):
            return  # already reported
        book.status.secrets = SecretsStatus(
            restart_pending=True,
            last_change_time=now,
            message=f"Secret values of {', '.join(changed)} changed; the agents keep the old ones "
            f"until restarted (agent.restartOnSecretChange: Never)"[:1024],
        )
        book.event("Normal", Reason.SECRET_ROTATED, book.status.secrets.message)
        return  # the applied digests stay those of the values the running agents have
    if restarted and (changed or (previous and previous.restart_pending)):
        book.status.secrets = SecretsStatus(
            restart_pending=False,
            last_change_time=now,
            message=f"agents restarted with the new values of {', '.join(changed) or 'their Secrets'}"[:1024],
        )
        book.event("Normal", Reason.AGENTS_RESTARTED, book.status.secrets.message)
    if not (previous and previous.restart_pending) or restarted:
        memory.secret_digests = current
        if current or (book.status.secrets and book.status.secrets.applied):
            # Kept in status too (keyed digests, never values), so a restart forgets nothing.
            secrets = book.status.secrets or SecretsStatus()
            book.status.secrets = secrets.model_copy(
                update={"applied": current, "applied_key": _key_check(api_key)}
            )


async def stop_agents(book: StatusBook, backend: SandboxBackend, sandbox_id: str) -> None:
    """End every agent (Ctrl-C, a bounded grace, the tmux server closed, the env file removed), so
    the setup run that follows starts them with the new values."""
    settings = book.runtime.settings
    started = time.monotonic()
    await backend.run(
        sandbox_id,
        bootstrap.render_teardown(teardown_plan(book.ref), grace_s=settings.delete_grace_seconds),
        timeout_s=settings.delete_grace_seconds + 30,
    )
    book.runtime.metrics.step("restart", time.monotonic() - started)


async def watch_secrets(
    ref: ResourceRef,
    spec: SwarmSandboxSpec,
    status: SwarmSandboxStatus,
    runtime: Runtime,
) -> bool:
    """Read the resource's Secrets again (one GET per Secret it names, nothing cluster-wide) and,
    when the E2B key or an agent value changed, reconcile: later E2B calls use the new key, and the
    agents are restarted or a pending restart is reported, per agent.restartOnSecretChange.
    Returns whether anything changed."""
    known_key = runtime.api_key(ref.uid)
    if known_key is None:
        return False  # not reconciled by this process yet: the reconcile reads them anyway
    try:
        api_key, envs = await read_secrets(ref, spec, runtime)
    except SecretNotFound:
        return False  # the reconcile reports those
    if spec.suspend:
        return False
    if api_key == runtime.api_key(ref.uid) and not rotated(runtime, ref, spec, envs, since_seen=True):
        return False
    # Imported here, not above: the reconcile uses this module's helpers, and a change found here
    # is handled by exactly the reconcile a spec change gets.
    from swarm_operator.lifecycle.reconcile import reconcile

    await reconcile(ref, spec, status, runtime)
    return True
