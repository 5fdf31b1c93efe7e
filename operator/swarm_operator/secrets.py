"""Reading what resources reference: API keys and agent secrets from Secrets, agent configuration
files from ConfigMaps.

The kubernetes client is synchronous; every read runs in a worker thread so the operator's event loop
never blocks on the API server. Values are registered with the log redactor the moment they are read,
in the scope of the resource that named them, and errors name the Secret and key, never the value.

Many resources may name the same Secret (a team's one Anthropic key), and each one re-reads its
Secrets every ``secret_check_seconds``. :class:`SecretReader` therefore keeps what it read for
``ttl_s`` seconds (the re-read interval) and folds concurrent requests for one Secret into one GET:
one read per distinct Secret per interval, however many resources name it. Failures are not kept, so
a Secret created after a ``SecretNotFound`` is seen at the next attempt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from swarm_operator.logs import OPERATOR_WIDE, REDACTOR, Redactor

if TYPE_CHECKING:
    from swarm_operator.config import Settings

#: Default bound on the bytes of all Secret values one resource's read may return (UTF-8, each
#: distinct key once). The values are handed to the setup script on its stdin and the agent ones
#: become the agents' environment, where Linux caps one variable at 128 KiB and all of them with the
#: arguments at a few MiB; a resource needing more is carrying files, not credentials.
MAX_SECRET_BYTES: Final = 256 * 1024


@dataclass(frozen=True, order=True)
class SecretKeyRef:
    """A key inside a Secret, in a namespace."""

    namespace: str
    name: str
    key: str

    def __str__(self) -> str:
        return f"Secret {self.namespace}/{self.name} key {self.key!r}"


class _NamedKey(Protocol):
    """A Secret's name and key: the spec's ``apiKeySecretRef`` (model.SecretRef), or the console's
    reading of it."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


def api_key_ref(namespace: str, own: _NamedKey | None, settings: Settings) -> SecretKeyRef:
    """Where a resource's E2B API key lives: its own Secret (``spec.e2b.apiKeySecretRef``, in the
    resource's namespace), else the operator's default one.

    One function for the lifecycle (which reads the key to run the sandbox) and the console (which
    reads it for ``logs``/``attach``), so that both always resolve the same Secret."""
    if own is not None:
        return SecretKeyRef(namespace, own.name, own.key)
    return default_api_key_ref(settings)


def default_api_key_ref(settings: Settings) -> SecretKeyRef:
    """The operator-wide API key Secret, for resources that name none (and for the sweeper)."""
    return SecretKeyRef(
        settings.namespace, settings.default_api_key_secret, settings.default_api_key_secret_key
    )


class SecretNotFound(Exception):
    """A referenced Secret, or a key in it, does not exist (or is unreadable)."""

    reason = "SecretNotFound"
    #: What the operator does about it, for the condition message.
    hint = "the operator retries until it exists"

    def __init__(self, ref: SecretKeyRef, detail: str) -> None:
        self.ref = ref
        super().__init__(f"{ref} {detail}")


class SecretsTooLarge(SecretNotFound):
    """The values one resource names add up to more than the operator's limit.

    Handled like a missing Secret, on purpose: the Secrets can shrink without the spec changing, so
    the operator keeps retrying with backoff, and a swarm already running keeps its agents (a
    terminal ``InvalidSpec`` would mark it Failed while its sandbox runs on). The reason is its own
    so ``kubectl get`` says what to fix.
    """

    reason = "SecretsTooLarge"
    hint = "the operator reads them again, with backoff, until they fit"

    def __init__(self, total: int, limit: int, count: int) -> None:
        self.ref = SecretKeyRef("", "", "")
        self.total, self.limit, self.count = total, limit, count
        Exception.__init__(
            self,
            f"the {count} Secret key(s) this resource references hold {total} bytes, over the "
            f"operator's limit of {limit} bytes per resource (setting SWARM_MAX_SECRET_BYTES): "
            "reference fewer or smaller values",
        )


class ConfigMapNotFound(SecretNotFound):
    """A referenced ConfigMap does not exist (or is unreadable); handled like a missing Secret."""

    reason = "ConfigMapNotFound"

    def __init__(self, namespace: str, name: str, detail: str) -> None:
        super().__init__(SecretKeyRef(namespace, name, "*"), detail)
        self.args = (f"ConfigMap {namespace}/{name} {detail}",)


class SecretsApi(Protocol):
    """The calls we need from ``kubernetes.client.CoreV1Api``; a Protocol so tests can fake it."""

    def read_namespaced_secret(self, name: str, namespace: str, *, _request_timeout: float) -> Any: ...

    def read_namespaced_config_map(self, name: str, namespace: str, *, _request_timeout: float) -> Any: ...


