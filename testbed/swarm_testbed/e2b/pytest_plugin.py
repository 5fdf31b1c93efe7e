"""pytest fixtures for the E2B emulator (registered from the project's tests/conftest.py).

- ``e2b_api_key``: a key of E2B's shape (``e2b_`` + 40 hex), accepted by a default emulator.
- ``e2b_emulator_factory``: ``factory(**knobs) -> EmulatorThread``; every one is stopped (and all
  its sandboxes killed) at teardown. Defaults follow the real service (stock templates without tmux,
  Hobby's 1 h cap, E2B's egress validation, E2B_SANDBOX_ID after 0.2 s); a test that needs more
  names the knob (``stock_templates=False``, ``permissive_egress=True``, ``identity_delay_seconds=0``)
  or a template of its own (any non-stock name has the host's tools).
- ``e2b_emulator``: one default emulator (an :class:`EmulatorThread`: ``.url``, ``.emulator``,
  ``.inspect()``, ``.reset()``), running in its own thread so sync and async tests can both use it.
- ``e2b_env``: ``e2b_emulator`` with ``E2B_API_URL``, ``E2B_SANDBOX_URL`` and ``E2B_API_KEY`` set
  for the test, so the official SDK (and anything built on it) talks to the emulator unmodified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from swarm_testbed.e2b._server import E2BEmulator, EmulatorThread

API_KEY = "e2b_" + "0123456789abcdef" * 2 + "01234567"


@pytest.fixture
def e2b_api_key() -> str:
    return API_KEY


@pytest.fixture
def e2b_emulator_factory() -> Iterator[Callable[..., EmulatorThread]]:
    started: list[EmulatorThread] = []

    def factory(**knobs: Any) -> EmulatorThread:
        handle = E2BEmulator.start_in_thread(**knobs)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


@pytest.fixture
def e2b_emulator(e2b_emulator_factory: Callable[..., EmulatorThread]) -> EmulatorThread:
    return e2b_emulator_factory()


@pytest.fixture
def e2b_env(
    e2b_emulator: EmulatorThread, e2b_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> EmulatorThread:
    monkeypatch.setenv("E2B_API_URL", e2b_emulator.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", e2b_emulator.url)
    monkeypatch.setenv("E2B_API_KEY", e2b_api_key)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    return e2b_emulator
