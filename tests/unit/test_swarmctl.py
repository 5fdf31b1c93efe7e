"""``pull``'s refusals (before any call), its in-sandbox script under real bash and git, and the local
verification of what it downloads. The whole path against the emulators is tests/e2e/test_pull.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarm_operator import swarmctl
from swarm_operator.backend import CommandResult
from swarm_operator.console import ConsoleError, Swarm

WORKSPACE = {"repo": "https://git.example.com/r.git", "ref": "v1"}
READY = {"phase": "Ready", "sandbox": {"id": "sbx-1"}, "workspace": {"commit": "a" * 40}}


def _swarm(spec: dict[str, Any], status: dict[str, Any]) -> Swarm:
    meta = {"name": "s", "namespace": "n", "uid": "u-1"}
    return Swarm(api=None, body={"metadata": meta, "spec": spec, "status": status})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "status", "says"),
    [
        ({}, READY, "swarm n/s has no spec.workspace"),
        ({"workspace": WORKSPACE, "suspend": True}, READY, "is suspended"),
        ({"workspace": WORKSPACE}, {**READY, "phase": "Suspended"}, "is suspended"),
        ({"workspace": WORKSPACE}, {"phase": "Creating"}, "is not Ready (phase Creating)"),
        ({"workspace": WORKSPACE}, {"phase": "Ready", "sandbox": {"id": "x"}}, "is not Ready (phase Ready)"),
        ({"workspace": WORKSPACE}, {}, "is not Ready (phase Pending)"),
    ],
)
def test_refused_before_any_call(
    tmp_path: Path, spec: dict[str, Any], status: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConsoleError, match=says.replace("(", r"\(").replace(")", r"\)")):
        swarmctl.pull(_swarm(spec, status), tmp_path / "out")  # api=None: a call would crash instead
    assert not (tmp_path / "out").exists()


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _script(home: Path, workdir: str) -> CommandResult:
    """The bundle script as the sandbox runs it: bash, in the home, HOME set to it."""
    proc = subprocess.run(
        ["bash", "-c", swarmctl._bundle_script(workdir)],
        cwd=home,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def test_the_bundle_script_bundles_every_ref_and_head(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "ws").mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=home / "ws")
    _git("commit", "-q", "--allow-empty", "-m", "one", cwd=home / "ws")
    _git("checkout", "-q", "-b", "topic", cwd=home / "ws")
    _git("commit", "-q", "--allow-empty", "-m", "two", cwd=home / "ws")
    head = _git("rev-parse", "HEAD", cwd=home / "ws").strip()
    made = _script(home, "ws")
    found, remote = swarmctl._made(_swarm({}, {}), "ws", made)
    assert found == head and (home / remote).is_file()
    swarmctl._verify(home / remote, head)
    heads = _git("bundle", "list-heads", str(home / remote), cwd=tmp_path)
    assert {line.split()[1] for line in heads.splitlines()} == {"HEAD", "refs/heads/main", "refs/heads/topic"}
    with pytest.raises(ConsoleError, match="HEAD is not the sandbox's"):
        swarmctl._verify(home / remote, "b" * 40)
    (home / remote).write_bytes((home / remote).read_bytes()[:-20])  # truncated in transit
    with pytest.raises(ConsoleError, match="does not verify"):
        swarmctl._verify(home / remote, head)


def test_the_bundle_script_says_what_is_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "empty").mkdir(parents=True)
    with pytest.raises(ConsoleError, match="no git repository at nowhere"):
        swarmctl._made(_swarm({}, {}), "nowhere", _script(home, "nowhere"))
    _git("init", "-q", cwd=home / "empty")
    with pytest.raises(ConsoleError, match="has no commit yet"):
        swarmctl._made(_swarm({}, {}), "empty", _script(home, "empty"))
    assert not list(home.glob(".swarm-pull.*"))  # nothing left behind


def test_an_answer_naming_another_path_is_refused() -> None:
    """Only the scratch directory the script made is downloaded and removed, whatever else it prints."""
    for path in ("/home/user/.ssh/id_rsa", "../x/workspace.bundle", ".swarm-pull.x/../../workspace.bundle"):
        with pytest.raises(ConsoleError, match="git bundle create failed"):
            swarmctl._made(_swarm({}, {}), "ws", CommandResult(0, f"{'a' * 40} 10 {path}\n"))
