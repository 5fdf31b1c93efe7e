"""The tenancy policy (lifecycle.tenancy), the lifecycle's use of it, and the release record the
orphan sweeper trusts instead of anything inside a sandbox."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import kubernetes
import pytest
from test_lifecycle import KEY, REF, SPEC, FakeBackend, Pool, Recorder, _spec, _status

from swarm_operator import lifecycle
from swarm_operator.backend import SandboxInfo
from swarm_operator.cluster._released import MAX_ENTRIES, ConfigMapReleaseRecord, RecordFull
from swarm_operator.config import Settings, SettingsError
from swarm_operator.lifecycle import GiveUp, ResourceRef, Runtime
from swarm_operator.lifecycle.tenancy import glob_match, refusal
from swarm_operator.names import TAG_OPERATOR, TAG_UID
from swarm_operator.secrets import SecretReader
from swarm_operator.sweeper import Sweeper
from swarm_testbed.kube.pytest_plugin import kube_api_client

OWN_KEY = {"e2b": {"apiKeySecretRef": {"name": "team-key", "key": "api-key"}}}


def _settings(**env: str) -> Settings:
    return Settings.from_env({f"SWARM_{k.upper()}": v for k, v in env.items()})


def _reason(namespace: str, body: dict[str, Any], settings: Settings | None = None) -> str | None:
    found = refusal(namespace, _spec({**SPEC, **body}), settings or Settings.from_env({}))
    return None if found is None else str(found.reason)


def test_defaults_are_multi_tenant_safe_and_serve_the_quick_start() -> None:
    settings = Settings.from_env({})
    assert settings.max_sandboxes_per_namespace == 20
    assert settings.default_key_namespaces == "default" and settings.default_key_templates == ""
    assert _reason("default", {}) is None  # examples/minimal.yaml, applied as the README says
    assert _reason("team-a", {}) == "DefaultKeyNotAllowed"
    assert _reason("team-a", OWN_KEY) is None
    assert _reason("swarm-system", {}) == _reason("swarm-system", OWN_KEY) == "NamespaceNotAllowed"


@pytest.mark.parametrize(
    ("namespace", "body", "env", "reason"),
    [
        ("team-a", {}, {"default_key_namespaces": "team-*"}, None),
        ("teamb", {}, {"default_key_namespaces": "team-*"}, "DefaultKeyNotAllowed"),
        ("x", {}, {"default_key_namespaces": "*"}, None),
        ("default", {}, {"default_key_namespaces": ""}, "DefaultKeyNotAllowed"),
        ("default", {"deletionPolicy": "Orphan"}, {}, "OrphanNotAllowed"),
        ("default", {"deletionPolicy": "Orphan", **OWN_KEY}, {}, None),
        (
            "default",
            {"template": "anthropic-claude-code"},
            {},
            None,
        ),  # the default template is always allowed
        ("default", {"template": "gpu-xl"}, {}, "TemplateNotAllowed"),
        ("default", {"template": "gpu-xl", **OWN_KEY}, {}, None),
        ("default", {"template": "claude-swarm-v2"}, {"default_key_templates": "claude-swarm*"}, None),
        (
            "default",
            {"template": "team/claude-swarm"},
            {"default_key_templates": "claude-swarm*"},
            "TemplateNotAllowed",
        ),
        ("default", {"template": "x"}, {"default_template": "x"}, None),
        ("swarm-system", OWN_KEY, {}, "NamespaceNotAllowed"),
        ("ops", {}, {"namespace": "ops", "default_key_namespaces": "*"}, "NamespaceNotAllowed"),
    ],
)
def test_refusal_table(namespace: str, body: dict[str, Any], env: dict[str, str], reason: str | None) -> None:
    assert _reason(namespace, body, _settings(**env)) == reason


def test_globs_are_star_and_question_mark_only() -> None:
    assert glob_match(["a?c"], "abc") and not glob_match(["a?c"], "abbc")
    assert glob_match(["a.*"], "a.b") and not glob_match(["a.*"], "axb")  # '.' is literal
    assert not glob_match(["[ab]"], "a") and glob_match(["[ab]"], "[ab]")  # no classes
    assert not glob_match([], "anything")
    with pytest.raises(SettingsError, match="SWARM_DEFAULT_KEY_TEMPLATES"):
        Settings.from_env({"SWARM_DEFAULT_KEY_TEMPLATES": "ok,'); drop"})


class CountingSecrets:
    """Counts every Secret read: a refused resource must cause none."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
        import base64
        from types import SimpleNamespace

        self.reads.append((namespace, name))
        return SimpleNamespace(data={"api-key": base64.b64encode(KEY.encode()).decode()})


