"""The declared SDK floor is the one the backend needs, and the installed SDK meets it.

classify() maps GuestUnresponsiveException and the output cap streams through
``commands.run(retain_output=False)``: both arrived in e2b 2.63. A lock or an environment that
resolves an older SDK fails here instead of at the first paused sandbox or flooding command.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

FLOOR = Version("2.63")
ROOT = Path(__file__).resolve().parents[2]


def _declared() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(r for r in map(Requirement, project["dependencies"]) if r.name == "e2b")


def test_pyproject_requires_the_floor_and_stays_below_3() -> None:
    spec = _declared().specifier
    assert not spec.contains("2.62.9") and spec.contains(str(FLOOR)) and not spec.contains("3.0")


def test_the_lock_pins_a_version_inside_the_declared_range() -> None:
    pins = [
        line.split("==")[1].split()[0]
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line.startswith("e2b==")
    ]
    assert len(pins) == 1 and _declared().specifier.contains(pins[0])


def test_the_installed_sdk_meets_the_floor_and_has_what_the_backend_uses() -> None:
    installed = Version(importlib.metadata.version("e2b"))
    assert installed >= FLOOR and _declared().specifier.contains(str(installed))
    from e2b.exceptions import GuestUnresponsiveException
    from e2b.sandbox_async.commands.command import Commands

    assert issubclass(GuestUnresponsiveException, Exception)
    assert "retain_output" in inspect.signature(Commands.run).parameters
