"""Reading what resources reference: API keys and agent secrets from Secrets, agent configuration
files from ConfigMaps.

The kubernetes client is synchronous; every read runs in a worker thread so the operator's event loop
never blocks on the API server. Values are registered with the log redactor the moment they are read,
and errors name the Secret and key, never the value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from swarm_operator.logs import REDACTOR


@dataclass(frozen=True, order=True)
class SecretKeyRef:
    """A key inside a Secret, in a namespace."""

    namespace: str
    name: str
    key: str

    def __str__(self) -> str:
        return f"Secret {self.namespace}/{self.name} key {self.key!r}"


class SecretNotFound(Exception):
    """A referenced Secret, or a key in it, does not exist (or is unreadable)."""

    reason = "SecretNotFound"

    def __init__(self, ref: SecretKeyRef, detail: str) -> None:
        self.ref = ref
        super().__init__(f"{ref} {detail}")


class ConfigMapNotFound(SecretNotFound):
    """A referenced ConfigMap does not exist (or is unreadable); handled like a missing Secret."""

    reason = "ConfigMapNotFound"

    def __init__(self, namespace: str, name: str, detail: str) -> None:
        super().__init__(SecretKeyRef(namespace, name, "*"), detail)
        self.args = (f"ConfigMap {namespace}/{name} {detail}",)


class SecretsApi(Protocol):
    """The calls we need from ``kubernetes.client.CoreV1Api``; a Protocol so tests can fake it."""

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any: ...

    def read_namespaced_config_map(self, name: str, namespace: str, **kwargs: Any) -> Any: ...


class SecretReader:
    """Reads Secret values; one API GET per distinct Secret per call to :meth:`read_many`."""

    def __init__(self, api: SecretsApi, *, timeout_s: float = 15.0) -> None:
        self._api = api
        self._timeout_s = timeout_s

    async def read(self, ref: SecretKeyRef) -> str:
        return (await self.read_many([ref]))[ref]

    async def read_many(self, refs: Iterable[SecretKeyRef]) -> dict[SecretKeyRef, str]:
        """Resolve every ref; raises :class:`SecretNotFound` for the first one missing (sorted order)."""
        wanted = sorted(set(refs))
        by_secret: dict[tuple[str, str], list[SecretKeyRef]] = {}
        for ref in wanted:
            by_secret.setdefault((ref.namespace, ref.name), []).append(ref)
        datas = await asyncio.gather(
            *(self._fetch(ns, name, group[0]) for (ns, name), group in by_secret.items())
        )
        values: dict[SecretKeyRef, str] = {}
        for ((_, _), group), data in zip(by_secret.items(), datas, strict=True):
            for ref in group:
                if ref.key not in data:
                    raise SecretNotFound(ref, "does not exist: the Secret has no such key")
                values[ref] = _decode(ref, data[ref.key])
        REDACTOR.add(*values.values())
        return values

    async def read_config_map(self, namespace: str, name: str, *, optional: bool = False
                              ) -> dict[str, str]:
        """A ConfigMap's data (key -> text); ``{}`` for a missing optional one."""
        try:
            body = await asyncio.to_thread(
                self._api.read_namespaced_config_map, name, namespace,
                _request_timeout=self._timeout_s,
            )
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 404 and optional:
                return {}
            if status in _MISSING:
                raise ConfigMapNotFound(namespace, name, _MISSING[status]) from None
            raise
        return {str(k): str(v) for k, v in (getattr(body, "data", None) or {}).items()}

    async def _fetch(self, namespace: str, name: str, ref: SecretKeyRef) -> dict[str, str]:
        try:
            secret = await asyncio.to_thread(
                self._api.read_namespaced_secret,
                name,
                namespace,
                _request_timeout=self._timeout_s,
            )
        except Exception as exc:  # ApiException, timeouts, connection errors
            status = getattr(exc, "status", None)
            if status in _MISSING:
                raise SecretNotFound(ref, _MISSING[status]) from None
            raise
        return dict(getattr(secret, "data", None) or {})


_MISSING = {
    404: "does not exist: create it in that namespace",
    403: "is not readable by the operator: check its RBAC",
}


def _decode(ref: SecretKeyRef, raw: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SecretNotFound(ref, "is not valid base64-encoded UTF-8 text") from None
