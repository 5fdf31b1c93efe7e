from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest

from swarm_operator.logs import REDACTOR
from swarm_operator.secrets import SecretKeyRef, SecretNotFound, SecretReader


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
