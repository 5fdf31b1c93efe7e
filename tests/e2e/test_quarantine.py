"""One tenant or one rogue agent can never hurt the operator or the other tenants, end to end: the real
operator process against the emulators, whose sandboxes run real bash and tmux.

* A rogue sandbox: an agent's ``~/.bash_profile`` printing 2 GB, an agent's ``tmux`` on PATH printing
  2 GB (what an agent with E2B's passwordless sudo does to /usr/bin/tmux), and an agent that stops
  the tmux server so every probe hangs. The operator's memory stays bounded, the other resources stay
  Ready, and the misbehaving ones end Failed with reason SandboxQuarantined, their sandboxes killed.
* Log redaction is per resource: a short Secret value (``Ready``) blanks nobody's lines, a long one
  is hidden in its own resource's lines only, and the redactor shrinks back once resources go.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2b import Sandbox
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.test_operations import _free_port

from swarm_operator import bootstrap

pytestmark = pytest.mark.e2e

TWO_GB = 2 * 1024**3
#: The operator's peak resident memory must stay under this whatever the sandboxes print (it idles
#: well under half of it; one 2 GB output held in memory would be ten times over).
RSS_LIMIT_BYTES = 400 * 1024**2


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) * 1024


def _as_agent(e2b: Any, key: str, sandbox_id: str, script: str) -> None:
    """Run ``script`` in the sandbox as its user, through the official SDK: what an agent can do."""
    sandbox = Sandbox.connect(sandbox_id, api_key=key, api_url=e2b.url, sandbox_url=e2b.url)
    sandbox.commands.run(script, timeout=30)


def _sandbox(e2b: Any, sandbox_id: str) -> dict[str, Any]:
    return next(s for s in e2b.inspect(include_dead=True) if s["sandboxID"] == sandbox_id)


def _ready(cluster: Cluster, name: str) -> tuple[str, str]:
    """(sandbox id, uid) of a Ready resource."""
    cluster.wait_condition("default", name, "Ready", timeout=90)
    body = cluster.get("default", name) or {}
    return body["status"]["sandbox"]["id"], body["metadata"]["uid"]


def test_a_rogue_sandbox_cannot_take_the_operator_down(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    operator = start_operator(
        SWARM_QUARANTINE_AFTER="2", SWARM_PROBE_TIMEOUT_SECONDS="3", SWARM_LOG_LEVEL="INFO"
    )
    probe_every = {"intervalSeconds": 5}
    names = ("bystander", "profile", "flood", "hang")
    cluster.apply(*(swarm(n, agents=1, healthCheck=probe_every) for n in names))
    ids = {name: _ready(cluster, name) for name in names}

    # 1. ~/.bash_profile printing 2 GB: the operator's commands never read it.
    _as_agent(
        e2b,
        e2b_api_key,
        ids["profile"][0],
        f"printf 'head -c {TWO_GB} /dev/zero | tr \"\\\\0\" x\\n' > ~/.bash_profile",
    )
    # 2. A tmux on the agents' PATH printing 2 GB: every probe floods past the output cap.
    _as_agent(
        e2b,
        e2b_api_key,
        ids["flood"][0],
        "mkdir -p ~/.local/bin && "
        f"printf '#!/bin/sh\\nhead -c {TWO_GB} /dev/zero | tr \"\\\\0\" x\\n' > ~/.local/bin/tmux && "
        "chmod +x ~/.local/bin/tmux",
    )
    # 3. The agents' tmux server stopped (SIGSTOP): every probe hangs to its timeout.
    socket = bootstrap.socket_name("default", "hang", ids["hang"][1])
    _as_agent(
        e2b, e2b_api_key, ids["hang"][0], f"kill -STOP \"$(tmux -L {socket} display-message -p '#{{pid}}')\""
    )
    probes_before = {name: _probes(e2b, ids[name][0]) for name in ("profile", "bystander")}
    homes = {name: Path(_sandbox(e2b, ids[name][0])["home"]) for name in names}
    assert (homes["profile"] / ".bash_profile").read_text().startswith(f"head -c {TWO_GB} /dev/zero")
    assert (homes["flood"] / ".local" / "bin" / "tmux").read_text().startswith("#!/bin/sh\nhead -c")

    for name, fault in (("flood", "OutputLimitExceeded"), ("hang", "CommandTimeout")):
        ready = cluster.wait_condition(
            "default", name, "Ready", "False", reason="SandboxQuarantined", timeout=90
        )
        assert fault in ready["message"] and "2 health probes in a row" in ready["message"], ready
        status = cluster.status("default", name)
        assert status["phase"] == "Failed" and "sandbox" not in status
        assert not _sandbox(e2b, ids[name][0])["alive"], f"{name}'s sandbox was killed"
        reasons = {e.reason for e in cluster.events("default", name)}
        assert "SandboxQuarantined" in reasons and fault in reasons, reasons  # Degraded, then Failed

    # The profile's sandbox was probed (twice, so one answer was surely recorded) after the plant and
    # is still healthy; so is the bystander. A failed probe would have written an Unhealthy verdict.
    for name in ("profile", "bystander"):
        wait_for(
            lambda name=name: _probes(e2b, ids[name][0]) >= probes_before[name] + 2,
            30,
            message=f"{name} probed after the plant",
        )
        status = cluster.status("default", name)
        assert status["phase"] == "Ready", status
        assert status["health"]["status"] == "Healthy" and status["health"]["sandboxFaults"] == 0, status
        assert _sandbox(e2b, ids[name][0])["alive"]

    assert operator.proc.poll() is None, "the operator is still running"
    peak = _peak_rss(operator.proc.pid)
    assert peak < RSS_LIMIT_BYTES, f"operator peak RSS {peak / 1024**2:.0f} MiB"
    print(f"operator peak RSS {peak / 1024**2:.0f} MiB")
    log = operator.log()
    assert "Traceback" not in log
    # No command of the operator ever carried the E2B key into a sandbox.
    for name in names:
        assert all(e2b_api_key not in json.dumps(c["envs"]) for c in _sandbox(e2b, ids[name][0])["commands"])


def _probes(e2b: Any, sandbox_id: str) -> int:
    """How many health probes the operator has started in the sandbox."""
    return sum(1 for c in _sandbox(e2b, sandbox_id)["commands"] if "---- probe:" in c["argv"][-1])


def _redactor_values(port: int) -> tuple[int, int]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = re.search(r"^swarm_redactor_values (\S+)$", text, re.M)
    scopes = re.search(r"^swarm_redactor_scopes (\S+)$", text, re.M)
    assert values and scopes, "the redactor gauges are exported"
    return int(float(values.group(1))), int(float(scopes.group(1)))


def _lines(log: str, name: str) -> list[str]:
    """The messages of the operator's JSON log lines about resource ``name``."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("name") == name:
            found.append(str(record.get("message")))
    return found


