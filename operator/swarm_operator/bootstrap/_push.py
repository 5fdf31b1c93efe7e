"""The push script: the agents' work out of the sandbox, to a branch (``spec.workspace.push``).

Rendered like the other scripts (constant body ``push.sh`` behind shell-quoted assignments), run in
one call with the push credential on its stdin (:func:`~._render.secret_input`, the name
:data:`~._plan.GIT_PASSWORD_ENV`), answered with one JSON :class:`PushReport`.
"""

from __future__ import annotations

from typing import Final, Literal

from swarm_operator.bootstrap._plan import BootstrapPlan
from swarm_operator.bootstrap._render import _render
from swarm_operator.bootstrap._report import _Model, _parse

__all__ = ["PUSH_AUTHOR", "PUSH_EMAIL", "PushReport", "parse_push", "render_push"]

#: Who a work-in-progress commit is by: fixed, so it is told from the agents' own commits.
PUSH_AUTHOR: Final = "swarm-operator"
PUSH_EMAIL: Final = "swarm-operator@users.noreply.invalid"


class PushReport(_Model):
    """What one push run did. ``pushed`` is the commit the branch now holds (None: nothing was
    pushed, see ``error`` or ``skipped``); ``wip``: it is a work-in-progress commit of uncommitted
    changes on top of ``head``, the agents' HEAD."""

    kind: Literal["push"]
    version: int
    branch: str
    head: str | None = None
    commit: str | None = None
    pushed: str | None = None
    wip: bool = False
    error: str | None = None
    skipped: str | None = None


def render_push(plan: BootstrapPlan, *, branch: str, lease: str | None, why: str) -> str:
    """The push script for the workspace of ``plan`` (repo, path, user name, git timeout).

    ``lease``: the commit this resource pushed to ``branch`` last, which the push may overwrite
    (--force-with-lease); None: the push must fast-forward. ``why`` goes in the WIP commit's
    message (e.g. "before the sandbox is deleted"); it is plain text, rendered quoted."""
    if not plan.workspace_repo:
        raise ValueError("a push needs the plan's workspace repository")
    return _render(
        "push",
        plan,
        {
            "SWARM_WS_REPO": plan.workspace_repo,
            "SWARM_WS_USERNAME": plan.workspace_username,
            "SWARM_GIT_TIMEOUT_S": plan.git_timeout_s,
            "SWARM_LOCK_TIMEOUT_S": plan.lock_timeout_s,
            "SWARM_PUSH_BRANCH": branch,
            "SWARM_PUSH_LEASE": lease or "",
            "SWARM_PUSH_AUTHOR": PUSH_AUTHOR,
            "SWARM_PUSH_EMAIL": PUSH_EMAIL,
            "SWARM_PUSH_MESSAGE": f"WIP: uncommitted work saved by swarm-operator {why}"[:500],
        },
    )


def parse_push(stdout: str) -> PushReport:
    """The push script's report from its whole stdout."""
    return _parse(stdout, PushReport)
