"""The push script (spec.workspace.push) in real bash and git: a WIP commit of uncommitted work made
through a private index (the agents' HEAD, index and files untouched), pushed to the branch; the
branch is fast-forwarded, or overwritten only over the commit this resource pushed last."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from swarm_operator import bootstrap
from swarm_operator.bootstrap import BootstrapReportError, parse_push, render_push, secret_input

_ID = {
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "a@x",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "a@x",
}


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **_ID}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _plan(home: Path, remote: Path) -> bootstrap.BootstrapPlan:
    # The plan takes https:// only: the sandbox's git maps that URL to the local bare repository.
    url = "https://git.test/remote.git"
    (home / ".gitconfig").write_text(f'[url "{remote}"]\n\tinsteadOf = {url}\n')
    return bootstrap.BootstrapPlan(
        session="swp", socket="swp", agents=1, command="true", workdir="workspace", workspace_repo=url
    )


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A bare 'server' repository and the sandbox's clone of it (home/workspace)."""
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    home = tmp_path / "home"
    work = home / "workspace"
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    (work / "a.txt").write_text("one\n")
    _git(work, "add", ".")
    _git(work, "commit", "-qm", "base")
    _git(work, "push", "-q", str(remote), "HEAD:refs/heads/main")
    return home, remote


def _push(home: Path, remote: Path, *, lease: str | None = None, secret: str = "tok") -> bootstrap.PushReport:
    script = render_push(_plan(home, remote), branch="swarm/out", lease=lease, why="before the test ends")
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    run = subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=home,
        input=secret_input({bootstrap.GIT_PASSWORD_ENV: secret}),
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert secret.encode() not in run.stdout + run.stderr
    return parse_push(run.stdout.decode())


def test_uncommitted_work_is_pushed_as_a_wip_commit_and_the_agents_tree_is_untouched(
    repo: tuple[Path, Path],
) -> None:
    home, remote = repo
    work = home / "workspace"
    (work / "a.txt").write_text("two\n")
    _git(work, "commit", "-qam", "agent commit")
    agent_head = _git(work, "rev-parse", "HEAD")
    (work / "a.txt").write_text("three (uncommitted)\n")
    (work / "new.txt").write_text("untracked\n")
    status_before = _git(work, "status", "--porcelain")

    report = _push(home, remote)

    assert report.error is None and report.wip and report.head == agent_head
    assert report.pushed == report.commit == _git(remote, "rev-parse", "refs/heads/swarm/out")
    assert _git(remote, "rev-parse", f"{report.pushed}^") == agent_head
    assert _git(remote, "show", f"{report.pushed}:new.txt") == "untracked"
    assert _git(remote, "show", f"{report.pushed}:a.txt") == "three (uncommitted)"
    assert _git(remote, "log", "-1", "--format=%an <%ae>|%s", report.pushed) == (
        f"{bootstrap.PUSH_AUTHOR} <{bootstrap.PUSH_EMAIL}>|WIP: uncommitted work saved by swarm-operator "
        "before the test ends"
    )
    # The agents' HEAD, index and files are as they were.
    assert _git(work, "rev-parse", "HEAD") == agent_head
    assert _git(work, "status", "--porcelain") == status_before
    assert not list((home / ".swarm").glob("*/git-push-credential")) and not list(
        (home / ".swarm").glob("*/push.index")
    )


def test_a_clean_tree_pushes_head_and_an_unchanged_one_sends_nothing(repo: tuple[Path, Path]) -> None:
    home, remote = repo
    head = _git(home / "workspace", "rev-parse", "HEAD")
    first = _push(home, remote)
    assert (first.pushed, first.wip) == (head, False)
    # Nothing new since the last push (the lease): reported pushed, no network (the remote is gone).
    remote.rename(remote.with_suffix(".gone"))
    again = _push(home, remote, lease=head)
    assert (again.pushed, again.error) == (head, None)


def test_the_lease_overwrites_only_what_was_pushed_last(repo: tuple[Path, Path]) -> None:
    home, remote = repo
    work = home / "workspace"
    (work / "b.txt").write_text("wip\n")
    wip = _push(home, remote)
    assert wip.wip and wip.pushed
    # The agents commit on top of HEAD (not of the WIP commit): the branch is overwritten, since
    # it holds what this resource pushed last.
    _git(work, "add", "b.txt")
    _git(work, "commit", "-qm", "agent work")
    second = _push(home, remote, lease=wip.pushed)
    assert second.error is None and second.pushed == _git(work, "rev-parse", "HEAD")
    # Without the lease (someone else's branch) a non-fast-forward is refused, and reported.
    _git(work, "commit", "-q", "--amend", "-m", "rewritten")
    refused = _push(home, remote, lease=None)
    assert refused.pushed is None and refused.error and "git push to swarm/out failed" in refused.error
    assert _git(remote, "rev-parse", "refs/heads/swarm/out") == second.pushed
    # Nor with a stale lease (the branch moved since): the other commits are kept.
    stale = _push(home, remote, lease=wip.pushed)
    assert stale.pushed is None and _git(remote, "rev-parse", "refs/heads/swarm/out") == second.pushed


def test_no_clone_is_skipped_not_failed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    report = _push(home, tmp_path / "nowhere.git")
    assert (
        report.pushed is None
        and report.error is None
        and report.skipped
        and "not a git clone" in report.skipped
    )


def test_user_text_is_quoted_and_the_secret_never_rendered(repo: tuple[Path, Path]) -> None:
    home, remote = repo
    script = render_push(_plan(home, remote), branch="a/b", lease=None, why="$(touch /tmp/pwned) 'x'")
    assert (
        "SWARM_PUSH_MESSAGE='WIP: uncommitted work saved by swarm-operator $(touch /tmp/pwned) '\"'\"'x'\"'\"''"
        in script
    )
    with pytest.raises(ValueError):
        render_push(
            bootstrap.BootstrapPlan(session="s", socket="s", agents=1, command="true"),
            branch="b",
            lease=None,
            why="",
        )


def test_parse_push_refuses_what_is_not_a_push_report() -> None:
    ok = parse_push(
        'x\n---SWARM-REPORT-BEGIN---\n{"kind":"push","version":1,"branch":"b","pushed":"abc","wip":true}\n---SWARM-REPORT-END---\n'
    )
    assert ok.pushed == "abc" and ok.wip
    for bad in (
        "",
        "no markers",
        '---SWARM-REPORT-BEGIN---\n{"kind":"probe","version":1}\n---SWARM-REPORT-END---',
    ):
        with pytest.raises(BootstrapReportError):
            parse_push(bad)
