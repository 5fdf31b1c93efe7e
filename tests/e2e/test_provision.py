"""A first apply on E2B's stock templates, end to end: the real operator, the E2B emulator with its
real-service defaults (stock ``base`` and ``anthropic-claude-code``: no tmux, no coordinator; a
``user`` with passwordless sudo; the host's python3, 3.11 on CI like E2B's base), and ``examples/minimal.yaml``
exactly as shipped.

The setup script installs what the template lacks on the first run, reported as the ``provision``
step, with a Normal Event saying how to skip it; a prebuilt template installs nothing. The coordinator
comes from the emulator's own stand-in pip index (``SWARM_COORDINATOR_INSTALL``, the setting an
air-gapped cluster points at its mirror); on Python 3.11 it needs a managed 3.12 from uv, whose
stand-in wheel the same index serves.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import E2E_OPT_INS, REPO, Cluster

from swarm_operator.bootstrap import CLAUDE_CODE_PACKAGE, UV_PIN

pytestmark = pytest.mark.e2e

#: A coordinator pin the emulator's stand-in index serves (EMULATOR ONLY: a real cluster keeps the
#: operator's git pin, or its mirror's).
MIRRORED_COORDINATOR = "claude-swarm==0.3.1"
PLAYGROUND_CLAUDE = REPO / "testbed" / "swarm_testbed" / "playground" / "bin" / "claude"
#: The emulated sandboxes run the host's python3, as old as E2B's base (3.11) on CI: then the
#: coordinator's Python 3.12 comes from uv. On a newer host the venv is made with python3 itself.
_OLD_PYTHON = (
    subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; sys.exit(sys.version_info < (3, 12))"], check=False
    ).returncode
    != 0
)
COORDINATOR_INSTALLS = [("uv", "python3.12"), ("uv", MIRRORED_COORDINATOR)] if _OLD_PYTHON else []
COORDINATOR_INSTALLED = [UV_PIN, MIRRORED_COORDINATOR] if _OLD_PYTHON else [MIRRORED_COORDINATOR]
MINIMAL = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())


@pytest.fixture()
def e2b(request: pytest.FixtureRequest, e2b_emulator_factory: Any, sandbox_home: Path) -> Any:
    """Stock templates as E2B serves them (the emulator's defaults), unless parametrized
    ``prebuilt``: then the harness's opt-in, every template standing for a prebuilt one."""
    if getattr(request, "param", "stock") == "prebuilt":
        shutil.copy2(PLAYGROUND_CLAUDE, sandbox_home / ".local" / "bin" / "claude")
        return e2b_emulator_factory(home_template=sandbox_home, **E2E_OPT_INS)
    return e2b_emulator_factory()


def _first_apply(cluster: Cluster, e2b: Any, start_operator: Any, **settings: str) -> dict[str, Any]:
    start_operator(SWARM_COORDINATOR_INSTALL=MIRRORED_COORDINATOR, **settings)
    cluster.apply(MINIMAL)
    cluster.wait_condition("default", "hello-swarm", "Ready", timeout=240)
    status = cluster.status("default", "hello-swarm")
    assert status["agents"]["ready"] == 4
    [view] = [s for s in e2b.inspect() if s["alive"]]
    assert view["sandboxID"] == status["sandbox"]["id"]
    return view


def _provisioned(cluster: Cluster, installed: list[str]) -> None:
    status = cluster.status("default", "hello-swarm")
    assert status["metrics"]["stepSeconds"]["provision"] > 0
    events = [e for e in cluster.events("default", "hello-swarm") if e.reason == "Provisioned"]
    assert [(e.type, e.message) for e in events] == [
        (
            "Normal",
            f"installed {', '.join(installed)} at start; skip this with `swarm-operator template --build`",
        )
    ]


def test_minimal_example_on_stock_base_installs_what_is_missing_once(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    view = _first_apply(cluster, e2b, start_operator, SWARM_DEFAULT_TEMPLATE="base")
    # e2b-dev/E2B templates/base/e2b.Dockerfile: no tmux, no agent CLI, no coordinator.
    assert view["templateID"] == "base" and view["stockTemplate"] == "base" and view["toolsHidden"]
    installs = [
        (i["manager"], i["package"]) for i in view["installs"] if i["package"]
    ]  # not `apt-get update`
    name, version = CLAUDE_CODE_PACKAGE.rsplit("@", 1)
    assert installs == [("apt", "tmux"), ("npm", name), *COORDINATOR_INSTALLS]
    assert next(i for i in view["installs"] if i["manager"] == "npm")["version"] == version
    _provisioned(cluster, ["tmux", CLAUDE_CODE_PACKAGE, *COORDINATOR_INSTALLED])


def test_minimal_example_on_the_default_template_has_claude_code_already(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    view = _first_apply(cluster, e2b, start_operator)  # SWARM_DEFAULT_TEMPLATE unset: the default
    assert view["templateID"] == "anthropic-claude-code"
    assert [(i["manager"], i["package"]) for i in view["installs"] if i["package"]] == [
        ("apt", "tmux"),
        *COORDINATOR_INSTALLS,
    ]  # no npm: claude is there
    _provisioned(cluster, ["tmux", *COORDINATOR_INSTALLED])


@pytest.mark.parametrize("e2b", ["prebuilt"], indirect=True)
def test_a_prebuilt_template_has_no_provision_step(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    # The harness's home has tmux (the host's), `claude` and `claudeswarm`, and records the
    # operator's default pin, as a template built by `swarm-operator template --build` does.
    start_operator()
    cluster.apply(MINIMAL)
    cluster.wait_condition("default", "hello-swarm", "Ready", timeout=120)
    status = cluster.status("default", "hello-swarm")
    assert "provision" not in status["metrics"]["stepSeconds"]
    assert [s["installs"] for s in e2b.inspect()] == [[]]
    assert not [e for e in cluster.events("default", "hello-swarm") if e.reason == "Provisioned"]
