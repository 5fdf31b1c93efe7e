"""Test-session plumbing shared by every test.

The async E2B SDK's HTTP engine (pyqwest) aborts the interpreter (SIGABRT) in a share of ordinary exits
after async use. pytest has printed its whole report by ``pytest_unconfigure``; leaving there through
``os._exit`` with pytest's own exit status keeps CI's verdict truthful.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from swarm_operator._crd import package_path

pytest_plugins = [
    "swarm_testbed.e2b.pytest_plugin",
    "swarm_testbed.kube.pytest_plugin",
]

_exit_status: int = 0


@pytest.fixture()
def kube_emulator_crd_dirs() -> Sequence[Path]:
    """The test bed serves no CRDs of its own: every ``kube_emulator`` here serves ours (a test
    module overrides this fixture to serve others)."""
    return [package_path().parent]


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
