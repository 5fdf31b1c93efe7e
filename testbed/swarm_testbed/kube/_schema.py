"""A CRD version's structural schema: defaulting, pruning and validation, in the API server's order.

The API server, on every write of a custom resource, (1) prunes fields the schema does not know (unless
``x-kubernetes-preserve-unknown-fields``), (2) applies ``default`` values, and (3) validates against
the OpenAPI v3 schema, refusing with 422 and one cause per bad field (``spec.agents: Invalid value:
500: spec.agents in body should be less than or equal to 100``). Operators depend on all three: a
default the operator never writes, a typo silently dropped, a bound it never has to re-check.

Validation uses ``jsonschema`` (Draft 4 is closest to the OpenAPI 3.0 subset the API server accepts);
the OpenAPI-only keywords are translated first: ``nullable`` and ``x-kubernetes-int-or-string``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions

from swarm_testbed.kube._errors import Cause

# Always kept at an object's root, whatever the schema says (the API server owns these).
_ROOT_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


def _to_jsonschema(schema: Any) -> Any:
    """Translate the OpenAPI-only keywords into plain JSON Schema (Draft 4)."""
    if isinstance(schema, list):
        return [_to_jsonschema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            result[key] = {name: _to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            result[key] = _to_jsonschema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "example", "externalDocs"):
            continue
        else:
            result[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in result:
        types = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = [*types, "null"]
    return result


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _cause(error: jsonschema.exceptions.ValidationError) -> Cause:
    """Word one jsonschema error the way the API server words it."""
    field = _path(error.absolute_path)
    value = error.instance
    keyword = error.validator
    limit = error.validator_value
    where = f"{field} in body" if field else "body"
    if keyword == "required":
        missing = [name for name in limit if not isinstance(value, Mapping) or name not in value]
        name = missing[0] if missing else "?"
        return Cause(f"{field}.{name}" if field else name, "FieldValueRequired", "Required value")
    if keyword == "enum":
        supported = ", ".join(_show(choice) for choice in limit)
        return Cause(
            field,
            "FieldValueNotSupported",
            f"Unsupported value: {_show(value)}: supported values: {supported}",
        )
    if keyword == "type":
        wanted = limit if isinstance(limit, str) else limit[0]
        return Cause(
            field,
            "FieldValueTypeInvalid",
            f"Invalid value: {_show(value)}: {where} must be of type {wanted}: {_show(value)}",
        )
    wording = {
        "maximum": f"should be less than or equal to {limit}",
        "minimum": f"should be greater than or equal to {limit}",
        "maxLength": f"should be at most {limit} chars long",
        "minLength": f"should be at least {limit} chars long",
        "maxItems": f"should have at most {limit} items",
        "minItems": f"should have at least {limit} items",
        "maxProperties": f"should have at most {limit} properties",
        "minProperties": f"should have at least {limit} properties",
        "pattern": f"should match '{limit}'",
        "multipleOf": f"should be a multiple of {limit}",
        "uniqueItems": "shouldn't contain duplicates",
    }.get(str(keyword), error.message)
    reason = "FieldValueTooLong" if keyword == "maxLength" else "FieldValueInvalid"
    return Cause(field, reason, f"Invalid value: {_show(value)}: {where} {wording}")


class StructuralSchema:
    """One served version's ``openAPIV3Schema`` with the three write-time operations."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema: Mapping[str, Any] = schema
        self._validator = jsonschema.Draft4Validator(_to_jsonschema(schema))

    # -- pruning -----------------------------------------------------------------------------------
    def prune(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Drop unknown fields in place (the object's root keeps apiVersion/kind/metadata)."""
        self._prune(obj, self.schema, root=True)
        return obj

    def _prune(self, value: Any, schema: Mapping[str, Any], *, root: bool = False) -> None:
        if isinstance(value, dict):
            properties = schema.get("properties")
            additional = schema.get("additionalProperties")
            preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
            embedded = bool(schema.get("x-kubernetes-embedded-resource"))
            for key in list(value):
                if (root or embedded) and key in _ROOT_FIELDS:
                    continue
                if properties is not None and key in properties:
                    self._prune(value[key], properties[key])
                elif isinstance(additional, Mapping):
                    self._prune(value[key], additional)
                elif not preserve and additional is not True:
                    del value[key]
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for item in value:
                self._prune(item, schema["items"])

    # -- defaulting --------------------------------------------------------------------------------
    def default(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Fill in ``default`` values in place, recursively, where a field is absent."""
        self._default(obj, self.schema)
        return obj

    def _default(self, value: Any, schema: Mapping[str, Any]) -> None:
        if isinstance(value, dict):
            for key, sub in (schema.get("properties") or {}).items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    self._default(value[key], sub)
            additional = schema.get("additionalProperties")
            if isinstance(additional, Mapping):
                for key in value:
                    if key not in (schema.get("properties") or {}):
                        self._default(value[key], additional)
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for item in value:
                self._default(item, schema["items"])

    # -- validation --------------------------------------------------------------------------------
    def validate(self, obj: Mapping[str, Any]) -> list[Cause]:
        """All schema violations, ordered by field path (empty when valid).

        Like the API server, the ``x-kubernetes-*`` rules (CEL validations, list-map key uniqueness)
        run only once the plain schema holds, so a rule never sees a value of the wrong shape.
        """
        causes = [_cause(error) for error in self._validator.iter_errors(obj)]
        if not causes:
            causes = _extension_causes(self.schema, obj, [])
        return sorted(causes, key=lambda cause: cause.field)


def _extension_causes(schema: Mapping[str, Any], value: Any, parts: list[Any]) -> list[Cause]:
    """CEL ``x-kubernetes-validations`` (evaluated with cel-python) and list-map key uniqueness."""
    causes: list[Cause] = []
    for rule in schema.get("x-kubernetes-validations", ()):
        if not _cel_holds(rule["rule"], value):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            causes.append(
                Cause(_path(parts), "FieldValueInvalid", f"Invalid value: {_show(value)}: {message}")
            )
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if sub is not None:
                causes += _extension_causes(sub, item, [*parts, key])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        if schema.get("x-kubernetes-list-type") == "map":
            keys = list(schema.get("x-kubernetes-list-map-keys", ()))
            seen: set[str] = set()
            for index, item in enumerate(value):
                ident = json.dumps([item.get(k) for k in keys] if isinstance(item, Mapping) else item)
                if ident in seen:
                    shown = ", ".join(f"{k}: {json.dumps(item.get(k))}" for k in keys)
                    causes.append(
                        Cause(
                            _path([*parts, index]),
                            "FieldValueDuplicate",
                            f"Duplicate value: map[string]interface {{}}{{{shown}}}",
                        )
                    )
                seen.add(ident)
        for index, item in enumerate(value):
            causes += _extension_causes(schema["items"], item, [*parts, index])
    return causes


def _cel_holds(rule: str, value: Any) -> bool:
    """Evaluate one CEL rule with ``self`` bound to ``value``; without cel-python, rules pass.

    cel-python is part of the emulators' extra; a rule it cannot compile or evaluate counts as
    holding, so an emulator limitation never refuses what the real API server would accept.
    """
    try:
        import celpy
    except ImportError:  # pragma: no cover - the extra is missing
        return True
    try:
        program = _cel_program(rule, celpy)
        result = program.evaluate({"self": celpy.json_to_cel(value)})
    except Exception:
        return True
    return bool(result)


_PROGRAMS: dict[str, Any] = {}


def _cel_program(rule: str, celpy: Any) -> Any:
    program = _PROGRAMS.get(rule)
    if program is None:
        env = celpy.Environment()
        program = _PROGRAMS[rule] = env.program(env.compile(rule), functions=_k8s_functions(celpy))
    return program


def _k8s_functions(celpy: Any) -> dict[str, Any]:
    """Kubernetes' own CEL library functions the CRD uses, which plain CEL (and cel-python) lack.

    kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/cel/library/lists.go: ``<list>.sum()``
    adds the elements; ``[].sum()`` is 0.
    """

    def _sum(items: Any) -> Any:
        total = celpy.celtypes.IntType(0)
        for item in items:
            total = total + item
        return total

    return {"sum": _sum}