def _runtime(backend: FakeBackend, recorder: Recorder, secrets: CountingSecrets, **env: str) -> Runtime:
    return Runtime(
        settings=_settings(init_backoff_seconds="0", **env),
        backends=Pool(backend),
        secrets=SecretReader(secrets),
        status=recorder,
        events=recorder,
    )


#: What each refusal's message must name so a person knows what to change.
_ACTIONABLE = {
    "DefaultKeyNotAllowed": "SWARM_DEFAULT_KEY_NAMESPACES",
    "OrphanNotAllowed": "spec.deletionPolicy",
    "TemplateNotAllowed": "spec.template",
    "NamespaceNotAllowed": "operator's own",
}


@pytest.mark.parametrize(
    ("namespace", "body", "reason"),
    [
        ("team-a", {}, "DefaultKeyNotAllowed"),
        ("default", {"deletionPolicy": "Orphan"}, "OrphanNotAllowed"),
        ("default", {"template": "gpu-xl"}, "TemplateNotAllowed"),
        ("swarm-system", OWN_KEY, "NamespaceNotAllowed"),
    ],
)
async def test_refused_resources_get_a_terminal_reason_no_sandbox_and_no_secret_read(
    namespace: str, body: dict[str, Any], reason: str
) -> None:
    backend, recorder, secrets = FakeBackend(), Recorder(), CountingSecrets()
    runtime = _runtime(backend, recorder, secrets)
    ref = ResourceRef(namespace, "swarm", "uid-1", 1)
    with pytest.raises(GiveUp) as info:
        await lifecycle.reconcile(ref, _spec({**SPEC, **body}), _status(None), runtime)
    assert info.value.reason == reason
    assert not backend.sandboxes and not secrets.reads
    status = recorder.status()
    assert status["phase"] == "Failed"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reason and _ACTIONABLE[reason] in ready["message"], ready
    # Its delete reads no Secret either: it was given nothing to kill.
    await lifecycle.delete(ref, _spec({**SPEC, **body}), _status(None), runtime)
    assert not secrets.reads and not backend.killed


async def test_a_policy_change_kills_the_sandbox_it_now_refuses() -> None:
    backend, recorder, secrets = FakeBackend(), Recorder(), CountingSecrets()
    allowed = _runtime(backend, recorder, secrets, default_key_namespaces="*")
    ref = ResourceRef("team-a", "swarm", "uid-1", 1)
    status = await lifecycle.reconcile(ref, _spec(SPEC), _status(None), allowed)
    sid = status.sandbox.id
    # Same process memory, stricter settings (as after an operator restart with new settings that
    # found the key in memory: modelled by sharing the memory record).
    strict = _runtime(backend, recorder, secrets)
    strict.memory = allowed.memory
    with pytest.raises(GiveUp):
        await lifecycle.reconcile(ref, _spec(SPEC), status, strict)
    assert backend.killed == [sid] and strict.api_key(ref.uid) is None
    assert recorder.patches[-1]["sandbox"] is None  # the merge patch removes it from status


