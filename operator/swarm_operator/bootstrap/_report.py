"""The scripts' one machine-read output, as typed models.

A script prints many things (a login shell's profile, pip, the agents' tmux noise never does, but a
sandbox image might); the report is the JSON object between the last pair of markers. Anything else
on stdout is ignored, and a missing, unterminated or malformed report is a clear
:class:`BootstrapReportError`, never a half-parsed status.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

import pydantic

__all__ = [
    "BootstrapReport",
    "BootstrapReportError",
    "CoordinatorReport",
    "HealthReport",
    "PaneReport",
    "ProgressReport",
    "McpReport",
    "McpServerReport",
    "RegistryReport",
    "StepError",
    "WorkspaceReport",
    "TaskPaneReport",
    "TaskReport",
    "TeardownReport",
    "parse_health",
    "parse_report",
    "parse_task",
    "parse_teardown",
]

MARK_BEGIN = "---SWARM-REPORT-BEGIN---"
MARK_END = "---SWARM-REPORT-END---"


class BootstrapReportError(ValueError):
    """The output holds no valid report: the script failed before reporting, or is not ours."""


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")


class PaneReport(_Model):
    """One agent's pane. ``alive``: the agent process runs (exec'd, pane not dead)."""

    index: int
    target: str | None  # "session:window.pane" — what a human or claudeswarm addresses
    pane_id: str | None  # tmux's stable "%N"
    pid: int | None
    alive: bool
    dead: bool
    exit_status: int | None
    exit_signal: int | None = None
    command: str | None
    restarts: int = 0


class AgentCounts(_Model):
    desired: int
    ready: int
    failed: int


class CoordinatorReport(_Model):
    enabled: bool
    installed: bool
    discovered: int | None  # agents claudeswarm registered; None when discovery did not run
    error: str | None


class WorkspaceReport(_Model):
    """The workspace clone. ``floating``: the ref named a branch, which the spec did not allow."""

    repo: str
    ref: str
    path: str
    commit: str | None
    floating: bool = False
    error: str | None = None


class McpServerReport(_Model):
    ok: bool
    message: str = ""


class McpReport(_Model):
    """The MCP gateway as the script (or a probe) found it.

    ``gateway`` is the verdict of a real MCP exchange on ``/mcp`` (``initialize`` then
    ``tools/list``, the protocol every MCP client speaks to E2B's gateway), so it holds for any
    gateway, not only our stand-in. ``servers`` is per-server detail, present only when the gateway
    also answers ``GET /health`` with it; E2B documents no such endpoint, so with the real gateway
    it is ``None`` and a server counts as ready when the gateway serves tools.
    """

    gateway: bool  # the gateway answered initialize and tools/list
    started: bool = False  # started (or restarted with a new configuration) by this run
    tools: int | None = None  # tools the gateway lists, all servers together
    servers: dict[str, McpServerReport] | None = None
    restarts: int = 0  # times the gateway was restarted under its current configuration
    error: str | None = None


class StepError(_Model):
    """A failure the script counted and carried on after (per agent when ``agent`` is set)."""

    step: str
    agent: int | None
    message: str


class BootstrapReport(_Model):
    """The result of one setup run (create, rerun, scale, or self-heal: it is the same script)."""

    kind: Literal["setup"]
    version: int
    session: str
    socket: str
    state_dir: str
    server: bool
    agents: AgentCounts
    panes: list[PaneReport]
    created: list[int]
    removed: list[int]
    restarted: list[int]
    env_missing: list[str]
    timed_out: bool
    coordinator: CoordinatorReport
    #: Seconds per step: prepare, env, workspace, mcp, agent_config, provision (only when an
    #: installer ran), tmux, ready, discover.
    steps: dict[str, float]
    errors: list[StepError]
    workspace: WorkspaceReport | None = None
    mcp: McpReport | None = None
    #: What this run's provision step installed, as it was asked for: apt packages (``tmux``), the
    #: agent CLI's npm package and the coordinator's requirement, each with its pinned version;
    #: empty when the template had everything (and then ``steps`` has no ``provision``).
    installed: list[str] = []
    #: Agent configuration files written, relative to the home directory.
    agent_config: list[str] = []

    @property
    def ready(self) -> bool:
        """All desired agents run and nothing failed; the operator may still decide otherwise."""
        return self.agents.ready == self.agents.desired and not self.errors


class ProbeCounts(_Model):
    desired: int
    alive: int
    dead: int


class RegistryReport(_Model):
    path: str
    agents: int | None
    mtime: int | None


#: Bounds of the probe's progress figures: far above anything real, so only a report that was
#: tampered with falls outside them (and is then not a report: a probe fault).
_Count = Annotated[int, pydantic.Field(ge=0, le=10**9)]
_Epoch = Annotated[int, pydantic.Field(ge=0, le=2**40)]


class AgentOutputReport(_Model):
    """When agent ``index`` last wrote to its terminal (epoch seconds, sandbox clock)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", strict=True)

    index: int = pydantic.Field(ge=0, le=99)
    output: _Epoch


class ProgressReport(_Model):
    """The agents' progress as the probe measured it: numbers and times only, never text from the
    sandbox, each validated in the script and again here (strictly: no "5" for 5). None: not
    measured (no coordinator, no pinned workspace, or the read failed or took too long)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", strict=True)

    messages: _Count | None = None  # lines of the coordinator's message log (and its rotated file)
    message_time: _Epoch | None = None  # the log's mtime: when the last message was written
    commits: _Count | None = None  # commits on HEAD since the pinned commit (counted up to 100000)
    files: _Count | None = None  # paths differing from the pinned commit, plus untracked files
    agents: list[AgentOutputReport] = pydantic.Field(default_factory=list, max_length=100)


class HealthReport(_Model):
    kind: Literal["probe"]
    version: int
    session: str
    server: bool
    agents: ProbeCounts
    missing: list[int]
    extra: int
    panes: list[PaneReport]
    registry: RegistryReport | None
    mcp: McpReport | None = None  # present when the spec configures MCP servers
    #: Epoch seconds of the agents' last pane output (tmux window_activity, newest window), and the
    #: sandbox's clock when probed: ages are taken on one clock.
    activity: int | None = None
    clock: int | None = None
    progress: ProgressReport | None = None

    def idle_seconds(self) -> int | None:
        """How long every agent has been quiet (no pane output, no coordinator registry change),
        on the sandbox's clock; None when the probe could not tell."""
        if self.activity is None or self.clock is None:
            return None
        last = max(self.activity, self.registry.mtime or 0) if self.registry is not None else self.activity
        return max(self.clock - last, 0)

    @property
    def healthy(self) -> bool:
        return self.server and self.agents.alive == self.agents.desired and not self.extra


class TeardownReport(_Model):
    kind: Literal["teardown"]
    version: int
    session: str
    server: bool  # a server was running when teardown began
    signalled: int
    graceful: bool  # every agent ended within the grace period after Ctrl-C
    killed: bool
    gone: bool  # the tmux server is gone and no agent process still runs


class TaskPaneReport(_Model):
    """One pane's share of spec.task: ``delivered`` now, ``held`` already (the in-sandbox mark has
    this very prompt), or ``failed`` with why."""

    index: int
    state: Literal["delivered", "held", "failed"]
    message: str | None = None


class TaskReport(_Model):
    kind: Literal["task"]
    version: int
    panes: list[TaskPaneReport]


_M = TypeVar("_M", bound=_Model)


def _extract(stdout: str) -> str:
    end = stdout.rfind(MARK_END)
    if end < 0:
        raise BootstrapReportError(
            f"no report in the script's output (no {MARK_END!r} marker); output ends with: {stdout[-300:]!r}"
        )
    begin = stdout.rfind(MARK_BEGIN, 0, end)
    if begin < 0:
        raise BootstrapReportError(f"report end marker without a begin marker: {stdout[-300:]!r}")
    return stdout[begin + len(MARK_BEGIN) : end].strip()


def _parse(stdout: str, model: type[_M]) -> _M:
    body = _extract(stdout)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise BootstrapReportError(f"the report is not valid JSON ({e}): {body[:300]!r}") from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise BootstrapReportError(f"the report does not match {model.__name__}: {e}") from None


def parse_report(stdout: str) -> BootstrapReport:
    """The setup script's report from its whole stdout."""
    return _parse(stdout, BootstrapReport)


def parse_health(stdout: str) -> HealthReport:
    """The probe script's report from its whole stdout."""
    return _parse(stdout, HealthReport)


def parse_task(stdout: str) -> TaskReport:
    """The task script's report from its whole stdout."""
    return _parse(stdout, TaskReport)


def parse_teardown(stdout: str) -> TeardownReport:
    """The teardown script's report from its whole stdout."""
    return _parse(stdout, TeardownReport)
