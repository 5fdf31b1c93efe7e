"""The Kubernetes emulator through the official kubernetes client: the API server's semantics."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator

import kubernetes.client as k8s
import kubernetes.watch
import pytest
from kube_testlib import GROUP, PLURAL, VERSION, eventually, kube_emulator_crd_dirs, widget  # noqa: F401

from swarm_testbed.kube import ThreadedKubeEmulator
from swarm_testbed.kube.pytest_plugin import kube_api_client


@pytest.fixture()
def api(kube_emulator: ThreadedKubeEmulator) -> Iterator[k8s.ApiClient]:
    client = kube_api_client(kube_emulator)
    yield client
    client.close()


@pytest.fixture()
def custom(api: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api)


@pytest.fixture()
def core(api: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api)


def create(custom: k8s.CustomObjectsApi, body: dict, namespace: str = "default", **kwargs: object) -> dict:
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, **kwargs)


def get(custom: k8s.CustomObjectsApi, name: str, namespace: str = "default") -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def status_of(exc: pytest.ExceptionInfo[k8s.ApiException]) -> dict:
    return json.loads(exc.value.body)


def test_create_returns_201_body_with_server_owned_metadata(custom: k8s.CustomObjectsApi) -> None:
    created, code, _ = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, "default", PLURAL, widget("w1")
    )
    assert code == 201
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["resourceVersion"]
    assert meta["creationTimestamp"].endswith("Z")
    assert get(custom, "w1") == created


def test_defaulting_and_pruning(custom: k8s.CustomObjectsApi) -> None:
    body = widget("w1", junk=1, extra={"free": {"form": True}})
    body["status"] = {"phase": "Smuggled"}
    created = create(custom, body)
    assert created["spec"] == {
        "size": "1Gi",
        "replicas": 1,
        "mode": "Slow",
        "limits": {"cpu": 2},
        "extra": {"free": {"form": True}},
    }
    assert "status" not in created  # status is the status subresource's alone, even on create


def test_schema_rejection_names_the_fields(custom: k8s.CustomObjectsApi) -> None:
    with pytest.raises(k8s.ApiException) as exc:
        create(custom, widget("w1", size="3Tb", replicas=11, mode="Medium"))
    assert exc.value.status == 422
    status = status_of(exc)
    assert status["reason"] == "Invalid"
    fields = {cause["field"]: cause for cause in status["details"]["causes"]}
    assert set(fields) == {"spec.size", "spec.replicas", "spec.mode"}
    assert fields["spec.mode"]["reason"] == "FieldValueNotSupported"
    assert (
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
        in status["message"]
    )
    assert status["message"].startswith('Widget.test.example.com "w1" is invalid: ')
    with pytest.raises(k8s.ApiException) as exc:
        create(custom, {**widget("w2"), "spec": {}})
    assert status_of(exc)["details"]["causes"][0]["field"] == "spec.size"
    with pytest.raises(k8s.ApiException) as exc:
        get(custom, "w1")
    assert exc.value.status == 404


def test_stale_resource_version_conflicts(custom: k8s.CustomObjectsApi) -> None:
    first = create(custom, widget("w1"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": 2}})
    stale = dict(first, spec={**first["spec"], "replicas": 3})
    with pytest.raises(k8s.ApiException) as exc:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1", stale)
    assert exc.value.status == 409 and status_of(exc)["reason"] == "Conflict"
    with pytest.raises(k8s.ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}, "spec": {"replicas": 4}},
        )
    assert exc.value.status == 409
    fresh = get(custom, "w1")
    replaced = custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", dict(fresh, spec={**fresh["spec"], "replicas": 5})
    )
    assert replaced["spec"]["replicas"] == 5
    assert int(replaced["metadata"]["resourceVersion"]) > int(fresh["metadata"]["resourceVersion"])


def test_failed_json_patch_test_is_422_and_changes_nothing(custom: k8s.CustomObjectsApi) -> None:
    created = create(custom, widget("w1"))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]

    def json_patch() -> dict:
        return custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", ops, _content_type="application/json-patch+json"
        )

    with pytest.raises(k8s.ApiException) as exc:
        json_patch()
    assert exc.value.status == 422
    assert "finalizers" not in get(custom, "w1")["metadata"]
    ops[0]["value"] = created["metadata"]["resourceVersion"]
    assert json_patch()["metadata"]["finalizers"] == ["x/y"]


def test_status_subresource_isolation_and_generation(custom: k8s.CustomObjectsApi) -> None:
    create(custom, widget("w1"))
    main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": 3}, "status": {"phase": "Sneaky"}}
    )
    assert main["spec"]["replicas"] == 3 and "status" not in main
    assert main["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": 7}, "status": {"phase": "Ready"}}
    )
    assert status["spec"]["replicas"] == 3 and status["status"] == {"phase": "Ready"}
    assert status["metadata"]["generation"] == 2  # status writes never bump the generation
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 2 and labelled["status"] == {"phase": "Ready"}
    with pytest.raises(k8s.ApiException) as exc:
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}},
        )
    assert status_of(exc)["details"]["causes"][0]["field"] == "status.conditions[0].status"


def test_noop_patch_keeps_resource_version(custom: k8s.CustomObjectsApi) -> None:
    created = create(custom, widget("w1"))
    same = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": 1}}
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_generate_name_gives_distinct_names(core: k8s.CoreV1Api) -> None:
    names = set()
    for _ in range(5):
        event = core.create_namespaced_event(
            "default",
            k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name="kopf-event-"),
                involved_object=k8s.V1ObjectReference(kind="Widget", name="w1", namespace="default"),
                reason="Testing",
                message="hello",
                type="Normal",
            ),
        )
        assert event.metadata.name.startswith("kopf-event-") and len(event.metadata.name) == 16
        names.add(event.metadata.name)
    assert len(names) == 5
    assert len(core.list_namespaced_event("default").items) == 5


def test_events_k8s_io_events_are_creatable(api: k8s.ApiClient) -> None:
    events = k8s.EventsV1Api(api)
    created = events.create_namespaced_event(
        "default",
        k8s.EventsV1Event(
            metadata=k8s.V1ObjectMeta(generate_name="swarm-"),
            event_time="2026-01-01T00:00:00.000000Z",
            reporting_controller="test",
            reporting_instance="test-1",
            action="Testing",
            reason="Tested",
            regarding=k8s.V1ObjectReference(kind="Widget", name="w1", namespace="default"),
            type="Normal",
        ),
    )
    assert created.metadata.name.startswith("swarm-")
    assert [e.metadata.name for e in events.list_namespaced_event("default").items] == [created.metadata.name]


def test_secrets_and_configmaps(core: k8s.CoreV1Api) -> None:
    core.create_namespaced_secret(
        "default", k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="e2b"), string_data={"apiKey": "e2b_123"})
    )
    secret = core.read_namespaced_secret("e2b", "default")
    assert base64.b64decode(secret.data["apiKey"]) == b"e2b_123" and secret.type == "Opaque"
    core.create_namespaced_config_map(
        "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cfg"), data={"a": "1"})
    )
    assert core.read_namespaced_config_map("cfg", "default").data == {"a": "1"}
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespaced_secret("missing", "default")
    assert exc.value.status == 404 and status_of(exc)["reason"] == "NotFound"


def test_dry_run_validates_but_does_not_store(custom: k8s.CustomObjectsApi) -> None:
    dry = create(custom, widget("w1"), dry_run="All")
    assert dry["spec"]["replicas"] == 1
    with pytest.raises(k8s.ApiException) as exc:
        get(custom, "w1")
    assert exc.value.status == 404
    with pytest.raises(k8s.ApiException) as exc:
        create(custom, widget("w1", replicas=0), dry_run="All")
    assert exc.value.status == 422
    create(custom, widget("w1"))
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": 9}}, dry_run="All"
    )
    assert patched["spec"]["replicas"] == 9 and get(custom, "w1")["spec"]["replicas"] == 1


def test_namespaces_must_exist(core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi) -> None:
    assert {"default", "kube-system"} <= {ns.metadata.name for ns in core.list_namespace().items}
    with pytest.raises(k8s.ApiException) as exc:
        create(custom, widget("w1"), namespace="nowhere")
    assert exc.value.status == 404 and status_of(exc)["message"] == 'namespaces "nowhere" not found'
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="team")))
    create(custom, widget("w1"), namespace="team")
    core.delete_namespace("team")  # cascades to the namespace's content, then goes itself
    with pytest.raises(k8s.ApiException):
        core.read_namespace("team")
    assert custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"] == []


def test_finalizers_hold_deletion(custom: k8s.CustomObjectsApi) -> None:
    create(custom, {**widget("w1"), "metadata": {"name": "w1", "finalizers": ["test/hold"]}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    held = get(custom, "w1")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["test/hold"]
    with pytest.raises(k8s.ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"finalizers": ["test/hold", "test/new"]}}
        )
    assert exc.value.status == 422
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(k8s.ApiException) as exc:
        get(custom, "w1")
    assert exc.value.status == 404


def test_label_and_field_selectors_on_list(custom: k8s.CustomObjectsApi) -> None:
    for name, team in [("a", "red"), ("b", "blue"), ("c", "red")]:
        create(custom, {**widget(name), "metadata": {"name": name, "labels": {"team": team}}})

    def names(**kwargs: str) -> list[str]:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **kwargs)
        return [item["metadata"]["name"] for item in listing["items"]]

    assert names(label_selector="team=red") == ["a", "c"]
    assert names(label_selector="team!=red") == ["b"]
    assert names(label_selector="team in (blue,green)") == ["b"]
    assert names(label_selector="!team") == []
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.namespace=default,metadata.name!=a", label_selector="team") == [
        "b",
        "c",
    ]
    with pytest.raises(k8s.ApiException) as exc:
        names(field_selector="spec.size=1Gi")
    assert exc.value.status == 400


def test_watch_from_resource_version_with_selector_and_timeout(custom: k8s.CustomObjectsApi) -> None:
    create(custom, {**widget("old"), "metadata": {"name": "old", "labels": {"watched": "yes"}}})
    since = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"][
        "resourceVersion"
    ]
    create(custom, {**widget("new"), "metadata": {"name": "new", "labels": {"watched": "yes"}}})
    create(custom, widget("ignored"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "new", {"spec": {"replicas": 2}})
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "old", {"metadata": {"labels": {"watched": None}}}
    )

    def live_changes() -> None:
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "new")

    seen = []
    timer = threading.Timer(0.3, live_changes)
    timer.start()
    try:
        stream = kubernetes.watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=since,
            label_selector="watched=yes",
            timeout_seconds=2,
        )
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
    finally:
        timer.join()
    # "old" left the selection by losing its label: a watcher sees that as DELETED.
    assert seen == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old"), ("DELETED", "new")]


def test_watch_from_a_compacted_resource_version_is_gone(
    kube_emulator: ThreadedKubeEmulator, api: k8s.ApiClient, custom: k8s.CustomObjectsApi
) -> None:
    kube_emulator.call(setattr, kube_emulator.emulator, "history_limit", 2)
    first = create(custom, widget("w1"))
    for replicas in (2, 3, 4):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": replicas}}
        )
    method, url, headers, body, _ = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
        query_params=[("watch", "true"), ("resourceVersion", first["metadata"]["resourceVersion"])],
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, _request_timeout=10)
    lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert lines[0]["type"] == "ERROR" and lines[0]["object"]["code"] == 410


def test_crd_posted_at_runtime_becomes_servable(api: k8s.ApiClient, custom: k8s.CustomObjectsApi) -> None:
    crds = k8s.ApiextensionsV1Api(api)
    crds.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.runtime.example.com"},
            "spec": {
                "group": "runtime.example.com",
                "scope": "Cluster",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [
                    {
                        "name": "v1beta1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"colour": {"type": "string", "default": "red"}},
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    crd = crds.read_custom_resource_definition("gadgets.runtime.example.com")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    gadget = custom.create_cluster_custom_object(
        "runtime.example.com",
        "v1beta1",
        "gadgets",
        {
            "apiVersion": "runtime.example.com/v1beta1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {},
        },
    )
    assert gadget["spec"] == {"colour": "red"}
    crds.delete_custom_resource_definition("gadgets.runtime.example.com")
    with pytest.raises(k8s.ApiException) as exc:
        custom.list_cluster_custom_object("runtime.example.com", "v1beta1", "gadgets")
    assert exc.value.status == 404


def test_counters_and_a_bounded_request_log(
    kube_emulator: ThreadedKubeEmulator, custom: k8s.CustomObjectsApi
) -> None:
    create(custom, widget("w1"))
    for replicas in range(2, 10):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"replicas": replicas}}
        )
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "w1", {"status": {"phase": str(replicas)}}
        )
    for _ in range(500):
        get(custom, "w1")
    counter = kube_emulator.emulator.counter
    resource = f"{PLURAL}.{GROUP}"
    assert counter.count("create", resource) == 1
    assert counter.count("patch", resource, subresources=False) == 8
    assert counter.count("patch", f"{resource}/status") == 8
    assert counter.writes(resource) == 17
    assert counter.count("get", resource) == 500
    assert len(kube_emulator.emulator._requests) <= 2 * kube_emulator.emulator.request_log_limit


def test_watch_initial_events_end_with_a_bookmark(api: k8s.ApiClient, custom: k8s.CustomObjectsApi) -> None:
    create(custom, widget("w1"))
    method, url, headers, _, _ = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
        query_params=[
            ("watch", "true"),
            ("sendInitialEvents", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("timeoutSeconds", "1"),
        ],
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, _request_timeout=10)
    events = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert [event["type"] for event in events[:2]] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