async def test_orphan_with_the_default_key_is_torn_down_and_with_its_own_key_recorded() -> None:
    backend, recorder, secrets = FakeBackend(), Recorder(), CountingSecrets()
    runtime = _runtime(backend, recorder, secrets)
    sid = backend.add(REF.uid)
    runtime.remember(REF.uid).api_key = KEY
    # A resource made Orphan before the policy existed: still never left billing the platform.
    await lifecycle.delete(
        REF, _spec({**SPEC, "deletionPolicy": "Orphan"}), _status({"sandbox": {"id": sid}}), runtime
    )
    assert backend.killed == [sid] and not await runtime.released.ids()
    sid = backend.add(REF.uid)
    await lifecycle.delete(
        REF,
        _spec({**SPEC, "deletionPolicy": "Orphan", **OWN_KEY}),
        _status({"sandbox": {"id": sid}}),
        runtime,
    )
    assert backend.killed == [backend.killed[0]] and await runtime.released.ids() == {sid}


class SweptBackend:
    """Lists tagged sandboxes and records kills; it has no way to run a command: the sweeper must
    decide without looking inside any sandbox."""

    def __init__(self, owners: dict[str, str]) -> None:
        from datetime import datetime

        now = datetime.now(UTC)
        self.sandboxes = {
            sid: SandboxInfo(sid, "base", {TAG_UID: uid, TAG_OPERATOR: "op"}, now, now, "running")
            for sid, uid in owners.items()
        }
        self.killed: list[str] = []

    async def list(self, metadata: Any, **_: Any) -> list[SandboxInfo]:
        return list(self.sandboxes.values())

    async def kill(self, sandbox_id: str, **_: Any) -> bool:
        self.killed.append(sandbox_id)
        return self.sandboxes.pop(sandbox_id, None) is not None


async def test_the_sweeper_spares_only_what_the_operator_recorded() -> None:
    backend = SweptBackend({"live": "uid-live", "released": "uid-gone-1", "orphan": "uid-gone-2"})
    sweeper = Sweeper(operator_id="op", grace_s=0)

    async def live() -> set[str]:
        return {"uid-live"}

    async def released() -> set[str]:
        return {"released"}

    report = await sweeper.sweep([backend], live, released)  # type: ignore[list-item]
    assert backend.killed == ["orphan"] and report.released == 1

    async def unreadable() -> set[str]:
        raise kubernetes.client.ApiException(status=503)

    backend.sandboxes.update(SweptBackend({"orphan-2": "uid-gone-3"}).sandboxes)
    with pytest.raises(kubernetes.client.ApiException):
        await sweeper.sweep([backend], live, unreadable)  # type: ignore[list-item]
    assert backend.killed == ["orphan"]  # nothing killed while the record cannot be read


def test_release_record_in_a_configmap(kube_emulator: Any) -> None:
    """Through the real client against the Kubernetes emulator: created on first use, read back,
    expired entries dropped on the next write, bounded."""
    import asyncio

    api = kube_api_client(kube_emulator)
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "swarm-system"}})
    clock = [1000.0]
    record = ConfigMapReleaseRecord(
        api, namespace="swarm-system", operator_id="op", timeout_s=10, clock=lambda: clock[0]
    )
    ref = ResourceRef("team-a", "keep", "uid-9")

    async def scenario() -> None:
        assert await record.ids() == set()
        await record.record("sbx-a", ref, 2000)
        await record.record("sbx-b", ref, 5000)
        assert await record.ids() == {"sbx-a", "sbx-b"}
        clock[0] = 3000
        assert await record.ids() == {"sbx-b"}
        await record.record("sbx-c", ref, 9000)  # drops sbx-a from the ConfigMap itself
        data = core.read_namespaced_config_map("op-released", "swarm-system").data
        assert set(data) == {"sbx-b", "sbx-c"} and '"uid": "uid-9"' in data["sbx-c"]

    asyncio.run(scenario())
    # Full: a new release waits rather than push the ConfigMap past its size.
    core.patch_namespaced_config_map(
        "op-released", "swarm-system", {"data": {f"sbx-{i}": '{"until": 99999}' for i in range(MAX_ENTRIES)}}
    )
    with pytest.raises(RecordFull):
        asyncio.run(record.record("sbx-new", ref, 9000))
    api.close()
