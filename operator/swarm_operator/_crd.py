"""Generate the SwarmSandbox CRD from the pydantic models in :mod:`swarm_operator.model`.

Pydantic's JSON Schema is close to what Kubernetes wants, but not a *structural* schema: it uses
``$ref``/``$defs``, ``anyOf: [X, null]`` for optionals, ``title`` everywhere, ``additionalProperties:
false`` for closed models and ``default: null``. :func:`structural` rewrites it: refs inlined, null
unions collapsed to the non-null branch (Kubernetes' "absent" is our ``None``), titles dropped,
field-level keywords (description, defaults, CEL rules) laid over the referenced model's.

Run ``python -m swarm_operator._crd`` to rewrite ``crds/swarmsandbox.yaml``, the package and chart copies;
``--check`` exits non-zero when they are stale (CI and a unit test both check).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml

from swarm_operator import model
from swarm_operator.names import GROUP, KIND, PLURAL, SINGULAR, VERSION

__all__ = [
    "CEL_MIRRORS",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "apply_defaults",
    "crd",
    "extension_violations",
    "package_path",
    "render",
    "structural",
]


# Keywords that carry over from pydantic's output unchanged; anything else is a bug to look at.
_KEPT: Final = frozenset(
    {
        "type",
        "format",
        "description",
        "default",
        "enum",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite one pydantic JSON Schema node (and below) as a Kubernetes structural schema node."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = dict(schema)
    node.pop("$defs", None)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[1]]
        node = {**target, **node}  # the field's own description/default/rules win over the model's.
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {branches}")
        node = {**structural(branches[0], defs), **node}
        if node.get("default", ...) is None:
            del node["default"]
    if "allOf" in node:
        (only,) = node.pop("allOf")
        node = {**structural(only, defs), **node}
    for key in ("title", "$defs"):
        node.pop(key, None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]  # Kubernetes prunes unknown fields instead, and forbids `false`.
    if node.get("required") == []:
        del node["required"]
    if "properties" in node:
        node["properties"] = {k: structural(v, defs) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(node["additionalProperties"], defs)
    if "items" in node:
        node["items"] = structural(node["items"], defs)
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    unknown = set(node) - _KEPT
    if unknown:
        raise ValueError(f"keywords with no structural-schema meaning: {sorted(unknown)}")
    return {k: node[k] for k in sorted(node, key=_key_order)}


def _key_order(key: str) -> tuple[int, str]:
    # A stable, readable order: what the field is first, then its bounds, then its children.
    order = [
        "description",
        "type",
        "format",
        "default",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "x-kubernetes-validations",
    ]
    return (order.index(key), key) if key in order else (len(order), key)


def _model_schema(cls: type[Any]) -> dict[str, Any]:
    return structural(cls.model_json_schema(by_alias=True, mode="validation"))


#: ``kubectl get swarm``'s columns.
_PRINTER_COLUMNS: Final[list[dict[str, Any]]] = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Lifecycle phase, derived from the conditions.",
    },
    # One "ready/desired" column like Deployment's READY; the operator writes the string
    # (status.agents.summary) because printer columns cannot compute.
    {
        "name": "Agents",
        "type": "string",
        "jsonPath": ".status.agents.summary",
        "description": "Agents ready/desired.",
    },
    {
        "name": "Sandbox",
        "type": "string",
        "jsonPath": ".status.sandbox.id",
        "description": "E2B sandbox id.",
    },
    # A string the operator formats ("$0.0123"): a number column would print every digit.
    {
        "name": "Cost",
        "type": "string",
        "jsonPath": ".status.cost.summary",
        "description": "Estimated sandbox compute spend in USD, as of the last status write.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "priority": 1,
        "description": "Why the resource is in its phase.",
    },
]


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["swarm"],
                "categories": ["claudeswarm"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(_PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": _schema()},
                }
            ],
        },
    }


def _schema() -> dict[str, Any]:
    """The resource's OpenAPI schema, generated from the model's spec and status."""
    spec = _model_schema(model.SwarmSandboxSpec)
    spec["description"] = "Desired state: how many agents, what they run, and where."
    spec["default"] = {}
    spec = {k: spec[k] for k in sorted(spec, key=_key_order)}
    status = _model_schema(model.SwarmSandboxStatus)
    status["description"] = "Observed state, written by the operator only."
    return {
        "description": "A swarm of coding agents (tmux panes running Claude Code) in one E2B sandbox.",
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {"description": "REST resource this object represents.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


#: Python equivalents of every CEL rule in the schema, keyed by the rule's text. The API server
#: evaluates CEL; emulators and tests cannot, so they evaluate these instead. A unit test checks that
#: every rule the CRD carries has one here.
CEL_MIRRORS: Final[dict[str, Callable[[Any], bool]]] = {
    "has(self.value) != has(self.valueFrom)": lambda env: ("value" in env) != ("valueFrom" in env),
    model._cel_reserved_env_rule(): lambda env: (
        not (
            env.get("name") in model.RESERVED_ENV_NAMES
            or str(env.get("name", "")).startswith(model.RESERVED_ENV_PREFIXES)
        )
    ),
    model._cel_secret_references_rule(): lambda spec: _secret_references(spec) <= model.MAX_SECRET_REFERENCES,
    model.PUSH_BRANCH_RULE: lambda push: model.push_branch_ok(str(push.get("branch", ""))),
    model._cel_args_size_rule(): lambda args: (
        sum(len(a) for a in args if isinstance(a, str)) <= model.MAX_ARGS_CHARS
    ),
    model._cel_mcp_values_size_rule(): lambda mcp: (
        sum(
            len(f.get("value") or "")
            for m in mcp
            if isinstance(m, dict)
            for f in (m.get("fields") or [])
            if isinstance(f, dict)
        )
        <= model.MAX_MCP_VALUE_CHARS
    ),
    model.TASK_RULE: lambda task: "prompt" in task or bool(task.get("agents")),
}


def _secret_references(spec: dict[str, Any]) -> int:
    """How many Secret key references a raw spec carries (the mirror of the spec-level CEL rule).
    Tolerates ill-typed parts: the API server never runs CEL on a spec its schema refuses."""

    def obj(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    def items(value: Any) -> list[dict[str, Any]]:
        return [obj(v) for v in value] if isinstance(value, list) else []

    agent, e2b, workspace = (obj(spec.get(k)) for k in ("agent", "e2b", "workspace"))
    count = sum(1 for e in items(agent.get("env")) if "valueFrom" in e)
    count += ("apiKeySecretRef" in agent) + ("apiKeySecretRef" in e2b)
    count += ("credentialsSecretRef" in workspace) + ("credentialsSecretRef" in obj(workspace.get("push")))
    for entry in items(spec.get("mcp")):
        count += "tokenSecretRef" in entry
        count += sum(1 for f in items(entry.get("fields")) if "valueFrom" in f)
    return count


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: top-down, so a defaulted ``{}`` then gets its
    own properties' defaults. Mutates and returns ``value``."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and "items" in schema:
        value[:] = [apply_defaults(schema["items"], v) for v in value]
    return value


def extension_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """What the API server would refuse beyond plain JSON Schema: CEL rules (via :data:`CEL_MIRRORS`)
    and ``x-kubernetes-list-type: map`` key uniqueness. ``value`` should already be defaulted."""
    problems: list[str] = []
    if isinstance(value, (dict, list)):  # rules sit on objects and on lists (aggregate sizes)
        for rule in schema.get("x-kubernetes-validations", ()):
            if not CEL_MIRRORS[rule["rule"]](value):
                problems.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += extension_violations(sub, value[key], f"{path}.{key}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                problems += extension_violations(schema["additionalProperties"], item, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema["x-kubernetes-list-map-keys"]
            seen: set[tuple[Any, ...]] = set()
            for item in value:
                ident = tuple(item.get(k) for k in keys) if isinstance(item, dict) else (item,)
                if ident in seen:
                    problems.append(f"{path}: Duplicate value: {dict(zip(keys, ident, strict=True))}")
                seen.add(ident)
        for i, item in enumerate(value):
            problems += extension_violations(schema["items"], item, f"{path}[{i}]")
    return problems


def render() -> str:
    """The CRD as the YAML text committed to the repository."""
    header = "# Generated from swarm_operator/model/ by `python -m swarm_operator._crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


def package_path() -> Path:
    """The CRD shipped inside the package (the Kubernetes emulator loads it from there)."""
    return Path(__file__).parent / "crds" / "swarmsandbox.yaml"


def _repo_path() -> Path:
    return Path(__file__).resolve().parents[2] / "crds" / "swarmsandbox.yaml"


def _chart_path() -> Path:
    """The chart's copy: Helm installs charts/<chart>/crds/ verbatim, so it must be the same bytes."""
    return Path(__file__).resolve().parents[2] / "charts" / "swarm-operator" / "crds" / "swarmsandbox.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm_operator._crd", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are not up to date")
    parser.add_argument("--stdout", action="store_true", help="print the CRD instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    stale = 0
    for path in (_repo_path(), package_path(), _chart_path()):
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"stale: {path}", file=sys.stderr)
                stale = 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


if __name__ == "__main__":
    sys.exit(main())
