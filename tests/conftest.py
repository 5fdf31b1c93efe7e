"""Test-session plumbing shared by every test.

The async E2B SDK's HTTP engine (pyqwest) aborts the interpreter (SIGABRT) in a share of ordinary exits
after async use. pytest has printed its whole report by ``pytest_unconfigure``; leaving there through
``os._exit`` with pytest's own exit status keeps CI's verdict truthful.
"""

from __future__ import annotations

import os
import sys

import pytest

pytest_plugins = [
    "swarm_operator.emulators.e2b.pytest_plugin",
    "swarm_operator.emulators.kube.pytest_plugin",
]

_exit_status: int = 0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("SWARM_TEST_NO_HARD_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