def test_redaction_is_per_resource_and_released_on_delete(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    port = _free_port()
    operator = start_operator(SWARM_METRICS_PORT=str(port), SWARM_LOG_LEVEL="INFO")
    # A resource naming no Secret first: the operator's own key is read, and that is the baseline.
    cluster.apply(swarm("plain", agents=1))
    _ready(cluster, "plain")
    baseline = _redactor_values(port)

    # "Ready" is too short to redact anything; "Initializing" (a word of every resource's phase log
    # line) is long enough, and is gamma's to hide.
    cluster.secret("default", "tiny-secret", {"v": "Ready"})
    cluster.secret("default", "gamma-secret", {"v": "Initializing"})

    def using(name: str, secret: str) -> dict[str, Any]:
        return swarm(
            name,
            agents=1,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "v"}}}],
            },
        )

    cluster.apply(using("tiny", "tiny-secret"), using("gamma", "gamma-secret"), swarm("beta", agents=1))
    for name in ("tiny", "gamma", "beta"):
        _ready(cluster, name)
    values, scopes = _redactor_values(port)
    assert (values, scopes) == (baseline[0] + 1, baseline[1] + 1), "only gamma's long value is held"

    log = operator.log()
    beta, tiny, gamma = _lines(log, "beta"), _lines(log, "tiny"), _lines(log, "gamma")
    # Another resource's lines keep both words whole.
    assert any("-> Ready" in m for m in beta) and any("-> Initializing" in m for m in beta), beta
    assert not any("[REDACTED]" in m for m in beta + tiny)
    # tiny's own short value blanks nothing, even in its own lines.
    assert any("-> Ready" in m for m in tiny), tiny
    # gamma's long value is hidden in gamma's lines.
    assert any("-> [REDACTED]" in m for m in gamma), gamma
    assert not any("Initializing" in m for m in gamma), gamma

    for name in ("tiny", "gamma"):
        cluster.kubectl("delete", "swarmsandbox", name, "--wait=false")
    wait_for(
        lambda: cluster.get("default", "tiny") is None and cluster.get("default", "gamma") is None,
        60,
        message="deleted",
    )
    wait_for(lambda: _redactor_values(port) == baseline, 20, message="the redactor back at its baseline")
