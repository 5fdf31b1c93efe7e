"""The E2B SDK's template builder, for ``swarm-operator template`` (see :mod:`swarm_operator.template`).

Only the backend package imports the ``e2b`` SDK (an import-linter contract): the template's
definition lives in :mod:`swarm_operator.template`, the SDK calls that build, render and upload it
live here. The SDK is imported inside each function so that importing the backend stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["build_template", "new_template", "render_template"]


def new_template(file_context_path: str | None = None) -> Any:
    """An empty ``e2b.AsyncTemplate`` builder chain; ``file_context_path`` is where its ``copy``
    steps take files from."""
    from e2b import AsyncTemplate

    return AsyncTemplate(file_context_path=file_context_path) if file_context_path else AsyncTemplate()


def render_template(template: Any, fmt: str = "dockerfile") -> str:
    """The builder chain as text, offline: ``dockerfile`` (readable steps) or ``json`` (the SDK's)."""
    from e2b import AsyncTemplate

    return AsyncTemplate.to_json(template) if fmt == "json" else AsyncTemplate.to_dockerfile(template)


async def build_template(
    template: Any, name: str, *, cpu_count: int | None, memory_mb: int | None, on_log: Callable[[Any], None]
) -> Any:
    """Build and upload ``template`` as ``name`` with the key in ``E2B_API_KEY``; the build info."""
    from e2b import AsyncTemplate

    return await AsyncTemplate.build(
        template, name, cpu_count=cpu_count, memory_mb=memory_mb, on_build_logs=on_log
    )
