"""What the in-sandbox scripts are rendered from: a frozen, validated plan.

The lifecycle maps a SwarmSandbox's spec onto a :class:`BootstrapPlan`; this package never reads the
spec itself, so the scripts' contract stays small and testable on its own. Validation here guards the
*script*, not the product rules (pinning of the coordinator, limits of the CRD live in the model):
names that the script uses as shell identifiers or tmux targets are restricted to safe alphabets, and
NUL is refused everywhere because no shell string or argv element can carry it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources
from typing import Annotated, Final

import pydantic

from swarm_operator.bootstrap._agentname import CLAUDE_CODE_COMMAND, program

__all__ = [
    "AGENT_CLI_PACKAGES",
    "CLAUDE_CODE_PACKAGE",
    "COORDINATOR_PYTHON",
    "GIT_PASSWORD_ENV",
    "MCP_GATEWAY_PORT",
    "NPM_INTEGRITY",
    "NPM_NATIVE",
    "NPM_PINNED",
    "UV_PIN",
    "BootstrapPlan",
    "coordinator_lock",
    "secret_env_name",
    "session_name",
    "socket_name",
]

#: Script-only secrets (workspace credentials, MCP tokens) arrive in the setup script's environment
#: under this prefix; the script unsets every one of them before it starts any long-lived process,
#: so neither the tmux server nor an agent ever inherits them.
SECRET_ENV_PREFIX: Final = "SWARM_SECRET_"
#: The workspace token or password, read by the credential helper only.
GIT_PASSWORD_ENV: Final = SECRET_ENV_PREFIX + "GIT_PASSWORD"
#: The port E2B's SDK expects the MCP gateway on (``Sandbox.mcp_port``).
MCP_GATEWAY_PORT: Final = 50005
#: The Claude Code CLI a sandbox without one gets (``npm install -g``), and the default of
#: ``swarm-operator template --agent-cli``: the one copy of this pin. 2.1.197 is the last release whose
#: ``engines`` accepts Node 18+ (2.1.198 and later declare Node >= 22); E2B's ``base`` template ships
#: Node 20.9.0 (e2b-dev/E2B templates/base/e2b.Dockerfile: ``ENV NODE_VERSION 20.9.0``).
CLAUDE_CODE_PACKAGE: Final = "@anthropic-ai/claude-code@2.1.197"
#: The coordinator (claudeswarm) needs Python >= 3.12 (its pyproject's requires-python); E2B's
#: ``base`` builds on python:3.11 (3.11.6). On an older python3 the setup script gets a managed Python
#: from uv instead (``uv venv --python 3.12``), uv itself installed at this pin with
#: ``python3 -m pip install --user``: the one copy of the pin.
COORDINATOR_PYTHON: Final = "3.12"
UV_PIN: Final = "uv==0.13.8"
#: Agent commands the setup script can install when the template lacks them, by command name.
AGENT_CLI_PACKAGES: Final = {CLAUDE_CODE_COMMAND: CLAUDE_CODE_PACKAGE}
#: The npm registry's ``dist.integrity`` of each pinned package the operator installs, read once
#: from registry.npmjs.org (``GET /@anthropic-ai%2fclaude-code/2.1.197``) and recorded here: the
#: setup script and the template refuse a tarball whose sha512 differs. A package the operator does
#: not know (a custom agent CLI pin) is installed by name, trusting the registry as npm does.
NPM_INTEGRITY: Final = {
    CLAUDE_CODE_PACKAGE: "sha512-EqrwbRcI7M5y8jQlayIfTMmbZJ2OQaLOc7KwIWKdryQCdKWUEFr+C9rMovZUuj2Asndi7aqLujEzRtr471gncg==",
    "@anthropic-ai/claude-code-linux-x64@2.1.197": "sha512-rIlKmrY0QMyHgPRX/MYWNj039vbypICvI9jVe3rs9Xy2RnNklySjyPxqh62QadznzoftEO23uYQ1tFePcQ//bg==",
    "@anthropic-ai/claude-code-linux-arm64@2.1.197": (
        "sha512-sx6SoGj3MNR5CV+YDkNtbLHXa1tn3G8qcYFgm1gnvOi9ODQUKbhiPfankJfkTMDVekOvnKJhm6i9hGFIPzp7cQ=="
    ),
}
#: Claude Code is a small wrapper whose native binary comes in an optional per-platform package
#: (its ``optionalDependencies``; ``install.cjs`` finds it next to the wrapper). npm would fetch that
#: one itself, checked only against the registry, so the operator pins it too: per ``uname -m`` of a
#: glibc Linux (E2B's templates are Debian), packed and checked like the wrapper, then installed
#: beside it with ``--omit=optional``.
NPM_NATIVE: Final = {
    CLAUDE_CODE_PACKAGE: {
        "x86_64": "@anthropic-ai/claude-code-linux-x64@2.1.197",
        "aarch64": "@anthropic-ai/claude-code-linux-arm64@2.1.197",
    },
}
_INTEGRITY = re.compile(r"sha512-[A-Za-z0-9+/]{86}==")
#: An exact npm package version, e.g. ``@anthropic-ai/claude-code@2.1.197``: no ranges, no tags,
#: and never anything npm could read as an option (it starts with ``@`` or a letter or digit).
NPM_PINNED: Final = re.compile(
    r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$"
)
_SECRET_ENV = re.compile(r"SWARM_SECRET_[A-Z0-9_]{1,64}")
_HTTPS_URL = re.compile(r"https://[^\s\x00-\x1f]+")


@functools.cache
def coordinator_lock() -> tuple[str, str]:
    """``(pin, text)`` of the shipped lock (``coordinator.lock``, written by
    ``scripts/lock-coordinator``): the coordinator requirement it was resolved for (its first
    line, ``# coordinator: <pin>``) and the requirements file with a sha256 for every wheel."""
    text = (resources.files(__package__) / "coordinator.lock").read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    if not first.startswith("# coordinator: "):
        raise RuntimeError("coordinator.lock lacks its '# coordinator: <pin>' header")
    return first.removeprefix("# coordinator: ").strip(), text


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
_RESERVED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "IFS",
        "PWD",
        "OLDPWD",
        "SHELL",
        "SHELLOPTS",
        "BASHOPTS",
        "BASH_ENV",
        "ENV",
        "CDPATH",
        "GLOBIGNORE",
        "PS4",
        "TMUX",
        "TMUX_PANE",
        "TMUX_TMPDIR",
        "REPLY",
        "UID",
        "EUID",
        "PPID",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "P_ID",
        "P_PID",
        "P_DEAD",
        "P_STATUS",
        "P_TARGET",
        "P_RESTARTS",
        "P_CMD",
        "EXTRA_IDS",
        "REPLY_ARGV",
    }
)
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
    # An agent is "ready" once it has run this long (its age from the kernel's start time); one
    # that crashes at once (command not found, bad arguments, a missing variable in a wrapper:
    # all within milliseconds of exec) is reported dead. Anything that dies later is the first
    # health probe's to find, as it would be after any wait: 0.1 s, not 0.3 s (issue 19).
    settle_s: Annotated[float, pydantic.Field(ge=0, le=60)] = 0.1
    poll_interval_s: Annotated[float, pydantic.Field(ge=0.01, le=10)] = 0.05
    #: The bound on each installer the provision step runs (apt-get update, apt-get install, npm,
    #: the coordinator's venv and pip): cut by ``timeout``, reported, never a hang.
    install_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 300
    #: The pinned npm package that provides ``command`` when the sandbox lacks it (installed with
    #: ``sudo npm install -g``). None: the one :data:`AGENT_CLI_PACKAGES` knows for this command
    #: (Claude Code for ``claude``), else nothing; "" never installs an agent CLI.
    agent_cli_install: _Text | None = None
    #: The ``sha512-...`` integrity the packed ``agent_cli_install`` tarball must have. None: the one
    #: :data:`NPM_INTEGRITY` records for that pin, else none (installed by name, unchecked).
    agent_cli_integrity: _Text | None = None
    #: ``(uname -m, package, integrity)`` of the agent CLI's pinned native packages. None: what
    #: :data:`NPM_NATIVE` and :data:`NPM_INTEGRITY` record for ``agent_cli_install``, else none.
    agent_cli_native: tuple[tuple[str, str, str], ...] | None = None
    #: A requirements file with hashes for the coordinator's dependencies (see the setup script's
    #: provision step). None: the shipped lock when ``coordinator_install`` is the pin it was made
    #: for (the operator's default), else none: a custom pin installs as pip resolves it.
    coordinator_lock: _Text | None = None
    #: Bound on each network git call of the workspace step (ls-remote, fetch).
    git_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 120
    discover_timeout_s: Annotated[int, pydantic.Field(ge=1, le=600)] = 60
    lock_timeout_s: Annotated[int, pydantic.Field(ge=1, le=3600)] = 120
    restart_dead: bool = True
    #: Restarts allowed per agent (counted on its pane); None = no limit.
    max_restarts: Annotated[int, pydantic.Field(ge=0, le=1000)] | None = None
    python: Annotated[_Text, pydantic.Field(min_length=1)] = "python3"
    #: The oldest Python (``M.m``) the coordinator runs on; an older ``python`` gets a managed one
    #: from uv (:data:`uv_pin`) for the coordinator's venv.
    coordinator_python: Annotated[str, pydantic.Field(pattern=r"^[0-9]{1,2}\.[0-9]{1,3}$")] = (
        COORDINATOR_PYTHON
    )
    uv_pin: Annotated[str, pydantic.Field(pattern=r"^uv==[0-9]+\.[0-9]+\.[0-9]+$")] = UV_PIN
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
    #: A new workspace's first commit instead of ``workspace_ref`` (the commit spec.workspace.push
    #: pushed last: a new sandbox carries on the work). Never moves an existing workspace.
    workspace_start: Annotated[str, pydantic.Field(pattern=r"^([0-9a-f]{40})?$")] = ""
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

    @pydantic.field_validator("agent_cli_install")
    @classmethod
    def _npm_pinned(cls, package: str | None) -> str | None:
        if package and not NPM_PINNED.match(package):
            raise ValueError(f"{package!r} is not an exact npm version (e.g. {CLAUDE_CODE_PACKAGE})")
        return package

    @pydantic.field_validator("agent_cli_integrity")
    @classmethod
    def _sha512(cls, integrity: str | None) -> str | None:
        if integrity and not _INTEGRITY.fullmatch(integrity):
            raise ValueError("must be an npm sha512 integrity: sha512-<88 base64 characters>")
        return integrity

    @pydantic.field_validator("agent_cli_native")
    @classmethod
    def _native(
        cls, native: tuple[tuple[str, str, str], ...] | None
    ) -> tuple[tuple[str, str, str], ...] | None:
        for machine, package, integrity in native or ():
            if (
                not re.fullmatch(r"[a-z0-9_]{1,32}", machine)
                or not NPM_PINNED.match(package)
                or not _INTEGRITY.fullmatch(integrity)
            ):
                raise ValueError(
                    f"native package {(machine, package, integrity)!r} must be "
                    "(uname -m, an exact npm version, a sha512 integrity)"
                )
        return native

    @pydantic.model_validator(mode="after")
    def _defaults(self) -> BootstrapPlan:
        if not self.state_dir:
            object.__setattr__(self, "state_dir", f".swarm/{self.session}")
        if self.agent_cli_install is None:
            object.__setattr__(self, "agent_cli_install", AGENT_CLI_PACKAGES.get(program(self.command), ""))
        if self.agent_cli_integrity is None:
            object.__setattr__(
                self, "agent_cli_integrity", NPM_INTEGRITY.get(self.agent_cli_install or "", "")
            )
        if self.agent_cli_native is None:
            native = NPM_NATIVE.get(self.agent_cli_install or "", {}) if self.agent_cli_integrity else {}
            object.__setattr__(
                self,
                "agent_cli_native",
                tuple((machine, package, NPM_INTEGRITY[package]) for machine, package in native.items()),
            )
        if self.coordinator_lock is None:
            pin, text = coordinator_lock()
            object.__setattr__(self, "coordinator_lock", text if self.coordinator_install == pin else "")
        return self

    @property
    def provision_budget_s(self) -> int:
        """The most the provision step can take: at most ten bounded installers (apt-get update,
        apt-get install, npm pack of the agent CLI and of its native package, npm install, then for
        the coordinator either venv + pip for its locked dependencies + pip for itself or, on a Python
        older than it needs, uv + ``uv venv`` + ``uv pip`` twice), each cut by ``timeout`` and killed
        10 s later. A caller's command timeout must allow this on top of its own, or a first run on a
        bare template is cut before it can report."""
        return 10 * (self.install_timeout_s + 10)


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
