from __future__ import annotations

import asyncio
import base64
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from swarm_operator.config import Settings
from swarm_operator.logs import OPERATOR_WIDE, REDACTOR, Redactor
from swarm_operator.secrets import (
    MAX_SECRET_BYTES,
    SecretKeyRef,
    SecretNotFound,
    SecretReader,
    SecretsTooLarge,
)
from swarm_testbed.kube.pytest_plugin import kube_api_client


class _ApiError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class FakeApi:
    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets = secrets
        self.calls: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append((namespace, name))
        if (namespace, name) not in self.secrets:
            raise _ApiError(404)
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[(namespace, name)].items()}
        return SimpleNamespace(data=data)


async def test_reads_each_secret_once_and_registers_values() -> None:
    api = FakeApi({("ns", "keys"): {"a": "value-aaaa", "b": "value-bbbb"}})
    reader = SecretReader(api)
    refs = [SecretKeyRef("ns", "keys", "a"), SecretKeyRef("ns", "keys", "b")]
    values = await reader.read_many(refs)
    assert values == {refs[0]: "value-aaaa", refs[1]: "value-bbbb"}
    assert api.calls == [("ns", "keys")]
    assert REDACTOR.redact("value-aaaa") == "[REDACTED]"


async def test_missing_secret_and_missing_key_name_ref_not_value() -> None:
    api = FakeApi({("ns", "keys"): {"a": "sekret-value"}})
    reader = SecretReader(api)
    with pytest.raises(SecretNotFound, match="Secret ns/absent key 'k' does not exist"):
        await reader.read(SecretKeyRef("ns", "absent", "k"))
    with pytest.raises(SecretNotFound, match="has no such key") as info:
        await reader.read(SecretKeyRef("ns", "keys", "zzz"))
    assert "sekret-value" not in str(info.value)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_many_resources_naming_one_secret_share_one_get_per_interval() -> None:
    api = FakeApi({("ns", "team"): {"anthropic": "sk-ant-team-key-0001"}})
    clock = _Clock()
    reader = SecretReader(api, ttl_s=60.0, clock=clock, redactor=Redactor())
    ref = SecretKeyRef("ns", "team", "anthropic")
    # 50 resources at once (a restart of the operator), then each again a bit later.
    results = await asyncio.gather(*(reader.read_many([ref], scope=f"uid-{i}") for i in range(50)))
    assert all(r == {ref: "sk-ant-team-key-0001"} for r in results)
    clock.now += 30
    for i in range(50):
        await reader.read_many([ref], scope=f"uid-{i}")
    assert api.calls == [("ns", "team")]
    clock.now += 31  # the interval is over: the next read asks the API server again, once
    await asyncio.gather(*(reader.read_many([ref], scope=f"uid-{i}") for i in range(50)))
    assert api.calls == [("ns", "team")] * 2


async def test_a_rotated_value_is_seen_after_one_interval() -> None:
    api = FakeApi({("ns", "s"): {"k": "first-value-123"}})
    clock = _Clock()
    reader = SecretReader(api, ttl_s=60.0, clock=clock, redactor=Redactor())
    ref = SecretKeyRef("ns", "s", "k")
    assert await reader.read(ref) == "first-value-123"
    api.secrets[("ns", "s")] = {"k": "second-value-456"}
    assert await reader.read(ref) == "first-value-123"
    clock.now += 60
    assert await reader.read(ref) == "second-value-456"


async def test_failures_are_not_kept() -> None:
    api = FakeApi({})
    reader = SecretReader(api, ttl_s=60.0, clock=_Clock(), redactor=Redactor())
    ref = SecretKeyRef("ns", "late", "k")
    with pytest.raises(SecretNotFound):
        await reader.read(ref)
    api.secrets[("ns", "late")] = {"k": "created-after-all"}
    assert await reader.read(ref) == "created-after-all"


async def test_without_ttl_every_read_asks_but_concurrent_ones_share() -> None:
    api = FakeApi({("ns", "s"): {"k": "value-of-the-key"}})
    reader = SecretReader(api, redactor=Redactor())
    ref = SecretKeyRef("ns", "s", "k")
    await asyncio.gather(*(reader.read(ref) for _ in range(10)))
    assert len(api.calls) == 1
    await reader.read(ref)
    assert len(api.calls) == 2


