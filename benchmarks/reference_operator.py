"""A deliberately plain kopf operator for SwarmSandbox: the yardstick ``bench_reference.py`` measures
ours against (issue 19, item 4).

It does what the textbook kopf operator would and nothing else: on create, one sandbox through the
official ``e2b`` SDK (async), one setup run (start ``spec.agents`` copies of the agent in one tmux
session), then ``status.sandbox.id`` and a ``Ready`` condition in one status patch; on delete, kill the
sandbox (kopf's finalizer holds the object until then). No identity check, no secrets from
Kubernetes (the key comes from ``E2B_API_KEY``), no health probes, no leases, no rate limits, no
Events of its own, no idempotence across crashes — so it is a lower bound on the work, not an
operator anyone should run.

    E2B_API_KEY=... E2B_API_URL=... E2B_SANDBOX_URL=... kopf run --standalone --all-namespaces \
        benchmarks/reference_operator.py
"""

from __future__ import annotations

import datetime
import shlex
from typing import Any

import kopf
from e2b import AsyncSandbox

GROUP, VERSION, PLURAL = "claudeswarm.io", "v1alpha1", "swarmsandboxes"
TEMPLATE = "anthropic-claude-code"
SANDBOX_TIMEOUT_S = 3600


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler progress in annotations (the CRD's status schema would prune status.kopf), and no
    # kopf Events for every handler success: the plain operator writes only what it must.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="reference.kopf.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="reference.kopf.dev")
    settings.posting.level = 100  # no Events
    settings.execution.max_workers = 32


def _setup_script(spec: dict[str, Any]) -> str:
    agent = spec.get("agent") or {}
    command = " ".join(shlex.quote(str(a)) for a in [agent.get("command", "sleep"), *agent.get("args", [])])
    agents = int(spec.get("agents", 1))
    lines = ["set -e", f"tmux new-session -d -s swarm -n agent-0 {shlex.quote(command)}"]
    lines += [f"tmux new-window -t swarm -n agent-{i} {shlex.quote(command)}" for i in range(1, agents)]
    lines.append("tmux list-windows -t swarm | wc -l")
    return "\n".join(lines)


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create(spec: dict[str, Any], meta: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    sandbox = await AsyncSandbox.create(
        template=spec.get("template") or TEMPLATE,
        timeout=SANDBOX_TIMEOUT_S,
        metadata={"uid": meta["uid"]},
    )
    result = await sandbox.commands.run(_setup_script(spec), timeout=60)
    windows = int(result.stdout.strip() or 0)
    if windows != int(spec.get("agents", 1)):
        await sandbox.kill()
        raise kopf.TemporaryError(f"{windows} agents started", delay=5)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["sandbox"] = {"id": sandbox.sandbox_id}
    patch.status["phase"] = "Ready"
    patch.status["conditions"] = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "AgentsRunning",
            "message": "",
            "lastTransitionTime": now,
        }
    ]


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete(status: dict[str, Any], **_: Any) -> None:
    sandbox_id = (status.get("sandbox") or {}).get("id")
    if sandbox_id:
        await AsyncSandbox.kill(sandbox_id)
