"""A Kubernetes API emulator realistic enough for kopf, the kubernetes client and kubectl.

kmock's :class:`kmock.KubernetesEmulator` serves discovery and keeps objects, but treats them as plain
JSON: no resourceVersion (kopf's finalizer JSON-patch ``test`` then fails and kopf retries forever), 200
on create (the kubernetes client wants 201), no generateName, status writable through the main
resource, selectors and watch parameters ignored, no schema. This subclass keeps kmock's discovery,
error rendering, server and DSL (a test may still say ``emu['patch', ...] << 500`` to inject a
fault), and serves every request for a known resource with API-server semantics of its own:

* metadata the server owns: ``uid``, ``resourceVersion`` (one counter for the whole server),
  ``generation`` (bumped only when something other than metadata and status changes),
  ``creationTimestamp``, ``generateName``;
* optimistic concurrency (409 on a stale resourceVersion, 422 on a failed JSON-patch ``test``);
* the status subresource's isolation, dry runs, PUT, namespaces that must exist, deletion through
  finalizers (``deletionTimestamp`` first, gone when the last finalizer goes);
* CRDs — loaded from YAML at start or POSTed at runtime — with pruning, defaulting and validation;
* list and watch with label and field selectors, watch from a resourceVersion (410 when it is too
  old), ``timeoutSeconds``, bookmarks, kubectl's Table output.

Every mutation is a synchronous step on the event loop, so a watch can register itself and read the
backlog it owes atomically with respect to writes, without locks.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps as _kmock_apps
from kmock._internal.parsing import ParsedPath, guess_k8s

from swarm_testbed.kube._counters import RequestCounter
from swarm_testbed.kube._errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    gone,
    invalid,
    method_not_allowed,
    namespace_not_found,
    not_found,
    resource_not_found,
)
from swarm_testbed.kube._patching import PatchTestFailed, apply_patch
from swarm_testbed.kube._schema import StructuralSchema
from swarm_testbed.kube._selectors import parse_field_selector, parse_label_selector
from swarm_testbed.kube._tables import render_table, wants_table

StoreKey = tuple[str, str]  # (group, plural): all served versions share one store, as in etcd
ObjectKey = tuple[str | None, str]  # (namespace, name)

_ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
_CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_NAMESPACES: StoreKey = ("", "namespaces")
_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no look-alikes


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _parse_path(path: str) -> ParsedPath:
    """Split a Kubernetes API path into group, version, namespace, plural, name and subresource."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ParsedPath(group=parts[1])
    else:
        return ParsedPath()
    namespace: str | None = None
    if (
        rest
        and rest[0] == "namespaces"
        and len(rest) >= 3
        and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    return ParsedPath(
        group=group,
        version=version,
        namespace=namespace,
        plural=rest[0] if rest else None,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


async def _parse_request(raw_request: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    body = await raw_request.read()
    text = body.decode("utf-8", errors="replace")
    data: Any = None
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    parsed = _parse_path(raw_request.path)
    resource = (
        None
        if parsed.group is None
        else kmock.resource(group=parsed.group, version=parsed.version, plural=parsed.plural)
    )
    query = dict(raw_request.query)
    return kmock.Request(
        id=id,
        raw_request=raw_request,
        url=raw_request.url,
        method=raw_request.method,
        params=query,
        headers=dict(raw_request.headers),
        cookies=dict(raw_request.cookies),
        data=data,
        body=body,
        text=text,
        action=guess_k8s(parsed, kmock.method(raw_request.method), query),
        resource=resource,
        namespace=parsed.namespace,
        name=parsed.name,
        subresource=parsed.subresource,
    )


@attrs.frozen
class _CrdVersion:
    kind: str
    schema: StructuralSchema | None
    printer_columns: tuple[Mapping[str, Any], ...]
    selectable_fields: frozenset[str]


@attrs.frozen
class _Event:
    rv: int
    type: str
    obj: Mapping[str, Any]
    old: Mapping[str, Any] | None


class _Watch:
    """One open watch stream: its filter and the queue the writers feed."""

    def __init__(self, namespace: str | None, label: Any, field: Any) -> None:
        self.namespace = namespace
        self.label = label
        self.field = field
        self.queue: asyncio.Queue[_Event | None] = asyncio.Queue()

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return bool(self.label(obj) and self.field(obj))

    def translate(self, event: _Event) -> str | None:
        """The event type this watcher must see (objects entering/leaving its selection too)."""
        now, before = self.matches(event.obj), self.matches(event.old)
        if event.type == "MODIFIED":
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            if before:
                return "DELETED"
            return None
        return event.type if now else None


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's semantics (see the module docstring).

    ``crd_dirs``: folders whose ``*.yaml``/``*.yml``/``*.json`` CRDs are served from the start
    (none by default: the test bed knows no product; its user passes the CRDs in).
    ``request_log_limit``: how many recent requests kmock keeps for DSL assertions.
    ``history_limit``: watch events kept per resource for watches resuming from a resourceVersion (older ones get 410 Gone, as after etcd compaction).
    """

    crd_dirs: Sequence[Path] = ()
    request_log_limit: int = 200
    history_limit: int = 5000

    counter: RequestCounter = attrs.field(factory=RequestCounter, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _store: dict[StoreKey, dict[ObjectKey, dict[str, Any]]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False
    )
    _history: dict[StoreKey, collections.deque[_Event]] = attrs.field(factory=dict, init=False)
    _compacted: dict[StoreKey, int] = attrs.field(factory=dict, init=False)
    _watches: dict[StoreKey, set[_Watch]] = attrs.field(
        factory=lambda: collections.defaultdict(set), init=False
    )
    _crd_versions: dict[tuple[str, str, str], _CrdVersion] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for name in _INITIAL_NAMESPACES:
            self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        for directory in self.crd_dirs:
            self.load_crds(Path(directory))

    # ---------------------------------------------------------------------------------------------
    # Public helpers for tests and tools (call them on the emulator's own event loop thread).
    # ---------------------------------------------------------------------------------------------
    def load_crds(self, path: Path) -> list[str]:
        """Create every CRD in a file or a folder of YAML/JSON files; return their names."""
        files = (
            sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            if path.is_dir()
            else [path]
        )
        names: list[str] = []
        for file in files:
            for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    names.append(self.create_object(doc)["metadata"]["name"])
        return names

    def create_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object as a POST would (same defaulting/validation); return it as stored."""
        resource = self._resource_for(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        namespace = body.get("metadata", {}).get("namespace")
        info = self.resources[resource]
        if info.namespaced and not namespace:
            namespace = "default"
        return self._create(
            resource, namespace if info.namespaced else None, copy.deepcopy(dict(body)), dry_run=False
        )

    def get_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (``resource`` like ``"v1/secrets"`` or ``"group/version/plural"``)."""
        res = kmock.resource(resource)
        obj = self._store.get((res.group or "", res.plural or ""), {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of a resource, optionally of one namespace, sorted by namespace and name."""
        res = kmock.resource(resource)
        items = list(self._store.get((res.group or "", res.plural or ""), {}).items())
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(items, key=lambda kv: (kv[0][0] or "", kv[0][1]))
            if namespace is None or ns == namespace
        ]

    @property
    def resource_version(self) -> int:
        """The last resourceVersion handed out (one counter for all resources, as in etcd)."""
        return self._rv

    def close_watches(self) -> None:
        """End every open watch stream (so a server can stop without waiting for them)."""
        self._closing = True
        for watches in self._watches.values():
            for watch in watches:
                watch.queue.put_nowait(None)

    # ---------------------------------------------------------------------------------------------
    # Request parsing and routing.
    # ---------------------------------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Parse with a path parser that knows ``/api/v1/namespaces[/name[/status]]``, then serve.

        kmock reads ``/api/v1/namespaces`` as "a namespace prefix without a namespace" and fails, and
        ``/api/v1/namespaces/x`` as "namespace x, no resource"; kopf and kubectl use both.
        """
        if raw_request.path.startswith("/openapi/v3"):
            return self._openapi_v3(raw_request.path)
        try:
            request = await _parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            return await self._handle(request)
        except Exception as exc:  # a fault of the emulator itself: report it like kmock does
            if self._errors:
                self._errors[-1].append(exc)
            return await self._render_error(exc)

    def _openapi_v3(self, path: str) -> aiohttp.web.Response:
        """The OpenAPI v3 documents of the served CRDs, which ``kubectl explain`` reads.

        ``/openapi/v3`` lists one document per group/version; each document holds the CRD's
        ``openAPIV3Schema`` under the API server's schema name (``io.claudeswarm.v1alpha1.Kind``),
        tagged with its group/version/kind so kubectl can find it. Built-in kinds are not described.
        """
        docs: dict[str, dict[str, Any]] = {}
        for (group, version, plural), crd in self._crd_versions.items():
            if crd.schema is None:
                continue
            schema = dict(crd.schema.schema)
            schema["x-kubernetes-group-version-kind"] = [
                {"group": group, "version": version, "kind": crd.kind}
            ]
            prefix = ".".join(reversed(group.split("."))) if group else "core"
            doc = docs.setdefault(
                f"apis/{group}/{version}",
                {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": "emulated"},
                    "paths": {},
                    "components": {"schemas": {}},
                },
            )
            doc["components"]["schemas"][f"{prefix}.{version}.{crd.kind}"] = schema
            # kubectl finds the kind through the resource's GET operation (both scopes are tried).
            gvk = {"group": group, "version": version, "kind": crd.kind}
            resource = kmock.resource(group, version, plural)
            info = self.resources.get(resource) if resource in self.resources else None
            scope = "namespaces/{namespace}/" if info is None or info.namespaced else ""
            doc["paths"][f"/apis/{group}/{version}/{scope}{plural}"] = {
                "get": {"x-kubernetes-group-version-kind": gvk}
            }
        rest = path[len("/openapi/v3") :].strip("/")
        if not rest:
            return self._json(
                {
                    "paths": {
                        key: {
                            "serverRelativeURL": f"/openapi/v3/{key}?hash={abs(hash(json.dumps(doc, sort_keys=True)))}"
                        }
                        for key, doc in docs.items()
                    }
                }
            )
        if rest in docs:
            return self._json(docs[rest])
        return self._json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": f"{path} not found",
            },
            status=404,
        )

    async def _serve_version(self, request: kmock.Request) -> Any:
        """kmock's resource list, spelt as the API server spells it.

        The core group's groupVersion is ``v1`` (kmock says ``/v1``), and subresources carry no short
        names or categories (kmock copies them, and kubectl then warns on every ``kubectl get wg``
        that ``wg`` "could also match lower priority resource widgets/status").
        """
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            if payload.get("groupVersion", "").startswith("/"):
                payload["groupVersion"] = payload["groupVersion"][1:]
            for entry in payload.get("resources", []):
                if "/" in entry.get("name", ""):
                    entry["shortNames"] = []
                    entry["categories"] = []
                    entry["verbs"] = ["get", "patch", "update"]
        return payload

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:  # type: ignore[override]
        self._trim_logs()
        resource = request.resource
        verb = self._verb(request)
        if resource is None or resource.plural is None:
            self.counter.record(request.method.value.lower(), request.url.path)
        else:
            label = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            if request.subresource:
                label += f"/{request.subresource}"
            self.counter.record(verb, label)

        user_response = await self._user_reaction(request)
        if user_response is not None:
            return user_response
        if resource is None or resource.plural is None:
            return await _kmock_apps.RawHandler._handle(self, request)
        try:
            if resource not in self.resources:
                raise resource_not_found()
            if verb == "watch":
                return await self._serve_watch_stream(request)
            return await self._serve(request, verb)
        except ApiError as exc:
            return exc.response()

    @staticmethod
    def _verb(request: kmock.Request) -> str:
        method = request.method.value
        if method == "GET":
            if _truthy(request.params.get("watch")):
                return "watch"
            return "get" if request.name else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if request.name else "deletecollection"
        return method.lower()

    async def _user_reaction(self, request: kmock.Request) -> aiohttp.web.StreamResponse | None:
        """Serve a reaction a test declared with kmock's DSL (anything but a fallback), if one matches."""
        candidates = [payload for payload in self._payloads if -float("inf") not in payload.priorities]
        candidates.sort(key=lambda payload: tuple(-p for p in payload.priorities))
        for payload in candidates:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except kmock.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    def _trim_logs(self) -> None:
        """Keep kmock's request logs short: it rescans them for every reaction on every request."""
        limit = self.request_log_limit
        if len(self._requests) > 2 * limit:
            del self._requests[:-limit]
            for payload in self._payloads:
                if len(payload._requests) > limit:
                    del payload._requests[:-limit]

    async def _serve(self, request: kmock.Request, verb: str) -> aiohttp.web.StreamResponse:
        resource = request.resource
        assert resource is not None
        info = self.resources[resource]
        if not info.namespaced and request.namespace is not None:
            raise resource_not_found()
        subresource = request.subresource
        if subresource is not None and (
            subresource not in info.subresources
            or subresource not in ("status",)
            or verb not in ("get", "update", "patch")
        ):
            raise resource_not_found()
        dry_run = request.params.get("dryRun") == "All"
        namespace = request.namespace if info.namespaced else None

        if verb == "get":
            obj = self._present(self._get(resource, namespace, request.name), resource)
            if wants_table(request.headers.get("Accept", "")):
                crd = self._crd(resource)
                listing = {"metadata": {"resourceVersion": str(self._rv)}, "items": [obj]}
                return self._json(
                    render_table(
                        listing,
                        crd.printer_columns if crd else (),
                        include_object=request.params.get("includeObject", "Metadata"),
                    )
                )
            return self._json(obj)
        if verb == "list":
            return self._json(self._list(request))
        if verb == "create":
            if request.name is not None:
                raise method_not_allowed("POST on a named object is not allowed")
            if info.namespaced and namespace is None:
                raise resource_not_found()
            body = self._body(request)
            created = self._create(resource, namespace, body, dry_run=dry_run)
            return self._json(self._present(created, resource), status=201)
        if verb in ("update", "patch"):
            assert request.name is not None
            old = self._get(resource, namespace, request.name)
            if verb == "patch":
                content_type = request.headers.get("Content-Type", "application/json")
                if request.data is None:
                    raise bad_request("the body of the request is not valid JSON")
                try:
                    new = apply_patch(copy.deepcopy(old), request.data, content_type)
                except PatchTestFailed as exc:
                    raise ApiError(422, "Invalid", str(exc)) from None
                if not isinstance(new, dict):
                    raise bad_request("the patch produced something other than an object")
            else:
                new = self._body(request)
                if new.get("metadata", {}).get("name") != request.name:
                    raise bad_request("the name of the object does not match the name on the URL")
            updated = self._update(
                resource, namespace, request.name, new, subresource=subresource, dry_run=dry_run
            )
            return self._json(self._present(updated, resource))
        if verb == "delete":
            assert request.name is not None
            options = request.data if isinstance(request.data, dict) else {}
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            deleted = self._delete(resource, namespace, request.name, options, dry_run=dry_run)
            return self._json(self._present(deleted, resource))
        if verb == "deletecollection":
            listing = self._list(request)
            for item in listing["items"]:
                meta = item["metadata"]
                self._delete(resource, meta.get("namespace"), meta["name"], {}, dry_run=dry_run)
            return self._json(listing)
        raise method_not_allowed(f"{request.method.value} is not supported here")

    @staticmethod
    def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=json.dumps(body).encode(), status=status, content_type="application/json"
        )

    @staticmethod
    def _body(request: kmock.Request) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise bad_request("the body of the request must be a JSON object")
        return copy.deepcopy(request.data)

    # ---------------------------------------------------------------------------------------------
    # Resources and CRDs.
    # ---------------------------------------------------------------------------------------------
    def _resource_for(self, api_version: str, kind: str) -> kmock.resource:
        group, _, version = api_version.rpartition("/")
        for res in self.resources:
            if res.group == group and res.version == version and self.resources[res].kind == kind:
                if res.plural and "/" not in res.plural:
                    return res
        raise bad_request(f"no resource is served for apiVersion={api_version!r} kind={kind!r}")

    @staticmethod
    def _key(resource: kmock.resource) -> StoreKey:
        return (resource.group or "", resource.plural or "")

    def _crd(self, resource: kmock.resource) -> _CrdVersion | None:
        return self._crd_versions.get((resource.group or "", resource.version or "", resource.plural or ""))

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        group, plural, kind = spec["group"], names["plural"], names["kind"]
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            res = kmock.resource(group, version["name"], plural)
            self.resources[res] = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=kind,
                singular=names.get("singular", kind.lower()),
                verbs=set(_ALL_VERBS),
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources=set((version.get("subresources") or {}).keys()),
            )
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self._crd_versions[group, version["name"], plural] = _CrdVersion(
                kind=kind,
                schema=StructuralSchema(schema) if schema else None,
                printer_columns=tuple(version.get("additionalPrinterColumns", [])),
                selectable_fields=frozenset(
                    field["jsonPath"].lstrip(".") for field in version.get("selectableFields", [])
                ),
            )

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        group, plural = spec["group"], spec["names"]["plural"]
        for version in spec.get("versions", []):
            res = kmock.resource(group, version["name"], plural)
            if res in self.resources:
                del self.resources[res]
            self._crd_versions.pop((group, version["name"], plural), None)
        for namespace, name in list(self._store.get((group, plural), {})):
            self._remove((group, plural), (namespace, name))

    # ---------------------------------------------------------------------------------------------
    # Reading.
    # ---------------------------------------------------------------------------------------------
    def _get(self, resource: kmock.resource, namespace: str | None, name: str | None) -> dict[str, Any]:
        obj = self._store.get(self._key(resource), {}).get((namespace, name or ""))
        if obj is None:
            raise not_found(resource.plural or "", resource.group or "", name or "")
        return obj

    def _present(self, obj: Mapping[str, Any], resource: kmock.resource) -> dict[str, Any]:
        """The object as this version's clients see it (all versions share one store)."""
        api_version = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        if obj.get("apiVersion") == api_version:
            return dict(obj)
        return {**obj, "apiVersion": api_version}

    def _field_allowed(self, resource: kmock.resource) -> Any:
        crd = self._crd(resource)

        def allowed(path: str) -> bool:
            if path in ("metadata.name", "metadata.namespace"):
                return True
            return crd is None or path in crd.selectable_fields

        return allowed

    def _list(self, request: kmock.Request) -> dict[str, Any]:
        resource = request.resource
        assert resource is not None
        info = self.resources[resource]
        label = parse_label_selector(request.params.get("labelSelector"))
        field = parse_field_selector(
            request.params.get("fieldSelector"), allowed=self._field_allowed(resource)
        )
        namespace = request.namespace if info.namespaced else None
        items = [
            self._present(obj, resource)
            for (ns, _), obj in sorted(
                self._store.get(self._key(resource), {}).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
            )
            if (namespace is None or ns == namespace) and label(obj) and field(obj)
        ]
        api_version = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        listing = {
            "kind": f"{info.kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }
        if wants_table(request.headers.get("Accept", "")):
            crd = self._crd(resource)
            return render_table(
                listing,
                crd.printer_columns if crd else (),
                include_object=request.params.get("includeObject", "Metadata"),
            )
        return listing

    # ---------------------------------------------------------------------------------------------
    # Writing.
    # ---------------------------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, key: StoreKey, type_: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        event = _Event(int(obj["metadata"]["resourceVersion"]), type_, obj, old)
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = collections.deque()
        history.append(event)
        while len(history) > self.history_limit:
            self._compacted[key] = history.popleft().rv
        for watch in self._watches.get(key, ()):
            watch.queue.put_nowait(event)

    def _namespace_check(self, namespace: str | None) -> None:
        if namespace is None:
            return
        ns = self._store[_NAMESPACES].get((None, namespace))
        if ns is None:
            raise namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                details={"name": namespace, "kind": "namespaces"},
            )

    def _validate(self, resource: kmock.resource, obj: dict[str, Any], *, creating: bool) -> None:
        """Name rules and, for custom resources, prune → default → validate (422 with causes)."""
        meta = obj["metadata"]
        name = meta.get("name", "")
        kind = str(obj.get("kind") or self.resources[resource].kind)
        causes: list[Cause] = []
        if creating and (len(name) > 253 or not _NAME_RE.match(name)):
            causes.append(
                Cause(
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                    "lower case alphanumeric characters, '-' or '.', and must start and end "
                    "with an alphanumeric character",
                )
            )
        crd = self._crd(resource)
        if crd is not None and crd.schema is not None:
            crd.schema.prune(obj)
            crd.schema.default(obj)
            causes.extend(crd.schema.validate(obj))
        if causes:
            raise invalid(kind, resource.group or "", name, causes)

    @staticmethod
    def _prepare_kind(resource: kmock.resource, obj: dict[str, Any]) -> None:
        """Per-kind server behaviour on every write."""
        if resource.group == "" and resource.plural == "secrets":
            import base64

            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = dict(obj.get("data") or {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        if resource.group == "" and resource.plural == "namespaces":
            status = obj.setdefault("status", {})
            status["phase"] = "Terminating" if obj["metadata"].get("deletionTimestamp") else "Active"

    def _tracks_generation(self, resource: kmock.resource, obj: Mapping[str, Any]) -> bool:
        return self._crd(resource) is not None or "spec" in obj

    def _create(
        self,
        resource: kmock.resource,
        namespace: str | None,
        body: dict[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        info = self.resources[resource]
        key = self._key(resource)
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            meta = body["metadata"] = {}
        body.setdefault(
            "apiVersion", f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        )
        body.setdefault("kind", info.kind)
        if info.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            self._namespace_check(namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    str(body.get("kind")),
                    resource.group or "",
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            for _ in range(100):
                candidate = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
                if (namespace, candidate) not in self._store[key]:
                    meta["name"] = candidate
                    break
        name = meta["name"]
        if (namespace, name) in self._store[key]:
            raise already_exists(resource.plural or "", resource.group or "", name)
        if "status" in info.subresources and resource != _CRDS:
            body.pop("status", None)
        for field in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "uid",
            "managedFields",
            "selfLink",
        ):
            meta.pop(field, None)
        self._prepare_kind(resource, body)
        self._validate(resource, body, creating=True)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if self._tracks_generation(resource, body):
            meta["generation"] = 1
        if resource == _CRDS:
            self._crd_prepare(body)
        if dry_run:
            return body
        meta["resourceVersion"] = self._next_rv()
        self._store[key][namespace, name] = body
        if resource == _CRDS:
            self._register_crd(body)
        self._emit(key, "ADDED", body, None)
        return body

    @staticmethod
    def _crd_prepare(crd: dict[str, Any]) -> None:
        """Accept a CRD at once: Established and NamesAccepted, as `kubectl wait` expects."""
        spec = crd.get("spec") or {}
        if not spec.get("group") or not (spec.get("names") or {}).get("plural"):
            raise invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                crd["metadata"].get("name", ""),
                [Cause("spec", "FieldValueRequired", "Required value: group and names.plural")],
            )
        now = _now()
        crd["status"] = {
            "acceptedNames": dict(spec["names"]),
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
        }

    def _update(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        info = self.resources[resource]
        key = self._key(resource)
        old = self._get(resource, namespace, name)
        old_meta = old["metadata"]
        new_meta = new.get("metadata")
        if not isinstance(new_meta, dict):
            new_meta = new["metadata"] = {}
        wanted_rv = new_meta.get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != old_meta["resourceVersion"]:
            raise conflict(resource.plural or "", resource.group or "", name)

        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            new_meta = new["metadata"]
        elif "status" in info.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)

        # Fields the server owns are not the client's to change.
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ):
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(
                    old["kind"],
                    resource.group or "",
                    name,
                    [
                        Cause(
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        if not new_meta.get("finalizers"):
            new_meta.pop("finalizers", None)
        self._prepare_kind(resource, new)
        self._validate(resource, new, creating=False)
        if resource == _CRDS:
            self._crd_prepare(new)

        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        if "generation" in old_meta and self._spec_changed(old, new, "status" in info.subresources):
            new_meta["generation"] = old_meta["generation"] + 1
        if dry_run:
            return new
        new_meta["resourceVersion"] = self._next_rv()
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._remove(key, (namespace, name), final=new)
            return new
        self._store[key][namespace, name] = new
        if resource == _CRDS:
            self._register_crd(new)
        self._emit(key, "MODIFIED", new, old)
        return new

    @staticmethod
    def _spec_changed(old: Mapping[str, Any], new: Mapping[str, Any], status_isolated: bool) -> bool:
        ignored = {"metadata", "status"} if status_isolated else {"metadata"}
        strip = lambda obj: {k: v for k, v in obj.items() if k not in ignored}  # noqa: E731
        return strip(old) != strip(new)

    def _delete(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        key = self._key(resource)
        old = self._get(resource, namespace, name)
        meta = old["metadata"]
        preconditions = options.get("preconditions") or {}
        if (preconditions.get("uid") and preconditions["uid"] != meta["uid"]) or (
            preconditions.get("resourceVersion")
            and str(preconditions["resourceVersion"]) != meta["resourceVersion"]
        ):
            raise conflict(resource.plural or "", resource.group or "", name)
        if dry_run:
            return old
        if meta.get("deletionTimestamp"):
            return old
        if resource.group == "" and resource.plural == "namespaces":
            return self._delete_namespace(name)
        if not meta.get("finalizers"):
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = self._next_rv()
            self._remove(key, (namespace, name), final=final)
            return final
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = _now()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        if "generation" in meta:
            new["metadata"]["generation"] = meta["generation"] + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._store[key][namespace, name] = new
        self._emit(key, "MODIFIED", new, old)
        return new

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        """Mark the namespace Terminating and delete its content; it goes when it is empty."""
        old = self._store[_NAMESPACES][None, name]
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = _now()
        self._prepare_kind(kmock.resource("", "v1", "namespaces"), new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._store[_NAMESPACES][None, name] = new
        self._emit(_NAMESPACES, "MODIFIED", new, old)
        for key, objects in list(self._store.items()):
            for (namespace, obj_name), obj in list(objects.items()):
                if namespace != name or obj["metadata"].get("deletionTimestamp"):
                    continue
                if (namespace, obj_name) not in self._store[key]:
                    continue  # removed meanwhile
                group, plural = key
                version = obj["apiVersion"].rpartition("/")[2]
                self._delete(kmock.resource(group, version, plural), namespace, obj_name, {}, dry_run=False)
        self._finish_namespace(name)
        return self._store[_NAMESPACES].get((None, name), new)

    def _finish_namespace(self, name: str | None) -> None:
        ns = self._store[_NAMESPACES].get((None, name or ""))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if any(namespace == name for objects in self._store.values() for (namespace, _) in objects):
            return
        final = copy.deepcopy(ns)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._remove(_NAMESPACES, (None, name or ""), final=final)

    def _remove(self, key: StoreKey, obj_key: ObjectKey, *, final: dict[str, Any] | None = None) -> None:
        old = self._store[key].pop(obj_key)
        if final is None:
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = self._next_rv()
        if key == self._key(_CRDS):
            self._unregister_crd(old)
        self._emit(key, "DELETED", final, old)
        if obj_key[0] is not None:
            self._finish_namespace(obj_key[0])

    # ---------------------------------------------------------------------------------------------
    # Watching.
    # ---------------------------------------------------------------------------------------------
    async def _serve_watch_stream(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        assert resource is not None and request._raw_request is not None
        info = self.resources[resource]
        key = self._key(resource)
        params = request.params
        selector = params.get("fieldSelector") or ""
        if request.name:  # GET …/name?watch=true watches that one object
            selector = ",".join(filter(None, [selector, f"metadata.name={request.name}"]))
        watch = _Watch(
            namespace=request.namespace if info.namespaced else None,
            label=parse_label_selector(params.get("labelSelector")),
            field=parse_field_selector(selector, allowed=self._field_allowed(resource)),
        )
        bookmarks = _truthy(params.get("allowWatchBookmarks"))
        initial_events = _truthy(params.get("sendInitialEvents"))
        timeout = params.get("timeoutSeconds")
        since = params.get("resourceVersion")

        # Decide what is owed before the stream, in one synchronous step with the registration.
        backlog: list[tuple[str, Mapping[str, Any]]] = []
        error: ApiError | None = None
        if since in (None, "", "0") or initial_events:
            backlog = [("ADDED", obj) for obj in self._store.get(key, {}).values() if watch.matches(obj)]
        else:
            try:
                since_rv = int(since)
            except ValueError:
                raise bad_request(f"invalid resourceVersion: {since!r}") from None
            if since_rv < self._compacted.get(key, 0):
                error = gone(f"too old resource version: {since_rv} ({self._compacted[key]})")
            else:
                for event in self._history.get(key, ()):
                    if event.rv > since_rv and (seen := watch.translate(event)):
                        backlog.append((seen, event.obj))
        if error is None and not self._closing:
            self._watches[key].add(watch)

        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request._raw_request)
        try:
            if error is not None:
                await self._write_event(response, "ERROR", error.status(), resource)
                return response
            for type_, obj in backlog:
                await self._write_event(response, type_, obj, resource)
            if initial_events and bookmarks:
                await self._write_bookmark(response, resource, initial_end=True)
            deadline = (asyncio.get_running_loop().time() + float(timeout)) if timeout else None
            async for event in self._events(watch, deadline):
                if (seen := watch.translate(event)) is not None:
                    await self._write_event(response, seen, event.obj, resource)
            if bookmarks and not self._closing:
                await self._write_bookmark(response, resource, initial_end=False)
        except (ConnectionResetError, asyncio.CancelledError):
            self._watches[key].discard(watch)
            raise
        finally:
            self._watches[key].discard(watch)
        await response.write_eof()
        return response

    async def _events(self, watch: _Watch, deadline: float | None) -> AsyncIterator[_Event]:
        loop = asyncio.get_running_loop()
        while not self._closing:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                event = await asyncio.wait_for(watch.queue.get(), remaining)
            except TimeoutError:
                return
            if event is None:
                return
            yield event

    async def _write_event(
        self,
        response: aiohttp.web.StreamResponse,
        type_: str,
        obj: Mapping[str, Any],
        resource: kmock.resource,
    ) -> None:
        body = obj if type_ == "ERROR" else self._present(obj, resource)
        await response.write(json.dumps({"type": type_, "object": body}).encode() + b"\n")

    async def _write_bookmark(
        self, response: aiohttp.web.StreamResponse, resource: kmock.resource, *, initial_end: bool
    ) -> None:
        info = self.resources[resource]
        api_version = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        bookmark = {"apiVersion": api_version, "kind": info.kind, "metadata": meta}
        await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
