"""What the in-sandbox scripts are rendered from: a frozen, validated plan.

The lifecycle maps a SwarmSandbox's spec onto a :class:`BootstrapPlan`; this package never reads the
spec itself, so the scripts' contract stays small and testable on its own. Validation here guards the
*script*, not the product rules (pinning of the coordinator, limits of the CRD live in the model):
names that the script uses as shell identifiers or tmux targets are restricted to safe alphabets, and
NUL is refused everywhere because no shell string or argv element can carry it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

import pydantic

__all__ = ["BootstrapPlan", "session_name", "socket_name"]

# tmux silently rewrites ':' and '.' in session names and uses both as target separators; '|' is our
# list-panes field separator. This alphabet needs no quoting anywhere.
_TMUX_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Names the scripts (or bash itself) depend on, or that bash would act on before our first line.
_RESERVED_ENV = frozenset({
    "PATH", "HOME", "IFS", "PWD", "OLDPWD", "SHELL", "SHELLOPTS", "BASHOPTS", "BASH_ENV", "ENV",
    "CDPATH", "GLOBIGNORE", "PS4", "TMUX", "TMUX_PANE", "TMUX_TMPDIR", "REPLY", "UID", "EUID", "PPID",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "P_ID", "P_PID", "P_DEAD", "P_STATUS", "P_TARGET", "P_RESTARTS",
    "P_CMD", "EXTRA_IDS", "REPLY_ARGV",
})
_RESERVED_PREFIXES = ("SWARM_", "_SW", "BASH", "_sw")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL cannot be passed to a shell or a process")
    return value


_Text = Annotated[str, pydantic.AfterValidator(_no_nul)]


class BootstrapPlan(pydantic.BaseModel):
    """Everything the setup, probe and teardown scripts need, already decided by the operator.

    Paths (``workdir``, ``state_dir``) that are relative are taken relative to the sandbox user's
    ``$HOME``: the script never expands user text, so ``$HOME/...`` cannot be written literally.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    session: str
    socket: str
    agents: Annotated[int, pydantic.Field(ge=1, le=100)]
    command: Annotated[_Text, pydantic.Field(min_length=1)]
    args: tuple[_Text, ...] = ()
    env_names: tuple[str, ...] = ()
    workdir: _Text = ""
    state_dir: _Text = ""
    coordinator_enabled: bool = True
    coordinator_install: Annotated[_Text, pydantic.Field(min_length=1)] = "preinstalled"
    ready_timeout_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 60.0
    # An agent is "ready" once it has run this long; one that crashes at once is reported dead.
    settle_s: Annotated[float, pydantic.Field(ge=0, le=60)] = 1.0
    poll_interval_s: Annotated[float, pydantic.Field(ge=0.01, le=10)] = 0.2
    install_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 600
    discover_timeout_s: Annotated[int, pydantic.Field(ge=1, le=600)] = 60
    lock_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 120
    restart_dead: bool = True
    #: Restarts allowed per agent (counted on its pane); None = no limit.
    max_restarts: Annotated[int, pydantic.Field(ge=0, le=1000)] | None = None
    python: Annotated[_Text, pydantic.Field(min_length=1)] = "python3"
    # Big enough that tiled 100 panes stay >= 40x20 cells; more panes than fit go to new windows.
    window_width: Annotated[int, pydantic.Field(ge=10, le=10000)] = 400
    window_height: Annotated[int, pydantic.Field(ge=10, le=10000)] = 200

    @pydantic.field_validator("session", "socket")
    @classmethod
    def _tmux_safe(cls, value: str) -> str:
        if not _TMUX_NAME.fullmatch(value):
            raise ValueError("must be 1-64 characters of A-Z a-z 0-9 _ - (tmux-safe)")
        return value

    @pydantic.field_validator("env_names")
    @classmethod
    def _env_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name in _RESERVED_ENV or name.startswith(_RESERVED_PREFIXES):
                raise ValueError(f"{name!r} is reserved by the bootstrap script")
        if len(set(names)) != len(names):
            raise ValueError("environment variable names must be unique")
        return names

    @pydantic.model_validator(mode="after")
    def _default_state_dir(self) -> BootstrapPlan:
        if not self.state_dir:
            object.__setattr__(self, "state_dir", f".swarm/{self.session}")
        return self


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "x"


def session_name(namespace: str, name: str, uid: str) -> str:
    """A short, tmux-safe session name unique to one resource.

    The readable part (namespace, name) is truncated and lossy; uniqueness comes from the 10 hex
    digits of the uid's hash, so two resources never share a session even after a name is reused.
    """
    digest = hashlib.sha256(uid.encode()).hexdigest()[:10]
    return f"swarm-{_slug(namespace, 12)}-{_slug(name, 20)}-{digest}"


def socket_name(namespace: str, name: str, uid: str) -> str:
    """The tmux socket name (``tmux -L``) of one resource: its own server, never the default one."""
    return session_name(namespace, name, uid)
