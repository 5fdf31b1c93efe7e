"""No user value is ever executed as shell code: property tests over every user field.

Two properties: every rendered script parses (`bash -n`), and running it — with hostile text in the
command, args, workdir, state dir, coordinator requirement and the secret env values — never creates
a canary file that only an injection could create. The env values must also round-trip exactly
through the env file the agents source.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swarm_operator.bootstrap import BootstrapPlan, parse_report, render_probe, render_setup, render_teardown

_ROOT = pathlib.Path(tempfile.mkdtemp(prefix="swi", dir="/tmp"))
CANARY = _ROOT / "canary"


def _payloads(target: str) -> list[str]:
    return [
        f"$(touch {target})",
        f"`touch {target}`",
        f"'; touch {target}; '",
        f'"; touch {target}; "',
        f"\ntouch {target}\n",
        f"$(touch${{IFS}}{target})",
        f"a'$(touch {target})'b",
        f"EOF\ntouch {target}\nEOF",
        f";touch {target} #",
        f"|| touch {target}",
        f"\\'; touch {target}",
        f"${{x:-$(touch {target})}}",
        f"'\"$(touch {target})\"'",
        f"-c touch {target}",
        f"--index-url=$(touch {target})",
        "%s%n%q",
        f"x\\\n$(touch {target})",
        f"\x1b]0;$(touch {target})\x07",
    ]


_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
hostile = st.one_of(
    st.text(_chars, max_size=30),
    st.sampled_from(_payloads(str(CANARY))),
    st.tuples(st.text(_chars, max_size=8), st.sampled_from(_payloads(str(CANARY)))).map("".join),
)
# Paths under the temp HOME: relative, without ".." (a value may be hostile, not a way out of HOME).
rel_path = hostile.filter(lambda s: not s.startswith("/") and ".." not in s and len(s.encode()) < 200)
env_name = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: (
        not n.startswith(("SWARM_", "BASH"))
        and n
        not in {
            "PATH",
            "HOME",
            "IFS",
            "PWD",
            "OLDPWD",
            "SHELL",
            "ENV",
            "CDPATH",
            "PS4",
            "TMUX",
            "UID",
            "EUID",
            "PPID",
            "REPLY",
            "P_ID",
            "P_PID",
            "P_DEAD",
            "P_CMD",
            "OPTIND",
            "OPTARG",
        }
    )
)


config_key = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(lambda k: k not in (".", ".."))


@st.composite
def tool_fields(draw: st.DrawFn) -> dict[str, object]:
    """Workspace, agent configuration and MCP inputs, with hostile text wherever text goes."""
    server = draw(hostile.filter(bool))
    return {
        "workspace_repo": draw(st.sampled_from(["", "https://127.0.0.1:9/team/repo.git"])),
        "workspace_ref": draw(hostile),
        "workspace_username": draw(hostile.filter(bool)),
        "agent_config": json.dumps(
            {
                "claude_json": {draw(hostile): draw(hostile)},
                "settings": {"hooks": draw(hostile)},
                "files": {draw(config_key): draw(hostile)},
            }
        ),
        "mcp": json.dumps(
            {"config": {server: {draw(hostile): draw(hostile)}}, "secrets": [], "workspace": [server]}
        ),
        "mcp_start_timeout_s": 1,
    }


@st.composite
def plans(draw: st.DrawFn, tools: bool = False) -> tuple[BootstrapPlan, dict[str, str]]:
    names = draw(st.lists(env_name, max_size=3, unique=True))
    values = {n: draw(hostile) for n in names}
    command = draw(hostile.filter(lambda s: s.strip() != ""))
    try:
        plan = BootstrapPlan(
            session="swi",
            socket="swi",
            agents=1,
            command=command,
            args=draw(st.lists(hostile, max_size=3)),
            env_names=names,
            workdir=draw(rel_path),
            state_dir=draw(rel_path.filter(bool)),
            coordinator_enabled=False,
            coordinator_install=draw(hostile.filter(bool)),
            python=draw(hostile.filter(bool)),
            ready_timeout_s=5,
            settle_s=0.1,
            poll_interval_s=0.02,
            **(draw(tool_fields()) if tools else {}),
        )
    except pydantic.ValidationError:
        assume(False)
        raise
    return plan, values


@pytest.fixture(scope="module")
def home() -> Iterator[pathlib.Path]:
    home = _ROOT / "h"
    home.mkdir()
    (_ROOT / "t").mkdir()
    try:
        yield home
    finally:
        for sock in (_ROOT / "t").glob("tmux-*/*"):
            subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10)
        shutil.rmtree(_ROOT, ignore_errors=True)


def _injected() -> bool:
    """Whether this example created the canary; removes it, so the next example starts clean and a
    finding is reported (and shrunk) against the example that caused it, not a later innocent one."""
    found = CANARY.exists()
    CANARY.unlink(missing_ok=True)
    return found


def _env(home: pathlib.Path, values: dict[str, str]) -> dict[str, str]:
    return {
        "HOME": str(home),
        "TMUX_TMPDIR": str(_ROOT / "t"),
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        **values,
    }


@settings(max_examples=150, deadline=None)
@given(plans(tools=True))
def test_every_rendered_script_parses(case: tuple[BootstrapPlan, dict[str, str]]) -> None:
    plan, _ = case
    for script in (render_setup(plan), render_probe(plan), render_teardown(plan)):
        r = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans())
def test_running_hostile_values_injects_nothing(
    home: pathlib.Path, case: tuple[BootstrapPlan, dict[str, str]]
) -> None:
    plan, values = case
    # A command that really exists would legitimately run its args (think `touch CANARY`): not a leak.
    assume(shutil.which(plan.command, path=os.environ["PATH"]) is None)
    _injected()  # whatever an earlier, failed example left
    env = _env(home, values)
    try:
        r = subprocess.run(
            ["/bin/bash", "-c", render_setup(plan)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode == 0:
            report = parse_report(r.stdout)
            assert report.panes[0].dead and not report.panes[0].alive
            # The secret values survive the env file unchanged (what the agents will source).
            env_file = pathlib.Path(report.state_dir) / "agent.env"
            for name, value in values.items():
                got = subprocess.run(
                    ["bash", "--norc", "-c", f'set -a; . "$1"; printf %s "${name}"', "x", str(env_file)],
                    env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
                    capture_output=True,
                    timeout=10,
                )
                assert got.stdout == value.encode(), name
        else:
            # It may fail (an unusable path), but only before it started anything, and loudly.
            assert r.stderr
        parse_report  # noqa: B018 (the import is used above)
        r = subprocess.run(
            ["/bin/bash", "-c", render_teardown(plan, grace_s=1)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
    finally:
        for sock in (_ROOT / "t").glob("tmux-*/*"):
            subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10)
        injected = _injected()
    assert not injected, f"injection via {plan!r}"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans(tools=True))
def test_running_hostile_tool_inputs_injects_nothing(
    home: pathlib.Path, case: tuple[BootstrapPlan, dict[str, str]]
) -> None:
    """Workspace ref/username, Claude Code configuration and MCP configuration, run for real: the
    clone fails (nothing listens on the port), the config files are written, and nothing runs."""
    plan, values = case
    assume(shutil.which(plan.command, path=os.environ["PATH"]) is None)
    _injected()  # whatever an earlier, failed example left
    env = _env(home, values)
    try:
        r = subprocess.run(
            ["/bin/bash", "-c", render_setup(plan)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=90,
        )
        if r.returncode == 0:
            parse_report(r.stdout)
        else:
            assert r.stderr
    finally:
        for sock in (_ROOT / "t").glob("tmux-*/*"):
            subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10)
        subprocess.run(["pkill", "-f", f"{home}"], capture_output=True, timeout=10)
        injected = _injected()
    assert not injected, f"injection via {plan!r}"
