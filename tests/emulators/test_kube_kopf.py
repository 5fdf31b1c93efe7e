"""A real kopf operator, run as users run it (``kopf run`` in a subprocess), against the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client as k8s
import pytest
from kube_testlib import GROUP, PLURAL, VERSION, eventually, kube_emulator_crd_dirs, widget  # noqa: F401

from swarm_testbed.kube import ThreadedKubeEmulator
from swarm_testbed.kube.pytest_plugin import kube_api_client

OPERATOR = Path(__file__).parent / "kopf_minimal_operator.py"


@pytest.fixture()
def operator_log(kube_emulator: ThreadedKubeEmulator, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "kopf.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "kopf"),
                "run",
                "--standalone",
                "--namespace",
                "default",
                "--verbose",
                str(OPERATOR),
            ],
            env={**os.environ, "KUBECONFIG": str(kube_emulator.kubeconfig)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield log
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_kopf_operator_lifecycle(kube_emulator: ThreadedKubeEmulator, operator_log: Path) -> None:
    client = kube_api_client(kube_emulator)
    custom = k8s.CustomObjectsApi(client)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w1"))

        def ready() -> dict | None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
            return obj if obj.get("status", {}).get("phase") == "Ready" else None

        obj = eventually(ready, timeout=30)
        assert obj["status"]["conditions"] == [{"type": "Ready", "status": "True", "reason": "Created"}]
        assert obj["metadata"]["finalizers"] == ["test.example.com/finalizer"]
        eventually(lambda: "Handling cycle is finished" in operator_log.read_text(), timeout=10)

        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
            except k8s.ApiException as exc:
                return exc.status == 404
            return False

        eventually(gone, timeout=30)
        eventually(lambda: "Deleted, really deleted" in operator_log.read_text(), timeout=10)
    finally:
        client.close()

    log = operator_log.read_text()
    assert log.count("CREATE-HANDLER-RAN w1") == 1, log
    assert log.count("DELETE-HANDLER-RAN w1") == 1, log
    for trouble in (
        "[ERROR",
        "[WARNING",
        "Traceback",
        "will retry",
        "Patching failed",
        "inconsistencies",
        "APIServerError",
        "APIClientError",
    ):
        assert trouble not in log, f"{trouble!r} in the operator's log:\n{log}"
    counter = kube_emulator.emulator.counter
    resource = f"{PLURAL}.{GROUP}"
    # create; finalizer added; annotations; status; finalizer removed; the test's delete — and no retries.
    assert counter.writes(resource) <= 6, counter.snapshot()
