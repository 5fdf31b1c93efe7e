"""Label and field selectors, parsed once per request and matched per object.

The grammar is the API server's: a comma-separated conjunction of requirements. Labels support
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``; fields support
``path=v``, ``path==v`` and ``path!=v`` over dotted paths such as ``metadata.name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from swarm_testbed.kube._errors import bad_request

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_OP_RE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside ``( … )``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in (p.strip() for p in parts) if part]


def _always(_: Mapping[str, Any]) -> bool:
    return True


def parse_label_selector(selector: str | None) -> Matcher:
    if not selector:
        return _always
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split(selector):
        if match := _OP_RE.match(part):
            key, op, value = match.groups()
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif match := _SET_RE.match(part):
            negated, key, op, values = match.groups()
            if op is not None and negated:
                raise bad_request(f"unable to parse requirement: {part!r}")
            if op is None:
                tests.append(
                    (lambda labels, k=key: k not in labels)
                    if negated
                    else (lambda labels, k=key: k in labels)
                )
            else:
                choices = frozenset(v.strip() for v in values.split(",") if v.strip())
                if op == "in":
                    tests.append(lambda labels, k=key, c=choices: labels.get(k) in c)
                else:
                    tests.append(lambda labels, k=key, c=choices: labels.get(k) not in c)
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(key)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(selector: str | None, *, allowed: Callable[[str], bool]) -> Matcher:
    """Parse a field selector; ``allowed`` says which paths this resource supports (400 otherwise)."""
    if not selector:
        return _always
    tests: list[Matcher] = []
    for part in _split(selector):
        match = _OP_RE.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part!r}")
        path, op, value = match.groups()
        if not allowed(path):
            raise bad_request(f"field label not supported: {path}")
        if op == "!=":
            tests.append(lambda obj, p=path, v=value: _field(obj, p) != v)
        else:
            tests.append(lambda obj, p=path, v=value: _field(obj, p) == v)

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(test(obj) for test in tests)

    return matches
