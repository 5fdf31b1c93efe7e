"""The emulator's serving shell: the CRDs it is given (ours, via the conftest), kubeconfig, quick stops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import kubernetes.client as k8s
import pytest
from kube_testlib import kubectl

from swarm_testbed.kube import KubeEmulator, KubeEmulatorServer, ThreadedKubeEmulator
from swarm_testbed.kube.pytest_plugin import kube_api_client


def test_serves_no_crd_unless_given_one() -> None:
    # The test bed knows no product (it imports nothing from the operator): CRDs are passed in.
    emulator = KubeEmulator()
    assert emulator.crd_dirs == () and not emulator._crd_versions


def test_serves_the_swarmsandbox_crd_the_conftest_passes_in(kube_emulator: ThreadedKubeEmulator) -> None:
    client = kube_api_client(kube_emulator)
    try:
        custom = k8s.CustomObjectsApi(client)
        created = custom.create_namespaced_custom_object(
            "claudeswarm.io",
            "v1alpha1",
            "default",
            "swarmsandboxes",
            {
                "apiVersion": "claudeswarm.io/v1alpha1",
                "kind": "SwarmSandbox",
                "metadata": {"name": "s1"},
                "spec": {},
            },
        )
        assert created["spec"]["agents"] == 4  # the CRD's default, applied by the "server"
        with pytest.raises(k8s.ApiException) as exc:
            custom.create_namespaced_custom_object(
                "claudeswarm.io",
                "v1alpha1",
                "default",
                "swarmsandboxes",
                {
                    "apiVersion": "claudeswarm.io/v1alpha1",
                    "kind": "SwarmSandbox",
                    "metadata": {"name": "s2"},
                    "spec": {"agents": 500},
                },
            )
        assert exc.value.status == 422
        assert json.loads(exc.value.body)["details"]["causes"][0]["field"] == "spec.agents"
    finally:
        client.close()
    header = kubectl(kube_emulator, "get", "swarm").stdout.splitlines()[0].split()
    assert header[0] == "NAME" and header[-1] == "AGE" and "PHASE" in header


def test_stop_ends_open_watches_promptly(tmp_path: Path) -> None:
    handle = KubeEmulatorServer.start_in_thread(crd_dirs=[], kubeconfig=tmp_path / "kubeconfig")
    client = kube_api_client(handle)
    core = k8s.CoreV1Api(client)
    ended = threading.Event()

    def watch() -> None:
        try:
            core.list_namespaced_config_map("default", watch=True, _preload_content=False).read()
        except Exception:
            pass
        ended.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while handle.emulator.counter.count("watch") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    handle.stop()
    assert time.monotonic() - started < 5
    assert ended.wait(5)
    watcher.join(5)
    client.close()


async def test_async_server_and_kubeconfig(tmp_path: Path) -> None:
    async with KubeEmulatorServer(crd_dirs=[]) as server:
        path = server.write_kubeconfig(tmp_path / "kc")
        assert server.url in path.read_text()
        async with server.emulator.servers[0].client.get("/api/v1/namespaces/kube-system") as response:
            assert response.status == 200
            assert (await response.json())["status"]["phase"] == "Active"