class SecretReader:
    """Reads Secret values: one API GET per distinct Secret per ``ttl_s``, shared by every caller.

    ``ttl_s`` is how long a Secret read stays fresh (the operator uses its Secret re-read interval;
    0 keeps nothing, but concurrent requests for one Secret still share one GET). ``operator_wide``
    lists the operator's own Secret keys (the default E2B key): their values are registered with the
    redactor for every log line, not only the lines of the resource that read them.
    """

    def __init__(
        self,
        api: SecretsApi,
        *,
        timeout_s: float = 15.0,
        ttl_s: float = 0.0,
        max_total_bytes: int | None = MAX_SECRET_BYTES,
        operator_wide: Collection[SecretKeyRef] = (),
        redactor: Redactor = REDACTOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._max_total_bytes = max_total_bytes
        self._operator_wide = frozenset(operator_wide)
        self._redactor = redactor
        self._clock = clock
        #: (namespace, name) -> (monotonic time read, the Secret's data). Entries older than the ttl
        #: are dropped on the next read, so a Secret no longer named does not stay in memory.
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        #: (namespace, name) -> the GET under way, awaited by every concurrent caller.
        self._inflight: dict[tuple[str, str], asyncio.Future[dict[str, str]]] = {}

    async def read(self, ref: SecretKeyRef, *, scope: str | None = None) -> str:
        return (await self.read_many([ref], scope=scope))[ref]

    async def read_many(
        self, refs: Iterable[SecretKeyRef], *, scope: str | None = None
    ) -> dict[SecretKeyRef, str]:
        """Resolve every ref; raises :class:`SecretNotFound` for the first one missing (sorted order)
        and :class:`SecretsTooLarge` when the values together exceed ``max_total_bytes``.

        Values are registered with the redactor under ``scope`` (the resource's uid); without one,
        operator-wide.
        """
        wanted = sorted(set(refs))
        by_secret: dict[tuple[str, str], list[SecretKeyRef]] = {}
        for ref in wanted:
            by_secret.setdefault((ref.namespace, ref.name), []).append(ref)
        datas = await asyncio.gather(
            *(self._data(ns, name, group[0]) for (ns, name), group in by_secret.items())
        )
        values: dict[SecretKeyRef, str] = {}
        for ((_, _), group), data in zip(by_secret.items(), datas, strict=True):
            for ref in group:
                if ref.key not in data:
                    raise SecretNotFound(ref, "does not exist: the Secret has no such key")
                values[ref] = _decode(ref, data[ref.key])
        shared = [v for r, v in values.items() if r in self._operator_wide]
        own = [v for r, v in values.items() if r not in self._operator_wide]
        self._redactor.register(OPERATOR_WIDE, shared)
        self._redactor.register(OPERATOR_WIDE if scope is None else scope, own)
        # The operator's own keys are not the resource's doing: only what it references counts.
        total = sum(len(v.encode()) for v in own)
        if self._max_total_bytes is not None and total > self._max_total_bytes:
            raise SecretsTooLarge(total, self._max_total_bytes, len(own))
        return values

    def release(self, scope: str) -> None:
        """The resource ``scope`` is gone: its values leave the redactor (cached Secrets age out)."""
        self._redactor.clear(scope)

    async def read_config_map(self, namespace: str, name: str, *, optional: bool = False) -> dict[str, str]:
        """A ConfigMap's data (key -> text); ``{}`` for a missing optional one."""
        try:
            body = await asyncio.to_thread(
                self._api.read_namespaced_config_map,
                name,
                namespace,
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

    async def _data(self, namespace: str, name: str, ref: SecretKeyRef) -> dict[str, str]:
        """The Secret's data: cached while fresh, else one GET shared with concurrent callers.
        A missing Secret is reported with the caller's own ``ref``, not the first caller's."""
        key = (namespace, name)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        running = self._inflight.get(key)
        if running is None:
            running = asyncio.ensure_future(self._fetch(namespace, name))
            self._inflight[key] = running
            running.add_done_callback(functools.partial(self._settle, key))
        try:
            # shield: one caller cancelled (its handler timed out) must not cancel the others' GET.
            return await asyncio.shield(running)
        except _Unreadable as exc:
            raise SecretNotFound(ref, _MISSING[exc.status]) from None

    def _settle(self, key: tuple[str, str], done: asyncio.Future[dict[str, str]]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if done.cancelled() or done.exception() is not None or self._ttl_s <= 0:
            return  # failures are never kept: the next attempt asks the API server again
        now = self._clock()
        stale = [k for k, (at, _) in self._cache.items() if now - at >= self._ttl_s]
        for k in stale:
            del self._cache[k]
        self._cache[key] = (now, done.result())

    async def _fetch(self, namespace: str, name: str) -> dict[str, str]:
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
                raise _Unreadable(status) from None
            raise
        return dict(getattr(secret, "data", None) or {})


class _Unreadable(Exception):
    """A shared GET found the Secret missing or forbidden; each waiter names its own ref."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_MISSING = {
    404: "does not exist: create it in that namespace",
    403: "is not readable by the operator: check its RBAC",
}


def _decode(ref: SecretKeyRef, raw: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SecretNotFound(ref, "is not valid base64-encoded UTF-8 text") from None
