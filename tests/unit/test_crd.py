"""The CRD: generated from the models, committed fresh, structural, and true to the models' defaults."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from swarm_operator import _crd, model

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "crds" / "swarmsandbox.yaml"


def _schema() -> dict[str, Any]:
    return _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for key, sub in node.get("properties", {}).items():
        found += _walk(sub, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    return found


def test_committed_crd_is_what_generation_produces() -> None:
    assert COMMITTED.read_text() == _crd.render(), "run: python -m swarm_operator._crd"


def test_package_copy_is_byte_identical() -> None:
    assert _crd.package_path().read_bytes() == COMMITTED.read_bytes()


def test_check_mode_reports_fresh_files() -> None:
    assert _crd.main(["--check"]) == 0


def test_committed_yaml_parses_to_the_generated_dict() -> None:
    assert yaml.safe_load(COMMITTED.read_text()) == _crd.crd()


def test_identity_and_printer_columns() -> None:
    spec = _crd.crd()["spec"]
    assert _crd.crd()["metadata"]["name"] == "swarmsandboxes.claudeswarm.io"
    assert spec["group"] == "claudeswarm.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "SwarmSandbox" and spec["names"]["shortNames"] == ["swarm"]
    assert spec["names"]["plural"] == "swarmsandboxes" and spec["names"]["singular"] == "swarmsandbox"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Agents"] == ".status.agents.summary"
    assert columns["Sandbox"] == ".status.sandbox.id"
    assert columns["Age"] == ".metadata.creationTimestamp"
    # Every column points at a field the schema has, so none is silently always empty.
    for path in columns.values():
        if path.startswith(".metadata"):
            continue
        node = _schema()
        for part in path.strip(".").split("."):
            node = node["properties"][part]


FORBIDDEN = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "nullable",
    "const",
    "uniqueItems",
    "additionalItems",
    "patternProperties",
    "dependencies",
}


@pytest.mark.parametrize(("path", "node"), _walk(_schema()), ids=lambda v: v if isinstance(v, str) else "")
def test_schema_is_structural(path: str, node: dict[str, Any]) -> None:
    assert "type" in node, f"{path or '<root>'}: every node needs a type"
    assert not FORBIDDEN & set(node), f"{path}: {FORBIDDEN & set(node)}"
    assert node.get("additionalProperties") is not False, path
    assert not ("properties" in node and "additionalProperties" in node), path
    if node["type"] == "array":
        assert "items" in node, path
    if "pattern" in node:
        re.compile(node["pattern"])
        assert not re.search(r"\(\?[=!<]", node["pattern"]), f"{path}: RE2 has no lookarounds"
    for key in node.get("required", []):
        assert key in node["properties"], f"{path}: required {key} is not a property"
        assert "default" not in node["properties"][key], f"{path}.{key}: required and defaulted"


@pytest.mark.parametrize(
    ("path", "node"),
    [(p, n) for p, n in _walk(_schema()) if p.startswith((".spec", ".status"))],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_field_is_described(path: str, node: dict[str, Any]) -> None:
    if path.endswith(("[]", ".*")) and node["type"] != "object":
        return  # scalar list items and map values are described by their parent.
    description = node.get("description", "")
    assert len(description) > 8, f"{path}: kubectl explain would show nothing useful"
    assert "``" not in description, f"{path}: reStructuredText leaked from a docstring"


@pytest.mark.parametrize(
    ("path", "node"),
    [(p, n) for p, n in _walk(_schema()) if "default" in n],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_defaults_pass_their_own_schema(path: str, node: dict[str, Any]) -> None:
    # The API server refuses a CRD whose defaults (after nested defaulting) do not validate.
    defaulted = _crd.apply_defaults(node, copy.deepcopy(node["default"]))
    jsonschema.Draft7Validator(node).validate(defaulted)
    assert not _crd.extension_violations(node, defaulted)


def test_every_cel_rule_has_a_python_mirror() -> None:
    rules = [r["rule"] for _, n in _walk(_schema()) for r in n.get("x-kubernetes-validations", ())]
    assert rules, "the env rules are expected"
    assert set(rules) <= set(_crd.CEL_MIRRORS)
    for _, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations", ()):
            assert rule.get("message"), rule


def test_reserved_env_rule_names_every_reserved_name() -> None:
    rule = model._cel_reserved_env_rule()
    for name in (*model.RESERVED_ENV_NAMES, *model.RESERVED_ENV_PREFIXES):
        assert f"'{name}'" in rule


def test_status_schema_preserves_no_unknown_fields() -> None:
    assert not any("x-kubernetes-preserve-unknown-fields" in n for _, n in _walk(_schema()))


def test_structural_rewrite_refuses_real_unions() -> None:
    with pytest.raises(ValueError, match="union"):
        _crd.structural({"anyOf": [{"type": "string"}, {"type": "integer"}]})


def test_structural_rewrite_refuses_unknown_keywords() -> None:
    with pytest.raises(ValueError, match="uniqueItems"):
        _crd.structural({"type": "array", "items": {"type": "string"}, "uniqueItems": True})


def test_model_is_the_source_of_field_names() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert set(spec) == {f.alias for f in model.SwarmSandboxSpec.model_fields.values()}
    assert set(spec) == {
        "agents",
        "agent",
        "template",
        "ttlSeconds",
        "e2b",
        "coordinator",
        "deletionPolicy",
        "healthCheck",
        "suspend",
        "workspace",
        "mcp",
        "network",
        "budget",
        "idle",
        "task",
    }
