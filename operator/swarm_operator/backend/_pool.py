"""One backend per API key, shared by every resource using that key."""

from __future__ import annotations

from collections.abc import Callable

from ._command import DEFAULT_OUTPUT_LIMIT_BYTES
from ._e2b import E2BBackend
from ._key import key_fingerprint
from ._protocol import BackendTimeouts, CallObserver
from ._retry import RetryPolicy

__all__ = ["BackendPool"]


class BackendPool:
    """One :class:`E2BBackend` per API key, created on first use and reused.

    Backends are cached under the key's fingerprint (a hash), never the key itself, so neither a
    repr nor a debugger's view of the cache shows a key.
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        timeouts: BackendTimeouts | None = None,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        factory: Callable[..., E2BBackend] = E2BBackend,
        user: str = "user",
        output_limit_bytes: int = 0,
    ) -> None:
        self._user = user
        self._output_limit = output_limit_bytes or DEFAULT_OUTPUT_LIMIT_BYTES
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        self._timeouts = timeouts
        self._retry = retry
        self._observer = observer
        self._factory = factory
        self._backends: dict[str, E2BBackend] = {}

    def __repr__(self) -> str:
        return f"<BackendPool keys={sorted(self._backends)}>"

    def __len__(self) -> int:
        return len(self._backends)

    def for_key(self, api_key: str) -> E2BBackend:
        fingerprint = key_fingerprint(api_key)
        backend = self._backends.get(fingerprint)
        if backend is None:
            backend = self._factory(
                api_key,
                api_url=self._api_url,
                sandbox_url=self._sandbox_url,
                timeouts=self._timeouts,
                retry=self._retry,
                observer=self._observer,
                user=self._user,
                output_limit_bytes=self._output_limit,
            )
            self._backends[fingerprint] = backend
        return backend

    async def forget(self, api_key: str) -> None:
        """Drop the backend of a key that is no longer used (e.g. rotated out)."""
        backend = self._backends.pop(key_fingerprint(api_key), None)
        if backend is not None:
            await backend.aclose()

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()
