"""The three patch flavours clients send: JSON merge patch, strategic merge patch, JSON patch.

kopf patches with merge patches and guards finalizer changes with a JSON-patch ``test`` of
``/metadata/resourceVersion``; kubectl sends strategic merge patches for built-in kinds and merge
patches for custom resources. A failed ``test`` must come back as 422, which kopf reads as "someone
changed the object in between, retry on the next event" — any other code makes it retry forever.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from swarm_testbed.kube._errors import ApiError, unsupported_media_type


class PatchTestFailed(Exception):
    """A JSON-patch ``test`` operation saw a different value (the caller turns it into 422)."""


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386, plus ignoring ``$directives`` in the strategic flavour (lists are replaced whole).

    The real strategic merge merges lists by their patch merge keys; no client in this project relies
    on that, and replacing a list is what the merge flavour does anyway.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _invalid_patch(f"invalid JSON pointer: {pointer!r}")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _invalid_patch(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _container(doc: Any, tokens: list[str], pointer: str) -> tuple[Any, str]:
    """Walk to the parent of the pointed location; return it with the last token."""
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _invalid_patch(f"doc is missing path: {pointer!r}")
    return node, tokens[-1]


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _tokens(pointer):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _invalid_patch(f"doc is missing path: {pointer!r}")
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent, last = _container(doc, tokens, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _invalid_patch(f"index out of range in path: {pointer!r}")
    else:
        raise _invalid_patch(f"doc is missing path: {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _tokens(pointer)
    if not tokens:
        raise _invalid_patch("cannot remove the whole document")
    parent, last = _container(doc, tokens, pointer)
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise _invalid_patch(f"unable to remove nonexistent key: {pointer!r}")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a deep copy; raises :class:`PatchTestFailed` on a failed ``test``."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise ApiError(400, "BadRequest", f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "test":
            try:
                actual = _get(doc, path)
            except ApiError:
                raise PatchTestFailed(f"testing value {path} failed: missing value") from None
            if actual != operation.get("value"):
                raise PatchTestFailed(f"testing value {path} failed: test failed")
        elif op == "add":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            doc, value = _remove(doc, operation["from"])
            doc = _add(doc, path, value)
        elif op == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, operation["from"])))
        else:
            raise ApiError(400, "BadRequest", f"unexpected JSON patch operation: {op!r}")
    return doc


def apply_patch(target: Mapping[str, Any], patch: Any, content_type: str) -> Any:
    """Dispatch on the request's Content-Type, as the API server does."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json-patch+json":
        return json_patch(target, patch)
    if kind == "application/merge-patch+json":
        if not isinstance(patch, Mapping):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return merge_patch(target, patch)
    if kind == "application/strategic-merge-patch+json":
        if not isinstance(patch, Mapping):
            raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
        return merge_patch(target, patch, strategic=True)
    raise unsupported_media_type(content_type)
