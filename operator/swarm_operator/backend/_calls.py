"""The machinery under every E2B call: connection options, the per-sandbox connection cache, and
:meth:`SdkCalls._call`, which bounds a call in time, retries it per the :class:`RetryPolicy`,
reports it to the observer, logs it (sandbox id and operation, never a secret) and turns whatever
the SDK raised into a :class:`BackendError`.

Apart from the operations (``_e2b.py``) so that each operation reads as what it asks of E2B, and
the rules every call obeys live in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from e2b import AsyncSandbox

from ._classify import classify
from ._command import DEFAULT_OUTPUT_LIMIT_BYTES
from ._errors import PROGRAMMING_ERRORS, BackendError
from ._key import ApiKey
from ._protocol import BackendTimeouts, CallObserver
from ._retry import RetryPolicy, call_with_retry

__all__ = ["SAFETY_MARGIN_S", "SdkCalls"]

logger = logging.getLogger("swarm_operator.backend")

T = TypeVar("T")

SAFETY_MARGIN_S = 2.0  # asyncio's bound on an attempt, past the SDK's own request timeout.


class SdkCalls:
    """One API key's connection to E2B: what every operation of :class:`E2BBackend` goes through.

    ``api_url``/``sandbox_url`` default to the SDK's environment (``E2B_API_URL``,
    ``E2B_SANDBOX_URL``, else E2B's cloud).
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        timeouts: BackendTimeouts | None = None,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        max_cached_connections: int = 2048,
        user: str = "user",
        output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES,
    ) -> None:
        if output_limit_bytes < 1:
            raise ValueError("output_limit_bytes must be positive")
        self._key = ApiKey(api_key)
        # What one command may print per stream before it is killed (OutputLimitExceeded): the
        # operator's memory per running command is bounded by twice this, whatever a sandbox does.
        self.output_limit_bytes = output_limit_bytes
        # Every command runs as this account unless a call names another: envd's own default is the
        # template's default user, which a custom template may have made root.
        self.user = user
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        self.timeouts = timeouts or BackendTimeouts()
        self.retry = retry or RetryPolicy()
        self._observer = observer
        self._max_cached = max_cached_connections
        # sandbox id -> SDK object holding that sandbox's envd access token (LRU-bounded).
        self._sandboxes: OrderedDict[str, AsyncSandbox] = OrderedDict()

    def __repr__(self) -> str:
        return f"<E2BBackend key={self._key.fingerprint} api_url={self._api_url or '(env)'}>"

    @property
    def key_fingerprint(self) -> str:
        return self._key.fingerprint

    # ----------------------------------------------------------------- machinery

    def _opts(self, request_timeout: float) -> dict[str, Any]:
        """Connection options for one SDK call. ``retries=0``: retrying is ours to decide."""
        opts: dict[str, Any] = {
            "api_key": self._key.reveal(),
            "request_timeout": request_timeout,
            "retries": 0,
        }
        if self._api_url:
            opts["api_url"] = self._api_url
        if self._sandbox_url:
            opts["sandbox_url"] = self._sandbox_url
        return opts

    async def _connected(self, sandbox_id: str, budget: float) -> AsyncSandbox:
        """The cached SDK object for this sandbox, or a fresh one from ``connect``.

        ``connect`` is sent without a timeout so it never lengthens the lease the lifecycle
        manages (the service only ever extends a running sandbox's timeout on connect).
        """
        cached = self._sandboxes.get(sandbox_id)
        if cached is not None:
            self._sandboxes.move_to_end(sandbox_id)
            return cached
        started = time.monotonic()
        try:
            sandbox = await AsyncSandbox.connect(sandbox_id, **self._opts(budget))
        except PROGRAMMING_ERRORS:
            raise
        except Exception as exc:
            err = classify(exc, "connect", sandbox_id)
            self._observe("connect", err.reason, time.monotonic() - started)
            raise err from exc
        self._observe("connect", "ok", time.monotonic() - started)
        self._remember(sandbox)
        return sandbox

    def _remember(self, sandbox: AsyncSandbox) -> None:
        self._sandboxes[sandbox.sandbox_id] = sandbox
        self._sandboxes.move_to_end(sandbox.sandbox_id)
        while len(self._sandboxes) > self._max_cached:
            self._sandboxes.popitem(last=False)

    def _forget(self, sandbox_id: str) -> None:
        self._sandboxes.pop(sandbox_id, None)

    async def _call(
        self,
        operation: str,
        sandbox_id: str | None,
        fn: Callable[[float], Awaitable[T]],
        timeout_s: float,
        retry: RetryPolicy | None,
        *,
        should_retry: Callable[[BackendError], bool] = lambda err: True,
    ) -> T:
        async def attempt(budget: float) -> T:
            started = time.monotonic()
            try:
                async with asyncio.timeout(budget + SAFETY_MARGIN_S):
                    result = await fn(budget)
            except PROGRAMMING_ERRORS:
                raise
            except Exception as exc:
                err = classify(exc, operation, sandbox_id)
                if err.operation == operation:  # a failed connect was observed as such already
                    self._observe(operation, err.reason, time.monotonic() - started)
                raise err from exc
            self._observe(operation, "ok", time.monotonic() - started)
            return result

        try:
            return await call_with_retry(
                attempt,
                policy=retry or self.retry,
                attempt_timeout_s=timeout_s,
                should_retry=should_retry,
                on_retry=_retry_logger(operation, sandbox_id),
            )
        except BackendError as err:
            logger.warning(
                "%s on sandbox %s failed: %s: %s",
                operation,
                sandbox_id or "-",
                err.reason,
                err.message,
                extra={"operation": operation, "sandbox_id": sandbox_id, "reason": err.reason},
            )
            raise

    def _observe(self, operation: str, outcome: str, seconds: float) -> None:
        logger.debug(
            "e2b %s -> %s in %.3fs",
            operation,
            outcome,
            seconds,
            extra={"operation": operation, "outcome": outcome, "seconds": seconds},
        )
        if self._observer is None:
            return
        try:
            self._observer(operation, outcome, seconds)
        except Exception:  # a broken metrics hook must never break a sandbox call
            logger.exception("the backend call observer failed")


def _retry_logger(operation: str, sandbox_id: str | None) -> Callable[[BackendError, int, float], None]:
    """The retry loop's hook for one call: a warning per retry, with the reason and the wait."""

    def on_retry(err: BackendError, attempt_no: int, delay: float) -> None:
        logger.warning(
            "%s on sandbox %s failed (%s), retry %d in %.2fs: %s",
            operation,
            sandbox_id or "-",
            err.reason,
            attempt_no,
            delay,
            err.message,
            extra={"operation": operation, "sandbox_id": sandbox_id, "reason": err.reason},
        )

    return on_retry
