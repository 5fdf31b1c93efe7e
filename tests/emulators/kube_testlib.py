"""Helpers shared by the Kubernetes emulator's tests (kept out of conftest.py on purpose: the folder
is shared with other emulators' tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from swarm_testbed.kube import ThreadedKubeEmulator

CRD_DIR = Path(__file__).parent / "kube_crds"
KUBECTL = Path(sys.executable).parent / "kubectl"
GROUP, VERSION, PLURAL = "test.example.com", "v1", "widgets"

T = TypeVar("T")


@pytest.fixture()
def kube_emulator_crd_dirs() -> list[Path]:
    """Serve the tests' own Widget CRD (imported into each test module to override the default)."""
    return [CRD_DIR]


def widget(name: str, **spec: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": "1Gi", **spec},
    }


def kubectl(
    handle: ThreadedKubeEmulator,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(handle.kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def eventually(probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll until ``probe`` returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
