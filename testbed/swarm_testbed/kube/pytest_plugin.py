"""pytest fixtures for the Kubernetes API emulator.

``kube_emulator`` gives each test a fresh emulator on its own loop in a background thread, with a
kubeconfig in the test's ``tmp_path`` — usable from sync tests, by ``kubectl`` and by operators run as
subprocesses. The kubernetes client reads ``KUBECONFIG`` when it is imported, so tests should build
their client from the handle explicitly: ``kube_api_client(kube_emulator)``.

Which CRDs are served is the ``kube_emulator_crd_dirs`` fixture's answer (default: none); override
that fixture (in a conftest or a test module) to serve the CRDs under test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from swarm_testbed.kube._server import KubeEmulatorServer, ThreadedKubeEmulator

if TYPE_CHECKING:
    import kubernetes.client


def kube_api_client(handle: ThreadedKubeEmulator) -> kubernetes.client.ApiClient:
    """A kubernetes ``ApiClient`` for this emulator, whatever ``KUBECONFIG`` said at import time."""
    import kubernetes.config

    if handle.kubeconfig is None:
        raise ValueError("this emulator was started without a kubeconfig")
    return kubernetes.config.new_client_from_config(config_file=str(handle.kubeconfig))


@pytest.fixture()
def kube_emulator_crd_dirs() -> Sequence[Path]:
    """Folders of CRDs to serve; none unless a conftest or test module overrides this fixture."""
    return ()


@pytest.fixture()
def kube_emulator(
    tmp_path: Path,
    kube_emulator_crd_dirs: Sequence[Path],
) -> Iterator[ThreadedKubeEmulator]:
    """A fresh Kubernetes API emulator in a thread; ``.url``, ``.kubeconfig``, ``.emulator``, ``.call``."""
    handle = KubeEmulatorServer.start_in_thread(
        crd_dirs=kube_emulator_crd_dirs, kubeconfig=tmp_path / "kubeconfig"
    )
    try:
        yield handle
    finally:
        handle.stop()
