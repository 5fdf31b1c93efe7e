"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, …`` and prints the columns the
server computes — for a custom resource, ``Name``, the CRD's ``additionalPrinterColumns`` and ``Age``.
Serving the table is what makes ``kubectl get swarm`` show Phase and Agents, as on a real cluster.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

_STEP_RE = re.compile(
    r"""\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]"""
)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def jsonpath(obj: Any, path: str) -> Any:
    """The small JSONPath subset printer columns use: ``.a.b``, ``[0]``, ``[?(@.type=="Ready")]``."""
    values = [obj]
    position = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while position < len(path):
        match = _STEP_RE.match(path, position)
        if not match:
            return None
        position = match.end()
        key, index, filter_key, filter_value = match.groups()
        found: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, Mapping) and key in value:
                found.append(value[key])
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                found.append(value[int(index)])
            elif filter_key is not None and isinstance(value, list):
                found.extend(
                    item
                    for item in value
                    if isinstance(item, Mapping) and str(jsonpath(item, "." + filter_key)) == filter_value
                )
        values = found
    return values[0] if values else None


def _age(timestamp: str | None) -> str | None:
    """The API server's human-readable duration: 42s, 5m10s, 3h, 2d…"""
    if not timestamp:
        return None
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return timestamp
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _cell(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return _age(str(value))
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column_type in ("integer", "number", "boolean"):
        return value
    return value if isinstance(value, str) else str(value)


def render_table(
    listing: Mapping[str, Any],
    printer_columns: Sequence[Mapping[str, Any]],
    *,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """Convert a list (or a one-item list for a GET) into a Table."""
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    for column in printer_columns:
        columns.append(
            {
                "name": column["name"],
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "priority": column.get("priority", 0),
                "description": column.get("description", ""),
            }
        )
    if not any(column["name"] == "Age" for column in printer_columns):
        columns.append(
            {
                "name": "Age",
                "type": "date",
                "format": "",
                "priority": 0,
                "description": "CreationTimestamp is a timestamp representing the server time "
                "when this object was created.",
            }
        )
    rows = []
    for item in listing["items"]:
        meta = item.get("metadata", {})
        cells: list[Any] = [meta.get("name")]
        for column in printer_columns:
            cells.append(_cell(jsonpath(item, column["jsonPath"]), column.get("type", "string")))
        if len(cells) < len(columns):
            cells.append(_age(meta.get("creationTimestamp")))
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = item
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": listing.get("metadata", {}).get("resourceVersion", "")},
        "columnDefinitions": columns,
        "rows": rows,
    }
