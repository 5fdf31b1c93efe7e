"""What the in-sandbox scripts are rendered from: a frozen, validated plan.

The lifecycle maps a SwarmSandbox's spec onto a :class:`BootstrapPlan`; this package never reads the
spec itself, so the scripts' contract stays small and testable on its own. Validation here guards the
*script*, not the product rules (pinning of the coordinator, limits of the CRD live in the model):
names that the script uses as shell identifiers or tmux targets are restricted to safe alphabets, and
NUL is refused everywhere because no shell string or argv element can carry it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Final

import pydantic

__all__ = ["GIT_PASSWORD_ENV", "MCP_GATEWAY_PORT", "BootstrapPlan", "secret_env_name", "session_name",
           "socket_name"]

#: Script-only secrets (workspace credentials, MCP tokens) arrive in the setup script's environment
#: under this prefix; the script unsets every one of them before it starts any long-lived process,
#: so neither the tmux server nor an agent ever inherits them.
SECRET_ENV_PREFIX: Final = "SWARM_SECRET_"
#: The workspace token or password, read by the credential helper only.
GIT_PASSWORD_ENV: Final = SECRET_ENV_PREFIX + "GIT_PASSWORD"
#: The port E2B's SDK expects the MCP gateway on (``Sandbox.mcp_port``).
MCP_GATEWAY_PORT: Final = 50005
_SECRET_ENV = re.compile(r"SWARM_SECRET_[A-Z0-9_]{1,64}")
_HTTPS_URL = re.compile(r"https://[^\s\x00-\x1f]+")


def secret_env_name(*parts: str) -> str:
    """A script-only secret's variable name, built from safe parts (``MCP``, ``3``, ``apiKey``)."""
    name = SECRET_ENV_PREFIX + "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).upper() for p in parts)
    if not _SECRET_ENV.fullmatch(name):
        raise ValueError(f"cannot build a secret variable name from {parts!r}")
    return name

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
    settle_s: Annotated[float, pydantic.Field(ge=0, le=60)] = 0.3
    poll_interval_s: Annotated[float, pydantic.Field(ge=0.01, le=10)] = 0.05
    install_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 600
    #: Bound on each network git call of the workspace step (ls-remote, fetch).
    git_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 120
    discover_timeout_s: Annotated[int, pydantic.Field(ge=1, le=600)] = 60
    lock_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 120
    restart_dead: bool = True
    #: Restarts allowed per agent (counted on its pane); None = no limit.
    max_restarts: Annotated[int, pydantic.Field(ge=0, le=1000)] | None = None
    python: Annotated[_Text, pydantic.Field(min_length=1)] = "python3"
    # Big enough that tiled 100 panes stay >= 40x20 cells; more panes than fit go to new windows.
    window_width: Annotated[int, pydantic.Field(ge=10, le=10000)] = 400
    window_height: Annotated[int, pydantic.Field(ge=10, le=10000)] = 200
    #: The workspace: cloned into ``workdir`` when ``workspace_repo`` is set. ``workspace_ref`` is a
    #: full SHA, ``refs/...`` or a bare name the script resolves with ``git ls-remote``; the
    #: password (if any) is read from :data:`GIT_PASSWORD_ENV`.
    workspace_repo: _Text = ""
    workspace_ref: _Text = ""
    workspace_username: _Text = "x-access-token"
    workspace_allow_floating: bool = False
    #: JSON for the agent-config step (Claude Code): ``{"claude_json": {...}, "settings": {...},
    #: "files": {"NAME": "text"}}``; empty: write no agent configuration.
    agent_config: _Text = ""
    #: JSON for the MCP gateway: ``{"config": {server: {field: value}}, "secrets": [[server, field,
    #: ENV]], "workspace": [server, ...]}``: secret values come from the named variables, servers in
    #: "workspace" get the workspace directory as their only path. Empty: no gateway.
    mcp: _Text = ""
    mcp_gateway: Annotated[_Text, pydantic.Field(min_length=1)] = "mcp-gateway"
    mcp_port: Annotated[int, pydantic.Field(ge=1, le=65535)] = MCP_GATEWAY_PORT
    mcp_start_timeout_s: Annotated[int, pydantic.Field(ge=1, le=600)] = 20

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

    @pydantic.field_validator("workspace_repo")
    @classmethod
    def _https_repo(cls, repo: str) -> str:
        # The model validates the URL properly; this guards the script: never an option, never
        # a local path or another transport git would accept.
        if repo and not _HTTPS_URL.fullmatch(repo):
            raise ValueError("the workspace repository must be an https:// URL")
        return repo

    @pydantic.field_validator("agent_config")
    @classmethod
    def _agent_config_json(cls, text: str) -> str:
        if text and not isinstance(json.loads(text), dict):
            raise ValueError("agent_config must be a JSON object")
        return text

    @pydantic.field_validator("mcp")
    @classmethod
    def _mcp_json(cls, text: str) -> str:
        if not text:
            return text
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("mcp must be a JSON object with a config object")
        for entry in data.get("secrets", []):
            if len(entry) != 3 or not _SECRET_ENV.fullmatch(entry[2]):
                raise ValueError(f"mcp secret {entry!r} must be [server, field, SWARM_SECRET_*]")
        return text

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
