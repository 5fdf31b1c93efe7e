"""The Kubernetes emulator through kubectl: apply, get (server-side tables), delete, wait."""

from __future__ import annotations

import json
import subprocess

import kubernetes.client as k8s
import pytest
import yaml
from kube_testlib import (  # noqa: F401
    CRD_DIR,
    GROUP,
    KUBECTL,
    PLURAL,
    VERSION,
    kube_emulator_crd_dirs,
    kubectl,
    widget,
)

from swarm_testbed.kube import ThreadedKubeEmulator
from swarm_testbed.kube.pytest_plugin import kube_api_client


def apply(
    handle: ThreadedKubeEmulator, manifest: dict | str, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    return kubectl(handle, "apply", "--validate=false", "-f", "-", input=text, check=check)


def get_json(handle: ThreadedKubeEmulator, *what: str) -> dict:
    return json.loads(kubectl(handle, "get", *what, "-o", "json").stdout)


def test_apply_defaults_prunes_and_updates(kube_emulator: ThreadedKubeEmulator) -> None:
    body = {**widget("w1", junk="dropped"), "metadata": {"name": "w1", "labels": {"team": "red"}}}
    assert "widget.test.example.com/w1 created" in apply(kube_emulator, body).stdout
    obj = get_json(kube_emulator, "widget", "w1")
    assert obj["spec"] == {"size": "1Gi", "replicas": 1, "mode": "Slow", "limits": {"cpu": 2}}
    body["spec"]["replicas"] = 4
    assert "configured" in apply(kube_emulator, json.dumps(body)).stdout  # JSON is accepted too
    obj = get_json(kube_emulator, "wg", "w1")
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["generation"] == 2


def test_schema_rejection_is_reported_with_the_field(kube_emulator: ThreadedKubeEmulator) -> None:
    result = apply(kube_emulator, widget("w1", replicas=50), check=False)
    assert result.returncode != 0
    assert 'The Widget "w1" is invalid: spec.replicas: Invalid value: 50' in result.stderr
    assert "No resources found" in kubectl(kube_emulator, "get", "widgets").stderr


def test_get_prints_the_crd_printer_columns(kube_emulator: ThreadedKubeEmulator) -> None:
    apply(kube_emulator, {**widget("w1", replicas=3), "metadata": {"name": "w1", "labels": {"team": "red"}}})
    apply(kube_emulator, {**widget("w2"), "metadata": {"name": "w2", "labels": {"team": "blue"}}})
    client = kube_api_client(kube_emulator)
    try:
        k8s.CustomObjectsApi(client).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        )
    finally:
        client.close()
    lines = kubectl(kube_emulator, "get", "widgets", "-l", "team=red").stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "REPLICAS", "READY", "AGE"]
    assert lines[1].split()[:4] == ["w1", "Running", "3", "True"] and len(lines) == 2
    names = kubectl(kube_emulator, "get", "wg", "-o", "name").stdout.split()
    assert names == ["widget.test.example.com/w1", "widget.test.example.com/w2"]


def test_secrets_apply_and_read(kube_emulator: ThreadedKubeEmulator) -> None:
    apply(
        kube_emulator,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "e2b"},
            "stringData": {"apiKey": "e2b_abc"},
        },
    )
    key = kubectl(kube_emulator, "get", "secret", "e2b", "-o", "jsonpath={.data.apiKey}").stdout
    assert key == "ZTJiX2FiYw=="


def test_dry_run_server_stores_nothing(kube_emulator: ThreadedKubeEmulator) -> None:
    result = kubectl(
        kube_emulator,
        "apply",
        "--validate=false",
        "--dry-run=server",
        "-f",
        "-",
        input=yaml.safe_dump(widget("w1")),
    )
    assert "(server dry run)" in result.stdout
    assert "No resources found" in kubectl(kube_emulator, "get", "widgets").stderr


def test_delete_waits_for_the_object_to_go(kube_emulator: ThreadedKubeEmulator) -> None:
    apply(kube_emulator, widget("w1"))
    assert "deleted" in kubectl(kube_emulator, "delete", "widget", "w1", "--timeout=10s").stdout
    result = kubectl(kube_emulator, "get", "widget", "w1", check=False)
    assert result.returncode == 1 and "(NotFound)" in result.stderr


def test_crd_applied_at_runtime_is_served(kube_emulator: ThreadedKubeEmulator) -> None:
    crd = yaml.safe_load((CRD_DIR / "widgets.yaml").read_text())
    crd["metadata"]["name"] = "gizmos.test.example.com"
    crd["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"}
    apply(kube_emulator, crd)
    kubectl(
        kube_emulator, "wait", "--for=condition=Established", "crd/gizmos.test.example.com", "--timeout=10s"
    )
    apply(kube_emulator, {**widget("g1"), "kind": "Gizmo"})
    assert get_json(kube_emulator, "gizmo", "g1")["spec"]["mode"] == "Slow"


def test_wait_for_condition_ready(kube_emulator: ThreadedKubeEmulator) -> None:
    """kubectl wait lists, then watches with fieldSelector=metadata.name from the list's version."""
    apply(kube_emulator, widget("w1"))
    waiter = subprocess.Popen(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(kube_emulator.kubeconfig),
            "wait",
            "--for=condition=Ready",
            "widget/w1",
            "--timeout=20s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = kube_api_client(kube_emulator)
        try:
            custom = k8s.CustomObjectsApi(client)
            # A change to another object and a not-yet-ready status: the waiter must keep waiting.
            apply(kube_emulator, widget("w2"))
            custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                "default",
                PLURAL,
                "w1",
                {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            )
            with pytest.raises(subprocess.TimeoutExpired):
                waiter.wait(0.5)
            custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                "default",
                PLURAL,
                "w1",
                {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            )
        finally:
            client.close()
        out, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert "widget.test.example.com/w1 condition met" in out
    assert kube_emulator.emulator.counter.count("watch", f"{PLURAL}.{GROUP}") >= 1