async def test_one_cancelled_caller_does_not_cancel_the_shared_get() -> None:
    gate = threading.Event()

    class SlowApi(FakeApi):
        def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any:
            gate.wait(5)
            return super().read_namespaced_secret(name, namespace, **kwargs)

    api = SlowApi({("ns", "s"): {"k": "value-of-the-key"}})
    reader = SecretReader(api, ttl_s=60.0, redactor=Redactor())
    ref = SecretKeyRef("ns", "s", "k")
    first = asyncio.ensure_future(reader.read(ref))
    second = asyncio.ensure_future(reader.read(ref))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    assert await second == "value-of-the-key"
    assert api.calls == [("ns", "s")]


async def test_values_are_registered_in_the_resource_scope_and_released() -> None:
    redactor = Redactor()
    default = SecretKeyRef("swarm-system", "e2b-api-key", "api-key")
    api = FakeApi(
        {
            ("ns", "s"): {"k": "tenant-value-abc"},
            ("swarm-system", "e2b-api-key"): {"api-key": "e2b-default-key-xyz"},
        }
    )
    reader = SecretReader(api, operator_wide=[default], redactor=redactor)
    await reader.read_many([SecretKeyRef("ns", "s", "k"), default], scope="uid-1")
    assert redactor.scopes() == {"uid-1", OPERATOR_WIDE}
    assert redactor.redact("tenant-value-abc", "uid-1") == "[REDACTED]"
    assert redactor.redact("tenant-value-abc", "uid-2") == "tenant-value-abc"
    assert redactor.redact("e2b-default-key-xyz", "uid-2") == "[REDACTED]"  # the operator's key
    reader.release("uid-1")
    assert redactor.scopes() == {OPERATOR_WIDE} and len(redactor) == 1


async def test_total_secret_bytes_are_capped_naming_limit_and_count() -> None:
    api = FakeApi({("ns", "big"): {"a": "x" * 600, "b": "y" * 600}})
    reader = SecretReader(api, max_total_bytes=1000, redactor=Redactor())
    refs = [SecretKeyRef("ns", "big", "a"), SecretKeyRef("ns", "big", "b")]
    with pytest.raises(SecretsTooLarge) as info:
        await reader.read_many(refs)
    assert isinstance(info.value, SecretNotFound) and info.value.reason == "SecretsTooLarge"
    assert str(info.value).startswith(
        "the 2 Secret key(s) this resource references hold 1200 bytes, "
        "over the operator's limit of 1000 bytes per resource"
    )
    assert "x" * 10 not in str(info.value)
    assert await reader.read(refs[0]) == "x" * 600  # under the limit alone
    # The operator's own key does not count against the resource's budget.
    api.secrets[("swarm-system", "e2b-api-key")] = {"api-key": "k" * 900}
    default = SecretKeyRef("swarm-system", "e2b-api-key", "api-key")
    shared = SecretReader(api, max_total_bytes=1000, operator_wide=[default], redactor=Redactor())
    assert len(await shared.read_many([refs[0], default], scope="u")) == 2
    assert SecretReader(api)._max_total_bytes == MAX_SECRET_BYTES  # bounded by default
    assert Settings().max_secret_bytes == MAX_SECRET_BYTES  # the operator setting's default agrees


def test_one_get_per_secret_through_the_kubernetes_client(kube_emulator: Any) -> None:
    """The real client against the API emulator: its request counter sees one GET for 20 readers."""
    import kubernetes

    client = kube_api_client(kube_emulator)
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespaced_secret(
        "default",
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="team"), string_data={"key": "team-key-0123456"}
        ),
    )
    counter = kube_emulator.emulator.counter
    before = counter.count("get", "secrets")
    reader = SecretReader(core, ttl_s=60.0, redactor=Redactor())
    ref = SecretKeyRef("default", "team", "key")

    async def many() -> list[dict[SecretKeyRef, str]]:
        first = await asyncio.gather(*(reader.read_many([ref], scope=f"u{i}") for i in range(20)))
        return first + [await reader.read_many([ref], scope=f"u{i}") for i in range(20)]

    assert all(v == {ref: "team-key-0123456"} for v in asyncio.run(many()))
    assert counter.count("get", "secrets") - before == 1


async def test_a_shared_failed_get_names_each_callers_own_key() -> None:
    api = FakeApi({})
    reader = SecretReader(api, ttl_s=60.0, redactor=Redactor())
    first, second = await asyncio.gather(
        reader.read(SecretKeyRef("ns", "gone", "a")),
        reader.read(SecretKeyRef("ns", "gone", "b")),
        return_exceptions=True,
    )
    assert len(api.calls) == 1
    assert "key 'a'" in str(first) and "key 'b'" in str(second)
