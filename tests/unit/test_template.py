"""``swarm-operator template``: the definition's steps, offline, and its refusals."""

from __future__ import annotations

import json

import pytest

from swarm_operator import cli, template

PIN = "claudeswarm==0.4.2"
CLI = "@anthropic-ai/claude-code@2.0.14"


def test_definition_renders_the_expected_steps() -> None:
    text = template.render(template.definition(coordinator=PIN, agent_cli=CLI))
    lines = text.strip().splitlines()
    assert lines[0] == "FROM debian:trixie"  # Python 3.13: claudeswarm needs >= 3.12
    assert "apt-get install" in lines[1] and all(p in lines[1] for p in ("tmux", "git", "nodejs", "npm"))
    assert lines[2] == f"RUN npm install -g {CLI}"
    assert lines[3] == f"RUN pip install --break-system-packages --no-cache-dir -- {PIN}"
    assert lines[4] == f"RUN mkdir -p /home/user/.swarm-template && printf %s {PIN} > {template.MARKER}"
    steps = json.loads(template.render(template.definition(coordinator=PIN, agent_cli=CLI), "json"))["steps"]
    assert [s["args"][1] for s in steps if s["type"] == "RUN"][-1] == "user"  # the marker is the user's


def test_defaults_are_the_pins_the_setup_script_installs() -> None:
    """One copy of each pin: the template's defaults are what a bare sandbox gets installed, and
    what a resource asks for unless it says otherwise, so a sandbox from the template installs nothing."""
    from swarm_operator import bootstrap, model

    text = template.render(template.definition())
    assert f"RUN npm install -g {bootstrap.CLAUDE_CODE_PACKAGE}" in text
    assert f"-- {model.COORDINATOR_PIN}" in text and f"printf %s {model.COORDINATOR_PIN} >" in text
    # A resource that names no install gets the operator's setting, whose default is the same pin.
    assert model.CoordinatorSpec().install is None
    from swarm_operator.config import Settings

    assert Settings().coordinator_install == model.COORDINATOR_PIN
    assert bootstrap.BootstrapPlan(session="s", socket="s", agents=1, command="claude").agent_cli_install \
        == bootstrap.CLAUDE_CODE_PACKAGE
    # PyPI's "claude-swarm" is another project (no claudeswarm command): never the default.
    assert not model.COORDINATOR_PIN.startswith("claude-swarm==")


def test_from_template_for_mcp() -> None:
    data = json.loads(template.render(
        template.definition(coordinator=PIN, agent_cli=CLI, from_template="mcp-gateway"), "json"))
    assert data["fromTemplate"] == "mcp-gateway"


@pytest.mark.parametrize(("coordinator", "agent_cli"), [
    ("claudeswarm", CLI), ("claudeswarm>=0.4", CLI), ("preinstalled", CLI),
    (PIN, "@anthropic-ai/claude-code"), (PIN, "@anthropic-ai/claude-code@latest"), (PIN, "claude@^2.0.0"),
])
def test_unpinned_is_refused(coordinator: str, agent_cli: str) -> None:
    with pytest.raises(ValueError, match="pinned|exact"):
        template.definition(coordinator=coordinator, agent_cli=agent_cli)


def test_cli_prints_offline_and_build_needs_the_key_in_env(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["template", "--coordinator", PIN, "--agent-cli", CLI]) == 0
    assert f"npm install -g {CLI}" in capsys.readouterr().out
    assert cli.main(["template"]) == 0  # the operator's own pins
    assert "npm install -g @anthropic-ai/claude-code@" in capsys.readouterr().out
    assert cli.main(["template", "--coordinator", "claudeswarm", "--agent-cli", CLI]) == 2
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert cli.main(["template", "--coordinator", PIN, "--agent-cli", CLI, "--build", "swarm:v1"]) == 2
    assert "E2B_API_KEY" in capsys.readouterr().err
