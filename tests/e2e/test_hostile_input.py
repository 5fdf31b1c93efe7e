"""Hostile input everywhere it enters: every case is refused by the schema (422), refused by the
operator (InvalidSpec), or passed through quoted and proved harmless — never executed, never a crash.

One canary path: a file that only an injected command could create. After every case has settled,
the canary does not exist, the operator is still running, and its log holds no traceback.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.e2e.conftest import FIXTURE_BIN, Cluster, wait_for

pytestmark = pytest.mark.e2e

CANARY_DIR = Path("/var/tmp")


def _payloads(canary: Path) -> list[tuple[str, str]]:
    c = str(canary)
    return [
        ("command substitution", f"$(touch {c})"),
        ("backticks", f"`touch {c}`"),
        ("semicolon", f"x; touch {c}"),
        ("and", f"x && touch {c}"),
        ("pipe", f"x | touch {c}"),
        ("newline", f"x\ntouch {c}\n"),
        ("single quote", f"x' ; touch {c} ; '"),
        ("double quote", f'x" ; touch {c} ; "'),
        ("ifs", f"$(touch${{IFS}}{c})"),
        ("process substitution", f"<(touch {c})"),
        ("unicode", f"ünï©ødé 🐝 $(touch {c})"),
        ("nul", f"x\u0000$(touch {c})"),
        ("printf escape", f"%q\\n$(touch {c})"),
        ("glob", f"/*/../$(touch {c})"),
    ]


def _swarm(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "agents": 1,
        "agent": {"command": "fake-agent"},
        "coordinator": {"enabled": False},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return {
        "apiVersion": "claudeswarm.io/v1alpha1",
        "kind": "SwarmSandbox",
        "metadata": {"name": name, "namespace": "default"},
        "spec": base,
    }


def _cases(canary: Path) -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for label, payload in _payloads(canary):
        cases += [
            (f"agent.command {label}", {"agent": {"command": payload}}),
            (f"agent.args {label}", {"agent": {"args": ["--flag", payload]}}),
            (f"agent.env value {label}", {"agent": {"env": [{"name": "HOSTILE", "value": payload}]}}),
            (f"template {label}", {"template": payload}),
            (f"coordinator.install {label}", {"coordinator": {"enabled": True, "install": payload}}),
            (f"network.allowOut {label}", {"network": {"allowOut": ["api.anthropic.com", payload]}}),
            (f"network.denyOut {label}", {"network": {"denyOut": [payload]}}),
        ]
    cases += [
        ("env name PATH", {"agent": {"env": [{"name": "PATH", "value": "/tmp"}]}}),
        ("env name LD_PRELOAD", {"agent": {"env": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]}}),
        ("env name HOME", {"agent": {"env": [{"name": "HOME", "value": "/"}]}}),
        ("env name with $()", {"agent": {"env": [{"name": f"X$(touch {canary})", "value": "v"}]}}),
        ("env name with newline", {"agent": {"env": [{"name": "X\nY", "value": "v"}]}}),
        (
            "secret ref name hostile",
            {
                "agent": {
                    "env": [
                        {
                            "name": "K",
                            "valueFrom": {"secretKeyRef": {"name": f"$(touch {canary})", "key": "k"}},
                        }
                    ]
                }
            },
        ),
        (
            "secret ref key hostile",
            {
                "agent": {
                    "env": [
                        {
                            "name": "K",
                            "valueFrom": {"secretKeyRef": {"name": "s", "key": f"k;touch {canary}"}},
                        }
                    ]
                }
            },
        ),
        ("api key secret hostile", {"e2b": {"apiKeySecretRef": {"name": "`reboot`", "key": "k"}}}),
        (
            "huge env list",
            {"agent": {"env": [{"name": f"VAR_{i}", "value": "x" * 1024} for i in range(100)]}},
        ),
        (
            "too many env entries",
            {"agent": {"env": [{"name": f"VAR_{i}", "value": "v"} for i in range(1000)]}},
        ),
        ("huge arg", {"agent": {"args": ["y" * 200_000]}}),
        ("deletionPolicy injection", {"deletionPolicy": f"Delete; touch {canary}"}),
        ("agents as string", {"agents": "4; touch"}),
        ("agents negative", {"agents": -1}),
        ("unknown field", {"evil": f"$(touch {canary})"}),
        ("network.allowOut host bits set", {"network": {"allowOut": ["10.0.0.1/8"]}}),
        ("network.allowOut octet over 255", {"network": {"allowOut": ["256.1.1.1"]}}),
        ("network.allowOut single label", {"network": {"allowOut": ["localhost"]}}),
        ("network.allowOut label too long", {"network": {"allowOut": ["a" * 64 + ".example.com"]}}),
        ("network.denyOut host name", {"network": {"denyOut": ["example.com"]}}),
        ("network.allowInternet as string", {"network": {"allowInternet": "false; touch"}}),
        ("network.allowOut too many", {"network": {"allowOut": [f"10.0.{i}.0/24" for i in range(65)]}}),
        # Names bash, the dynamic linker, glibc, tmux, E2B's envd or the operator act on (reserved by
        # pattern): agent env is also the setup script's environment.
        *(
            (f"env name {name}", {"agent": {"env": [{"name": name, "value": f"$(touch {canary})"}]}})
            for name in (
                "SWARM_SECRET_GIT_PASSWORD",
                "BASH_ENV",
                "BASH_FUNC_x",
                "LD_AUDIT",
                "GLIBC_TUNABLES",
                "E2B_ACCESS_TOKEN",
                "TMUX_TMPDIR",
                "ENV",
                "SHELLOPTS",
                "_sw_x",
            )
        ),
        # Secret fan-out: references bounded by the schema, distinct Secrets by the operator (before
        # any read), the bytes they hold by the operator after reading (HOSTILE_BIG_SECRET).
        (
            "secret references over the schema bound",
            {
                "agent": {
                    "env": [
                        {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"k{i}"}}}
                        for i in range(65)
                    ]
                }
            },
        ),
        (
            "secret references over the bound through mcp fields",
            {
                "agent": {
                    "env": [
                        {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"k{i}"}}}
                        for i in range(40)
                    ]
                },
                "mcp": [
                    {
                        "name": "c",
                        "type": "custom",
                        "server": "notion",
                        "fields": [
                            {"name": f"f{j}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"f{j}"}}}
                            for j in range(25)
                        ],
                    }
                ],
            },
        ),
        (
            "too many distinct secrets",
            {
                "agent": {
                    "env": [
                        {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": f"secret-{i}", "key": "k"}}}
                        for i in range(17)
                    ]
                }
            },
        ),
        (
            "secret values too large",
            {
                "agent": {
                    "env": [
                        {
                            "name": f"BIG_{key}",
                            "valueFrom": {"secretKeyRef": {"name": HOSTILE_BIG_SECRET, "key": key}},
                        }
                        for key in ("a", "b")
                    ]
                }
            },
        ),
    ]
    return cases


#: A Secret whose two keys together exceed the operator's per-resource byte limit (256 KiB).
HOSTILE_BIG_SECRET = "hostile-big"


def test_hostile_input_is_refused_or_harmless(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    canary = CANARY_DIR / f"swarm-canary-{uuid.uuid4().hex}"
    operator = start_operator()
    api = cluster.custom
    cluster.core.create_namespaced_secret(
        "default",
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=HOSTILE_BIG_SECRET),
            string_data={"a": "a" * 150_000, "b": "b" * 150_000},
        ),
    )
    cases = _cases(canary)
    assert len(cases) >= 60
    outcomes: dict[str, str] = {}
    created: list[str] = []
    for index, (label, spec) in enumerate(cases):
        name = f"hostile-{index:03d}"
        try:
            api.create_namespaced_custom_object(
                "claudeswarm.io", "v1alpha1", "default", "swarmsandboxes", _swarm(name, spec)
            )
        except kubernetes.client.ApiException as exc:
            assert exc.status == 422, f"{label}: {exc.status} {exc.body}"
            assert "spec" in json.loads(exc.body)["message"], label
            outcomes[label] = "422"
        else:
            created.append(name)
            outcomes[label] = name

    def settled(name: str) -> str | None:
        ready = cluster.condition("default", name, "Ready")
        if ready is None:
            return None
        if ready["status"] == "True":
            return "Ready"
        if ready["reason"] in ("InvalidSpec", "InitFailed", "TemplateNotFound", "SecretsTooLarge"):
            return ready["reason"]
        return None

    resource_of = dict(outcomes)
    verdicts = {name: wait_for(lambda n=name: settled(n), 120, message=f"{name} settled") for name in created}
    for label, outcome in outcomes.items():
        if outcome != "422":
            outcomes[label] = verdicts[outcome]
            if outcomes[label] == "InvalidSpec":
                message = cluster.condition("default", outcome, "Ready")["message"]
                assert "spec." in message, f"{label}: InvalidSpec must name the field: {message}"
    assert not canary.exists(), f"an injection ran: {canary}"
    assert operator.proc.poll() is None, "the operator survived every case"
    assert "Traceback" not in operator.log()
    # What each kind of field did, so a regression in the verdict shows up as a diff.
    assert outcomes["env name PATH"] == "422" and outcomes["env name LD_PRELOAD"] == "422"
    assert outcomes["huge env list"] == "Ready"
    network = {k: v for k, v in outcomes.items() if k.startswith("network.")}
    assert all(v in ("422", "InvalidSpec") for v in network.values()), network
    assert outcomes["network.allowOut host bits set"] == "InvalidSpec"
    assert outcomes["network.denyOut host name"] == "InvalidSpec"
    env_names = {k: v for k, v in outcomes.items() if k.startswith("env name ")}
    assert all(v == "422" for v in env_names.values()), env_names
    assert outcomes["secret references over the schema bound"] == "422"
    assert outcomes["secret references over the bound through mcp fields"] == "422"
    assert outcomes["too many distinct secrets"] == "InvalidSpec"
    assert outcomes["secret values too large"] == "SecretsTooLarge"
    message = cluster.condition("default", resource_of["secret values too large"], "Ready")["message"]
    # 2 keys (3 while the default E2B key is not declared operator-wide to the reader).
    assert "limit of 262144 bytes per resource (setting SWARM_MAX_SECRET_BYTES)" in message, message
    assert "a" * 64 not in json.dumps(
        cluster.custom.get_namespaced_custom_object(
            "claudeswarm.io", "v1alpha1", "default", "swarmsandboxes", resource_of["secret values too large"]
        )
    )
    assert all(
        v in ("422", "InvalidSpec", "Ready", "InitFailed", "TemplateNotFound", "SecretsTooLarge")
        for v in outcomes.values()
    ), outcomes
    print(json.dumps(outcomes, indent=1, ensure_ascii=False))


def test_hostile_tenancy_input_is_refused(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    """Attempts to spend the operator's default key where the policy says no, to reach its own
    namespace, or to borrow its key Secret by name: each gets its stable reason (or a 422), and the
    E2B emulator sees no create at all."""
    import httpx

    operator = start_operator(SWARM_DEFAULT_KEY_NAMESPACES="default", SWARM_DEFAULT_KEY_TEMPLATES="")
    for namespace in ("team-x", "default-evil", "swarm-system"):
        cluster.namespace(namespace)
    borrow = {"e2b": {"apiKeySecretRef": {"name": "e2b-api-key", "key": "api-key"}}}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("other namespace, default key", "team-x", {}, "DefaultKeyNotAllowed"),
        ("look-alike namespace", "default-evil", {}, "DefaultKeyNotAllowed"),
        ("orphan on the platform's bill", "default", {"deletionPolicy": "Orphan"}, "OrphanNotAllowed"),
        ("template look-alike", "default", {"template": "base.evil"}, "TemplateNotAllowed"),
        ("template path games", "default", {"template": "base/../gpu"}, "TemplateNotAllowed"),
        ("operator namespace, borrowed key", "swarm-system", borrow, "NamespaceNotAllowed"),
        ("operator namespace, default key", "swarm-system", {}, "NamespaceNotAllowed"),
        # A key ref is namespace-local: naming the operator's Secret finds only the team's own.
        ("borrow the default key by name", "team-x", borrow, "SecretNotFound"),
        ("orphan spelled differently", "default", {"deletionPolicy": "orphan"}, "422"),
    ]
    outcomes: dict[str, str] = {}
    for index, (label, namespace, spec, _expected) in enumerate(cases):
        body = _swarm(f"tenancy-{index}", spec)
        body["metadata"]["namespace"] = namespace
        try:
            cluster.custom.create_namespaced_custom_object(
                "claudeswarm.io", "v1alpha1", namespace, "swarmsandboxes", body
            )
        except kubernetes.client.ApiException as exc:
            assert exc.status == 422, f"{label}: {exc.status}"
            outcomes[label] = "422"
            continue

        def settled(n: str = f"tenancy-{index}", ns: str = namespace) -> str | None:
            ready = cluster.condition(ns, n, "Ready")
            return (
                ready["reason"]
                if ready is not None and ready["status"] == "False" and ready["reason"] != "Creating"
                else None
            )

        outcomes[label] = wait_for(settled, 60, message=f"{label} settled")
    assert outcomes == {label: expected for label, _, _, expected in cases}, outcomes
    stats = httpx.get(f"{e2b.url}/_emulator/stats", timeout=10).json()
    assert stats["operations"].get("sandbox.create", 0) == 0 and not e2b.inspect()
    assert operator.proc.poll() is None and "Traceback" not in operator.log()


def test_a_homoglyph_command_runs_as_given_is_reported_and_never_treated_as_claude_code(
    cluster: Cluster, e2b: Any, sandbox_home: Path, start_operator: Any
) -> None:
    """``сlaude`` with a Cyrillic ``с`` (U+0441) is another program: the sandbox's file of that name
    runs as the agent (it is allowed), the operator reports the spoofing attempt with a Warning, and
    nothing Claude Code gets is given to it: no Claude Code package, configuration or onboarding."""
    spoof = "\u0441laude"
    shutil.copy2(FIXTURE_BIN / "fake-agent", sandbox_home / ".local" / "bin" / spoof)
    operator = start_operator()
    cluster.core.create_namespaced_config_map(
        "default",
        {"metadata": {"name": "spoof-cfg"}, "data": {"CLAUDE.md": "be Claude\n", "settings.json": "{}"}},
    )
    body = _swarm(
        "spoof", {"agents": 2, "agent": {"command": spoof, "config": {"configMapName": "spoof-cfg"}}}
    )
    cluster.custom.create_namespaced_custom_object(
        "claudeswarm.io", "v1alpha1", "default", "swarmsandboxes", body
    )
    cluster.wait_condition("default", "spoof", "Ready", timeout=60)
    assert cluster.status("default", "spoof")["agents"]["summary"] == "2/2"
    warnings = [e for e in cluster.events("default", "spoof") if e.reason == "SpoofedCommand"]
    assert [e.type for e in warnings] == ["Warning"], warnings
    assert "spec.agent.command '\\u0441laude' looks like 'claude' but is not it" in warnings[0].message
    [sandbox] = [s for s in e2b.inspect() if s["alive"]]
    home = Path(sandbox["home"])
    # The agents are the look-alike program itself (the fake agent under that name) ...
    assert (home / ".local" / "bin" / spoof).exists()
    # ... given nothing of Claude Code's: no configuration, onboarding or package.
    assert not (home / ".claude.json").exists() and not (home / ".claude").exists()
    assert not [i for i in sandbox["installs"] if "claude-code" in json.dumps(i)], sandbox["installs"]
    assert operator.proc.poll() is None and "Traceback" not in operator.log()
