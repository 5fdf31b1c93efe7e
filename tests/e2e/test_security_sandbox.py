"""Security inside and around the sandbox, end to end against the real operator and emulators:
egress policy on create, the identity check before any secret, agents as the unprivileged user with
secrets only in their environment or one 0600 file, and Secret rotation (key and agent values)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import OPERATOR_NAMESPACE, Cluster, swarm, wait_for

pytestmark = pytest.mark.e2e

USER_UID = 1000  # the emulated sandbox's ``user``: an unprivileged uid (CI runs as root)


def _processes(sandbox_id: str) -> list[dict[str, Any]]:
    """Every live process of an emulated sandbox: pid, uid, argv, environment."""
    needle = f"E2B_SANDBOX_ID={sandbox_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            if needle not in environ:
                continue
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        env = dict(item.decode(errors="replace").split("=", 1) for item in environ if b"=" in item)
        found.append(
            {
                "pid": int(entry.name),
                "uid": uid,
                "argv": [a.decode(errors="replace") for a in argv],
                "env": env,
            }
        )
    return found


def _agents(sandbox_id: str) -> list[dict[str, Any]]:
    return [p for p in _processes(sandbox_id) if p["argv"][:1] == ["sleep"]]


def _sandbox(e2b: Any, sandbox_id: str) -> dict[str, Any]:
    return next(s for s in e2b.inspect(include_dead=True) if s["sandboxID"] == sandbox_id)


def _invalid(cluster: Cluster, name: str) -> str:
    return cluster.wait_condition("default", name, "Synced", "False", reason="InvalidSpec")["message"]


def test_egress_policy_reaches_e2b_and_bad_policies_are_refused(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    # The emulator validates egress as E2B's API does (e2b-dev/infra sandbox_create.go: a host name in
    # allowOut is a 400 unless denyOut holds 0.0.0.0/0; denyOut takes IPs/CIDRs only): no opt-in.
    assert not e2b.emulator.knobs.permissive_egress
    start_operator(
        SWARM_NETWORK_DENY_OUT="10.0.0.0/8", SWARM_NETWORK_FORBIDDEN_OUT="169.254.0.0/16,*.evil.example"
    )
    cluster.apply(
        swarm(
            "egress",
            agents=1,
            network={"allowInternet": False, "allowOut": ["api.anthropic.com", "1.2.3.0/24"]},
        ),
        swarm("github", agents=1, network={"allowInternet": False, "allowOut": ["github.com"]}),
        swarm("defaults", agents=1),
        swarm("host-bits", agents=1, network={"allowOut": ["10.0.0.1/8"]}),
        swarm("deny-by-name", agents=1, network={"denyOut": ["example.com"]}),
        swarm("forbidden-cidr", agents=1, network={"allowOut": ["169.254.169.254"]}),
        swarm("forbidden-host", agents=1, network={"allowOut": ["*.evil.example"]}),
    )
    cluster.wait_condition("default", "egress", "Ready", timeout=60)
    cluster.wait_condition("default", "github", "Ready", timeout=60)
    cluster.wait_condition("default", "defaults", "Ready", timeout=60)
    github = _sandbox(e2b, cluster.status("default", "github")["sandbox"]["id"])
    assert github["createRequest"]["allow_internet_access"] is False
    assert github["createRequest"]["network"] == {"allowOut": ["github.com"], "denyOut": ["0.0.0.0/0"]}
    sent = _sandbox(e2b, cluster.status("default", "egress")["sandbox"]["id"])["createRequest"]
    assert sent["allow_internet_access"] is False
    assert sent["network"]["allowOut"] == ["api.anthropic.com", "1.2.3.0/24"]
    # e2b-dev/infra sandbox_create.go: a host name in allowOut is a 400 unless denyOut holds
    # 0.0.0.0/0 — which is also all that allowInternetAccess=false enforces (create_instance.go).
    assert sent["network"]["denyOut"] == ["0.0.0.0/0"]
    assert cluster.status("default", "egress")["network"] == {
        "allowInternet": False,
        "allowOut": ["api.anthropic.com", "1.2.3.0/24"],
        "denyOut": ["10.0.0.0/8", "169.254.0.0/16"],
    }
    default_sent = _sandbox(e2b, cluster.status("default", "defaults")["sandbox"]["id"])["createRequest"]
    assert default_sent["allow_internet_access"] is True
    assert default_sent["network"] == {"denyOut": ["10.0.0.0/8", "169.254.0.0/16"]}

    assert "spec.network.allowOut" in _invalid(cluster, "host-bits") and "host bits" in _invalid(
        cluster, "host-bits"
    )
    assert "spec.network.denyOut" in _invalid(cluster, "deny-by-name")
    assert "spec.network.allowOut" in _invalid(cluster, "forbidden-cidr")
    assert "'*.evil.example'" in _invalid(cluster, "forbidden-host")
    refused = cluster.kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        check=False,
        input=json.dumps(swarm("bad-pattern", network={"allowOut": ["a b; touch /tmp/x"]})),
    )
    assert refused.returncode != 0 and "allowOut" in refused.stderr
    # Nothing was created for a refused policy: three sandboxes, the three valid resources'.
    assert len(e2b.inspect(include_dead=True)) == 3

    # A policy change moves the agents to a sandbox created with the new policy.
    old_id = cluster.status("default", "egress")["sandbox"]["id"]
    cluster.custom.patch_namespaced_custom_object(
        "claudeswarm.io",
        "v1alpha1",
        "default",
        "swarmsandboxes",
        "egress",
        {"spec": {"network": {"allowInternet": True}}},
    )
    new_id = wait_for(
        lambda: (sid := cluster.status("default", "egress").get("sandbox", {}).get("id")) != old_id and sid,
        60,
        message="replacement sandbox",
    )
    sent = _sandbox(e2b, new_id)["createRequest"]
    assert sent["allow_internet_access"] is True
    # Internet on with a host name allowed: what E2B accepts is denyOut 0.0.0.0/0 with the policy's
    # entries and every address range it does not deny allowed (backend network_request).
    assert sent["network"]["denyOut"] == ["0.0.0.0/0"]
    assert sent["network"]["allowOut"][:2] == ["api.anthropic.com", "1.2.3.0/24"]
    assert "10.0.0.0/8" not in sent["network"]["allowOut"] and "11.0.0.0/8" in sent["network"]["allowOut"]
    wait_for(lambda: not _sandbox(e2b, old_id)["alive"], 30, message="old sandbox killed")


def test_identity_mismatch_gets_no_secret_and_recovers(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    canary = "canary-identity-7f3a9c01d2"
    e2b.emulator.knobs.identity_mismatch = True
    operator = start_operator()
    cluster.secret("default", "agent-keys", {"token": canary})
    cluster.apply(
        swarm(
            "impostor",
            agents=1,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "env": [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-keys", "key": "token"}}}
                ],
            },
        )
    )
    synced = cluster.wait_condition("default", "impostor", "Synced", "False", reason="IdentityMismatch")
    assert "before any secret was sent" in synced["message"]
    wait_for(lambda: len(e2b.inspect(include_dead=True)) >= 2, 30, message="a second, retried sandbox")
    e2b.emulator.knobs.identity_mismatch = False
    cluster.wait_condition("default", "impostor", "Ready", timeout=60)
    sandboxes = e2b.inspect(include_dead=True)
    impostors = [
        s for s in sandboxes if s["sandboxID"] != cluster.status("default", "impostor")["sandbox"]["id"]
    ]
    assert impostors and all(not s["alive"] for s in impostors), "every mismatched sandbox was killed"
    for sandbox in impostors:
        # Only the identity probe ran there: no setup script, no secret in any call's envs.
        assert [c["argv"][-1] for c in sandbox["commands"]] == [
            c["argv"][-1] for c in sandbox["commands"] if "swarm-identity" in c["argv"][-1]
        ]
        assert all(canary not in str(c["envs"]) for c in sandbox["commands"])
        assert sandbox["envVars"] == {
            "SWARM_RESOURCE_UID": cluster.get("default", "impostor")["metadata"]["uid"]
        }
    reasons = {e.reason for e in cluster.events("default", "impostor")}
    assert "IdentityMismatch" in reasons
    assert canary not in operator.log()


def test_agents_run_unprivileged_with_secrets_only_in_env_or_their_0600_file(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    canary, key_canary = "canary-priv-0b1e44f9aa", "canary-anthropic-91c2d7e0bb"
    e2b.emulator.user_uid = USER_UID
    start_operator()
    cluster.secret("default", "agent-keys", {"token": canary, "anthropic": key_canary})
    cluster.apply(
        swarm(
            "lowpriv",
            agents=2,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "apiKeySecretRef": {"name": "agent-keys", "key": "anthropic"},
                "env": [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-keys", "key": "token"}}}
                ],
            },
        )
    )
    cluster.wait_condition("default", "lowpriv", "Ready", timeout=60)
    sandbox_id = cluster.status("default", "lowpriv")["sandbox"]["id"]
    record = _sandbox(e2b, sandbox_id)
    assert record["commands"] and all(
        c["user"] == "user" and c["uid"] == USER_UID for c in record["commands"]
    )
    # The operator hands the values to the setup script on its stdin: no command it started carries
    # one in its environment (envd's process list, /proc/PID/environ).
    assert all(canary not in str(c["envs"]) and key_canary not in str(c["envs"]) for c in record["commands"])

    processes = _processes(sandbox_id)
    agents = _agents(sandbox_id)
    assert len(agents) == 2
    assert all(p["uid"] == USER_UID for p in processes), [(p["argv"][:2], p["uid"]) for p in processes]
    for agent in agents:  # the secrets reached the agents, through their environment
        assert agent["env"]["TOKEN"] == canary and agent["env"]["ANTHROPIC_API_KEY"] == key_canary
    for process in processes:
        assert not any(canary in a or key_canary in a for a in process["argv"]), process["argv"]
        if process not in agents:  # the tmux server and the rest never inherit an agent secret
            assert canary not in str(process["env"]) and key_canary not in str(process["env"]), process[
                "argv"
            ]

    home, tmp = Path(record["home"]), Path(record["home"]).parent / "tmp"
    holders, references = [], []
    for root in (home, tmp):
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if canary.encode() in data or key_canary.encode() in data:
                holders.append(path)
            if b"agent.env" in data:
                references.append(path)
    assert len(holders) == 1 and holders[0].name == "agent.env", holders
    info = holders[0].stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == USER_UID
    assert references == [], "no file points at the secrets file"
    for rc in (".bashrc", ".profile", ".bash_profile"):
        assert not (home / rc).exists() or canary not in (home / rc).read_text()
    sockets = [p for p in (tmp / f"tmux-{USER_UID}").iterdir() if p.is_socket()]
    for socket in sockets:
        for query in (["show-options", "-g"], ["show-environment", "-g"], ["show-options", "-s"]):
            # Asked from inside the sandbox, as its user: the host path crosses root-only directories.
            script = f"tmux -S /tmp/tmux-{USER_UID}/{socket.name} {' '.join(query)}"
            shown = subprocess.run(_in_sandbox(record, script), capture_output=True, text=True, timeout=10)
            assert shown.returncode == 0, shown.stderr
            assert canary not in shown.stdout and key_canary not in shown.stdout


def _in_sandbox(record: dict[str, Any], script: str) -> list[str]:
    """argv running ``script`` the way the emulator runs a sandbox command for ``user``."""
    home = Path(record["home"])
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        'mount --bind "$1" /home/user && mount --bind "$2" /tmp && shift 2 && exec "$@"',
        "sh",
        str(home),
        str(home.parent / "tmp"),
        "setpriv",
        f"--reuid={USER_UID}",
        f"--regid={USER_UID}",
        "--clear-groups",
        "/bin/sh",
        "-c",
        script,
    ]


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def test_rotation_switches_the_e2b_key_and_restarts_or_flags_agents(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    old_token, new_token = "canary-old-token-5d1c", "canary-new-token-8e2f"
    new_key = "e2b_" + "fedcba9876543210" * 2 + "76543210"
    e2b.emulator.api_key = e2b_api_key
    start_operator(SWARM_SECRET_CHECK_SECONDS="1", SWARM_LEASE_RENEW_SECONDS="1")
    cluster.secret("default", "agent-keys", {"token": old_token})
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-keys", "key": "token"}}}]
    cluster.apply(
        swarm(
            "rotate-restart",
            agents=1,
            agent={"command": "sleep", "args": ["100000"], "env": env, "restartOnSecretChange": "Restart"},
        ),
        swarm("rotate-never", agents=1, agent={"command": "sleep", "args": ["100000"], "env": env}),
    )
    for name in ("rotate-restart", "rotate-never"):
        cluster.wait_condition("default", name, "Ready", timeout=60)
    ids = {
        name: cluster.status("default", name)["sandbox"]["id"] for name in ("rotate-restart", "rotate-never")
    }

    # The old key is revoked at E2B, and the Secret gets the new one.
    e2b.emulator.api_key = new_key
    switched = len(e2b.emulator.auth_log)
    cluster.core.patch_namespaced_secret(
        "e2b-api-key", OPERATOR_NAMESPACE, {"stringData": {"api-key": new_key}}
    )
    cluster.core.patch_namespaced_secret("agent-keys", "default", {"stringData": {"token": new_token}})

    def renewed_with_new_key() -> bool:
        later = list(e2b.emulator.auth_log)[switched:]
        return any(op == "sandbox.timeout" and fp == _fingerprint(new_key) and ok for op, fp, ok in later)

    wait_for(renewed_with_new_key, 30, message="a lease renewal with the new key")

    wait_for(
        lambda: [a["env"].get("TOKEN") for a in _agents(ids["rotate-restart"])] == [new_token],
        30,
        message="the restarted agent sees the new value",
    )
    secrets = wait_for(
        lambda: cluster.status("default", "rotate-never").get("secrets"),
        30,
        message="restart pending reported",
    )
    # Each resource notices the rotation on its own Secret check; once both have reconciled with
    # it, every later call uses the new key.
    tail = len(e2b.emulator.auth_log)
    wait_for(lambda: len(e2b.emulator.auth_log) > tail + 6, 30, message="more E2B calls")
    assert all(fp == _fingerprint(new_key) and ok for _, fp, ok in list(e2b.emulator.auth_log)[tail:]), (
        "every call after the switch uses the new key"
    )
    assert secrets["restartPending"] is True and "TOKEN" in secrets["message"]
    assert new_token not in secrets["message"] and old_token not in secrets["message"]
    assert [a["env"].get("TOKEN") for a in _agents(ids["rotate-never"])] == [old_token]
    restarted = cluster.status("default", "rotate-restart")["secrets"]
    assert restarted["restartPending"] is False
    for name in ids:
        assert cluster.status("default", name)["sandbox"]["id"] == ids[name], "same sandbox, no re-create"
        cluster.wait_condition("default", name, "Ready", timeout=30)
