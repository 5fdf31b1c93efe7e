"""E2BBackend through the real SDK, with nothing listening: keys stay hidden, every failure is
classified, retries are bounded and observed, and create is only repeated when nothing was sent."""

from __future__ import annotations

import logging
import socket

import pytest

from swarm_operator.backend import (
    BackendPool,
    BackendTimeouts,
    BackendUnavailable,
    E2BBackend,
    RetryPolicy,
    SandboxBackend,
    key_fingerprint,
)

KEY = "e2b_" + "5ec12e7" * 5 + "00000"


@pytest.fixture
def dead_url() -> str:
    """A local port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Calls(list[tuple[str, str, float]]):
    def __call__(self, operation: str, outcome: str, seconds: float) -> None:
        self.append((operation, outcome, seconds))


FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02, deadline_s=10)
SHORT = BackendTimeouts(control_s=0.3, create_s=0.3)


@pytest.fixture
def silent_url():
    """A server that accepts connections and never answers: every call times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_nothing_shows_the_key() -> None:
    pool = BackendPool()
    backend = pool.for_key(KEY)
    for text in (repr(pool), str(pool), repr(backend), str(backend), repr(backend._key)):
        assert KEY not in text
    assert key_fingerprint(KEY) in repr(backend)
    assert KEY not in pool._backends  # cached under the fingerprint


def test_one_backend_per_key_reused() -> None:
    pool = BackendPool()
    a = pool.for_key(KEY)
    assert pool.for_key(KEY) is a
    assert pool.for_key(KEY + "x") is not a
    assert len(pool) == 2
    assert isinstance(a, SandboxBackend)


async def test_pool_forgets_a_key() -> None:
    pool = BackendPool()
    a = pool.for_key(KEY)
    await pool.forget(KEY)
    assert pool.for_key(KEY) is not a


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        E2BBackend("")


async def test_unanswered_calls_are_unavailable_after_bounded_observed_retries(
    silent_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    backend = E2BBackend(
        KEY, api_url=silent_url, sandbox_url=silent_url, retry=FAST, observer=calls, timeouts=SHORT
    )
    with caplog.at_level(logging.DEBUG, logger="swarm_operator.backend"):
        with pytest.raises(BackendUnavailable) as info:
            await backend.get("sbx-1")
    assert info.value.sandbox_id == "sbx-1" and info.value.operation == "get"
    assert [(op, outcome) for op, outcome, _ in calls] == [("get", "BackendUnavailable")] * 3
    assert KEY not in caplog.text
    assert "sbx-1" in caplog.text


async def test_refused_connection_lets_create_retry_because_nothing_was_sent(dead_url: str) -> None:
    # (The SDK's transport already retries refused connections with backoff, ~2 s an attempt.)
    calls = Calls()
    policy = RetryPolicy(attempts=2, base_delay_s=0.01, deadline_s=20)
    backend = E2BBackend(KEY, api_url=dead_url, sandbox_url=dead_url, retry=policy, observer=calls)
    with pytest.raises(BackendUnavailable) as info:
        await backend.create("base", {"uid": "u1"}, timeout_s=60)
    assert not info.value.ambiguous
    assert [op for op, _, _ in calls] == ["create"] * 2


async def test_unanswered_create_is_not_repeated(silent_url: str) -> None:
    """The create may have happened: no retry; adopt-by-metadata finds it later."""
    calls = Calls()
    backend = E2BBackend(
        KEY, api_url=silent_url, sandbox_url=silent_url, retry=FAST, observer=calls, timeouts=SHORT
    )
    with pytest.raises(BackendUnavailable) as info:
        await backend.create("base", {"uid": "u1"}, timeout_s=60)
    assert info.value.ambiguous
    assert [op for op, _, _ in calls] == ["create"]
    # The same silence on an idempotent call is retried.
    with pytest.raises(BackendUnavailable):
        await backend.kill("sbx-1")
    assert [op for op, _, _ in calls] == ["create", "kill", "kill", "kill"]


async def test_broken_observer_does_not_break_calls(silent_url: str) -> None:
    def observer(operation: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    backend = E2BBackend(
        KEY, api_url=silent_url, sandbox_url=silent_url, retry=FAST, observer=observer, timeouts=SHORT
    )
    with pytest.raises(BackendUnavailable):
        await backend.kill("sbx-1")


async def test_list_rejects_an_unknown_state_filter(dead_url: str) -> None:
    backend = E2BBackend(KEY, api_url=dead_url, sandbox_url=dead_url)
    with pytest.raises(ValueError):
        await backend.list({}, state="stopped")  # type: ignore[arg-type]
