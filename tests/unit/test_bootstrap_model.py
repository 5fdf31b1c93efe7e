"""The plan's guards, the renderer's quoting, and the report parser — no process started."""

from __future__ import annotations

import json
import shlex

import pydantic
import pytest

from swarm_operator.bootstrap import (
    MAX_SCRIPT_BYTES,
    BootstrapPlan,
    BootstrapReportError,
    parse_health,
    parse_report,
    parse_teardown,
    render_probe,
    render_setup,
    render_teardown,
    session_name,
    socket_name,
)
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END


def plan(**kw: object) -> BootstrapPlan:
    base: dict[str, object] = dict(session="s1", socket="s1", agents=2, command="claude")
    return BootstrapPlan(**{**base, **kw})


def test_session_names_are_tmux_safe_short_and_unique_per_uid() -> None:
    a = session_name("Team.A:b", "My Swarm!" * 10, "uid-1")
    b = session_name("Team.A:b", "My Swarm!" * 10, "uid-2")
    assert a != b
    assert len(a) <= 64 and all(c.isalnum() or c in "-_" for c in a)
    assert a == session_name("Team.A:b", "My Swarm!" * 10, "uid-1")
    plan(session=a, socket=socket_name("x", "y", "uid-1"))  # accepted by the plan


@pytest.mark.parametrize("bad", ["", "a:b", "a.b", "a b", "a|b", "x" * 65, "é"])
def test_session_and_socket_must_be_tmux_safe(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        plan(session=bad)
    with pytest.raises(pydantic.ValidationError):
        plan(socket=bad)


@pytest.mark.parametrize(
    "bad", ["1A", "A-B", "A B", "PATH", "HOME", "BASH_ENV", "SWARM_X", "_sw_n", "IFS", ""]
)
def test_env_names_must_be_free_identifiers(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        plan(env_names=[bad])


def test_duplicate_env_names_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        plan(env_names=["A", "A"])


@pytest.mark.parametrize("field", ["command", "workdir", "state_dir", "coordinator_install"])
def test_nul_is_refused(field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="NUL"):
        plan(**{field: "a\x00b"})
    with pytest.raises(pydantic.ValidationError, match="NUL"):
        plan(args=["ok", "a\x00b"])


@pytest.mark.parametrize("agents", [0, 101])
def test_agent_count_is_bounded(agents: int) -> None:
    with pytest.raises(pydantic.ValidationError):
        plan(agents=agents)


def test_state_dir_defaults_under_home_per_session() -> None:
    assert plan().state_dir == ".swarm/s1"
    assert plan(state_dir="/var/x").state_dir == "/var/x"


def test_plan_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        plan().agents = 3  # type: ignore[misc]


def test_values_are_rendered_quoted_and_secrets_never() -> None:
    p = plan(command="c'md $(x)", args=["a b", "`y`"], env_names=["API_KEY"])
    script = render_setup(p)
    assert "SWARM_COMMAND=" + shlex.quote("c'md $(x)") in script
    assert "SWARM_ARGS=(" + shlex.quote("a b") + " " + shlex.quote("`y`") + ")" in script
    assert "SWARM_ENV_NAMES=(API_KEY)" in script
    assert script.startswith("#!/bin/bash\n")
    for render in (render_probe, render_teardown):
        assert "SWARM_SESSION=s1" in render(p)


def test_oversized_scripts_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="bytes"):
        render_setup(plan(args=["x" * MAX_SCRIPT_BYTES]))


def test_teardown_grace_is_bounded() -> None:
    with pytest.raises(ValueError):
        render_teardown(plan(), grace_s=-1)


_SETUP = {
    "kind": "setup",
    "version": 1,
    "session": "s",
    "socket": "s",
    "state_dir": "/h/.swarm/s",
    "server": True,
    "agents": {"desired": 1, "ready": 1, "failed": 0},
    "panes": [
        {
            "index": 0,
            "target": "s:0.0",
            "pane_id": "%0",
            "pid": 7,
            "alive": True,
            "dead": False,
            "exit_status": None,
            "command": "claude",
            "restarts": 0,
        }
    ],
    "created": [0],
    "removed": [],
    "restarted": [],
    "env_missing": [],
    "timed_out": False,
    "coordinator": {"enabled": False, "installed": False, "discovered": None, "error": None},
    "steps": {"tmux": 0.01},
    "errors": [],
}


def _wrap(obj: object) -> str:
    return f"{MARK_BEGIN}\n{json.dumps(obj)}\n{MARK_END}\n"


def test_parse_report_ignores_noise_and_takes_the_last_report() -> None:
    older = {**_SETUP, "created": [5]}
    out = "motd from /etc/profile\n" + _wrap(older) + "pip noise\n" + _wrap(_SETUP) + "trailing\n"
    report = parse_report(out)
    assert report.created == [0] and report.ready
    assert report.panes[0].target == "s:0.0"


@pytest.mark.parametrize(
    "garbage, message",
    [
        ("", "no report"),
        ("hello\n", "no report"),
        (f"{MARK_END}\n", "without a begin"),
        (f"{MARK_BEGIN}\n{{not json\n{MARK_END}", "not valid JSON"),
        (_wrap({"kind": "setup"}), "does not match"),
        (_wrap({**_SETUP, "kind": "probe"}), "does not match"),
    ],
)
def test_parse_report_fails_clearly_on_garbage(garbage: str, message: str) -> None:
    with pytest.raises(BootstrapReportError, match=message):
        parse_report(garbage)


def test_parsers_check_the_kind() -> None:
    with pytest.raises(BootstrapReportError):
        parse_health(_wrap(_SETUP))
    with pytest.raises(BootstrapReportError):
        parse_teardown(_wrap(_SETUP))
