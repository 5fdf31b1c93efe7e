"""Claude Code is ``claude`` exactly; a name that only looks like it is run as given, never treated as
Claude Code, and reported as a spoofing attempt (issue 17: hostile input, homoglyph commands).
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from typing import Any

import pytest
from test_lifecycle import REF, FakeBackend, Recorder, _runtime, _spec, _status

from swarm_operator import agentconfig, bootstrap, lifecycle
from swarm_operator.bootstrap import _agentname
from swarm_operator.model import SwarmSandboxSpec

#: Look-alikes of ``claude``, each drawn (near enough) as the real name.
SPOOFS = {
    "cyrillic es for c": "\u0441laude",
    "cyrillic a": "cl\u0430ude",
    "cyrillic ie for e": "claud\u0435",
    "greek iota for l": "c\u0399aude",
    "latin alpha": "cl\u0251ude",
    "armenian seh for u": "cla\u057dde",
    "cyrillic komi de for d": "clau\u0501e",
    "fullwidth": "\uff43\uff4c\uff41\uff55\uff44\uff45",
    "mathematical bold": "\U0001d41c\U0001d425\U0001d41a\U0001d42e\U0001d41d\U0001d41e",
    "zero-width space": "cla\u200bude",
    "zero-width joiner at the end": "claude\u200d",
    "right-to-left override": "\u202eclaude",
    "capital I for l": "cIaude",
    "digit one for l": "c1aude",
    "absolute path": "/usr/local/bin/\u0441laude",
}
#: Names that are not Claude Code and do not pretend to be.
HONEST = [
    "Claude",
    "CLAUDE",
    "claude-code",
    "claudeswarm",
    "claudex",
    "fake-agent",
    "cl\u00f6ude",
    "claude\u0301",
    "\u00fcn\u00efcode",
]


def _agent_spec(command: str) -> SwarmSandboxSpec:
    return SwarmSandboxSpec.from_body(
        {"agents": 1, "agent": {"command": command}, "coordinator": {"enabled": True}}
    )


@pytest.mark.parametrize("command", ["claude", "/usr/local/bin/claude", "./node_modules/.bin/claude"])
def test_claude_code_is_its_exact_name_and_gets_its_package_and_configuration(command: str) -> None:
    spec = _agent_spec(command)
    assert bootstrap.is_claude_code(command) and bootstrap.imitated(command) is None
    assert agentconfig.spoofing_report(spec) is None
    plan = bootstrap.BootstrapPlan(session="s", socket="s", agents=1, command=command)
    assert plan.agent_cli_install == bootstrap.CLAUDE_CODE_PACKAGE
    config = json.loads(agentconfig.claude_config_json(spec, {}))
    assert config["settings"]["permissions"]["allow"] == ["Bash(claudeswarm:*)"]


@pytest.mark.parametrize("label", SPOOFS)
def test_a_look_alike_is_allowed_but_never_treated_as_claude_code_and_is_reported(label: str) -> None:
    command = SPOOFS[label]
    spec = _agent_spec(command)  # allowed: the model takes it as the command it is
    assert spec.agent.command == command
    assert not bootstrap.is_claude_code(command)
    assert bootstrap.imitated(command) == "claude"
    # Never Claude Code: no package installed for it, no configuration or onboarding written.
    assert bootstrap.BootstrapPlan(session="s", socket="s", agents=1, command=command).agent_cli_install == ""
    assert agentconfig.claude_config_json(spec, {"CLAUDE.md": "x", "settings.json": "{}"}) == ""
    report = agentconfig.spoofing_report(spec)
    assert report is not None and "looks like 'claude' but is not it" in report
    # The name is shown escaped: the reader sees what differs.
    name = command.rsplit("/", 1)[-1]
    assert ascii(name) in report and (name == ascii(name)[1:-1] or name not in report)


@pytest.mark.parametrize("command", HONEST)
def test_other_names_are_neither_claude_code_nor_reported(command: str) -> None:
    assert not bootstrap.is_claude_code(command) and bootstrap.imitated(command) is None
    assert agentconfig.spoofing_report(_agent_spec(command)) is None


def test_every_confusable_in_the_table_is_caught_in_every_position() -> None:
    """The table is Unicode's (confusables.txt): each character it lists, put in place of the letter
    it imitates, makes a look-alike; none of them is itself a letter of the guarded name."""
    checked = 0
    for index, letter in enumerate("claude"):
        for char in _agentname._CONFUSABLE_WITH[letter]:
            spoof = "claude"[:index] + char + "claude"[index + 1 :]
            assert bootstrap.imitated(spoof) == "claude", (letter, f"U+{ord(char):04X}")
            assert not bootstrap.is_claude_code(spoof)
            checked += 1
    assert checked >= 80
    assert all(
        unicodedata.category(c)[0] in "LNPS" for chars in _agentname._CONFUSABLE_WITH.values() for c in chars
    )


async def test_the_operator_reports_a_look_alike_once_per_generation_and_runs_it_as_given() -> None:
    backend, recorder = FakeBackend(), Recorder()
    spoof = {"agents": 2, "agent": {"command": "\u0441laude"}, "coordinator": {"enabled": False}}
    runtime = _runtime(backend, recorder)
    written = await lifecycle.reconcile(REF, _spec(spoof), _status(None), runtime)
    assert written.phase == "Ready"  # allowed: it runs as the command it is
    warnings = [e for e in recorder.events if e[1] == "SpoofedCommand"]
    assert [(t, r) for t, r, _ in warnings] == [("Warning", "SpoofedCommand")]
    assert "'\\u0441laude' looks like 'claude'" in warnings[0][2]
    # The next pass over the same generation (a Secret tick, a restart) says nothing new ...
    await lifecycle.reconcile(REF, _spec(spoof), written, runtime)
    assert sum(e[1] == "SpoofedCommand" for e in recorder.events) == 1
    # ... a new generation that keeps the look-alike is reported again.
    again = dataclasses.replace(REF, generation=2)
    await lifecycle.reconcile(again, _spec({**spoof, "agents": 1}), written, runtime)
    assert sum(e[1] == "SpoofedCommand" for e in recorder.events) == 2


async def test_the_real_name_is_never_reported() -> None:
    backend, recorder = FakeBackend(), Recorder()
    body: dict[str, Any] = {"agents": 1, "agent": {"command": "claude"}, "coordinator": {"enabled": False}}
    await lifecycle.reconcile(REF, _spec(body), _status(None), _runtime(backend, recorder))
    assert "SpoofedCommand" not in {r for _, r, _ in recorder.events}
