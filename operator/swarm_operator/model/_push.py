"""``spec.workspace.push`` and ``status.workspace.push``: where the agents' commits go so that no
sandbox end (delete, TTL, budget, hand-over, pause) loses them, and what the last push did."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from swarm_operator.model._agent import SecretRef
from swarm_operator.model._vocab import _Spec

#: A branch name as the schema lets it through; git check-ref-format's other rules are checked by
#: the CEL rules and :meth:`PushSpec._branch_name` (the same ones, so the model refuses what the
#: API server refuses).
PUSH_BRANCH: Final = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
#: Shortest and longest push cadence.
#: The CEL rule (the API server's refusal) and its Python mirror (the model's, and _crd's).
PUSH_BRANCH_RULE: Final = (
    "!self.branch.startsWith('refs/') && self.branch != 'HEAD' && !self.branch.contains('..') "
    "&& !self.branch.contains('//') && !self.branch.contains('/.') && !self.branch.endsWith('/') "
    "&& !self.branch.endsWith('.') && !self.branch.endsWith('.lock')"
)
_BRANCH_MESSAGE: Final = (
    "branch must be a plain git branch name (e.g. swarm/results): not refs/..., not HEAD, no '..', "
    "'//' or '/.', not ending in '/', '.' or '.lock'"
)


def push_branch_ok(branch: str) -> bool:
    """:data:`PUSH_BRANCH_RULE` in Python."""
    return not (
        branch.startswith("refs/")
        or branch == "HEAD"
        or any(bad in branch for bad in ("..", "//", "/."))
        or branch.endswith(("/", ".", ".lock"))
    )


PUSH_INTERVAL_MIN_S: Final = 10
PUSH_INTERVAL_MAX_S: Final = 86_400


class PushSpec(_Spec):
    """Push the workspace's HEAD to a branch of the workspace repository, periodically and before
    every sandbox end the operator controls. Uncommitted changes (untracked files included) are
    first committed as a work-in-progress commit by a fixed author, ``swarm-operator``."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": PUSH_BRANCH_RULE, "message": _BRANCH_MESSAGE}]
        }
    )

    branch: str = Field(
        min_length=1,
        max_length=200,
        pattern=PUSH_BRANCH,
        description="Branch of spec.workspace.repo the workspace's HEAD is pushed to (created if "
        "absent). A push fast-forwards it, or overwrites only what this resource pushed last "
        "(--force-with-lease): commits someone else pushed there are never overwritten. A new "
        "sandbox of the resource (template or egress change, lifetime hand-over) starts from the "
        "commit pushed last.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding a token allowed to push. Unset: the workspace's "
        "credentialsSecretRef. Handled like the clone's: on the push script's stdin, then a 0600 "
        "file read by a git credential helper and removed when the push ends.",
    )
    interval_seconds: int = Field(
        default=300,
        ge=PUSH_INTERVAL_MIN_S,
        le=PUSH_INTERVAL_MAX_S,
        description="How often the workspace is pushed while the swarm runs (checked on the health "
        "probe's cadence, so never more often than the probe). Pushes before a sandbox ends do not "
        "wait for it.",
    )

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, branch: str) -> str:
        # git check-ref-format's rules that the pattern cannot say (the CEL rule says the same).
        if not push_branch_ok(branch):
            raise ValueError(_BRANCH_MESSAGE)
        return branch


class PushStatus(BaseModel):
    """The last push of the workspace (``spec.workspace.push``)."""

    # model._status's settings (that module imports this one, so not its base class).
    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, alias_generator=to_camel, validate_assignment=True
    )

    branch: str | None = Field(default=None, max_length=200, description="The branch pushed to.")
    commit: str | None = Field(
        default=None,
        max_length=64,
        description="The commit the branch holds after the last push that succeeded.",
    )
    time: datetime | None = Field(default=None, description="When that push succeeded.")
    sandbox: str | None = Field(default=None, max_length=128, description="The sandbox it was pushed from.")
    wip: bool | None = Field(
        default=None, description="Whether that push first committed uncommitted changes as a WIP commit."
    )
    error: str | None = Field(
        default=None, max_length=1024, description="Why the last attempt failed; unset once a push succeeds."
    )
    failed_at: datetime | None = Field(default=None, description="When the last attempt failed.")
