"""The playground's progress display: one row per SwarmSandbox, as a column-aligned table.

Pure functions of the resources' bodies, so that the display is testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["progress_row", "render_table"]


def progress_row(body: Mapping[str, Any]) -> dict[str, str]:
    """One resource's line of the progress display."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    agents = status.get("agents") or {}
    steps = (status.get("metrics") or {}).get("stepSeconds") or {}
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    note = "" if ready.get("status") == "True" else (ready.get("message") or status.get("message") or "")
    return {
        "resource": f"{meta.get('namespace', 'default')}/{meta.get('name')}",
        "phase": str(status.get("phase") or "Pending"),
        "agents": f"{agents.get('ready', 0)}/{agents.get('desired', (body.get('spec') or {}).get('agents', '?'))}",
        "sandbox": str((status.get("sandbox") or {}).get("id") or "-"),
        "steps": " ".join(f"{k} {float(v):.2f}s" for k, v in steps.items() if "." not in k) or "-",
        "note": note[:60],
    }


def render_table(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """The progress table, column-aligned; a placeholder line while nothing exists."""
    columns = ["resource", "phase", "agents", "sandbox", "steps", "note"]
    if not rows:
        return ["(no SwarmSandbox resources yet)"]
    table = [[c.upper() for c in columns]] + [[row[c] for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in table]
