"""The SwarmSandbox resource as pydantic models: the one place a field is defined.

Every spec and status field lives here once, with its description, bounds and defaults. The CRD's
``openAPIV3Schema`` is generated from these models (``python -m swarm_operator._crd``), so ``kubectl
explain``, the API server's validation and the operator's own validation cannot drift apart.

Two layers refuse bad specs, on purpose:

- The API server (schema + CEL rules) refuses what is malformed — wrong types, out-of-range numbers,
  reserved env names — with a 422, before anything is stored.
- The operator re-validates every spec with :class:`SwarmSandboxSpec`, which refuses everything the
  schema refuses *and* a few things the schema deliberately lets through. The chief one is an unpinned
  ``coordinator.install``: the schema only bounds its length, so such a resource is stored and the
  operator reports ``Ready=False, reason=InvalidSpec`` naming the field. A 422 would be invisible to
  anyone reading the resource later (GitOps tools retry it silently); a condition is not.

Spec models are strict (no "4" for 4, no 1 for true) and forbid unknown keys, because the schema does.
Status models are lenient readers (the operator wrote what they read) and strict writers.
"""

from __future__ import annotations

import collections
import enum
import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "MAX_SECRETS",
    "MAX_ARGS_CHARS",
    "MAX_MCP_VALUE_CHARS",
    "MAX_SECRET_REFERENCES",
    "MAX_STEPS",
    "COORDINATOR_PIN",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "AgentItem",
    "AgentConfigSpec",
    "AgentSpec",
    "AgentsStatus",
    "BudgetSpec",
    "Condition",
    "CoordinatorSpec",
    "CostStatus",
    "E2BSpec",
    "EnvVar",
    "EnvVarSource",
    "HealthCheckSpec",
    "IdleSpec",
    "HealthStatus",
    "InvalidSpecError",
    "McpField",
    "McpServerSpec",
    "McpServerStatus",
    "MetricsStatus",
    "NetworkSpec",
    "NetworkStatus",
    "SecretsStatus",
    "Phase",
    "SandboxStatus",
    "SecretKeySelector",
    "SecretRef",
    "SwarmSandboxSpec",
    "SwarmSandboxStatus",
    "WorkspaceSpec",
    "WorkspaceStatus",
    "format_validation_error",
    "is_pinned_install",
    "network_entry_problem",
]

# --------------------------------------------------------------------------------------------------
# Shared vocabulary: patterns and reserved names. Patterns are written in the common subset of the
# three regex engines that apply them (Go's RE2 in the API server, Rust's regex in pydantic-core,
# Python's re in jsonschema): no lookarounds, no backreferences, no possessive quantifiers.
# --------------------------------------------------------------------------------------------------

#: A Kubernetes object name (RFC 1123 subdomain), as Secrets are named.
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A key inside a Secret's data, as Kubernetes allows it.
SECRET_KEY: Final = r"^[-._a-zA-Z0-9]+$"
#: A POSIX-portable environment variable name (stricter than Kubernetes' C_IDENTIFIER-ish rule,
#: because these end up in a shell environment inside the sandbox).
ENV_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: E2B template ids and aliases (``base``, ``my-team/claude-swarm:v3``): no shell metacharacters,
#: no whitespace, nothing that could be read as an option.
TEMPLATE: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
#: A program name or path: one word; arguments go to ``args`` (exec semantics, like a container's).
COMMAND: Final = r"^\S+$"
#: The schema's deliberately loose check of ``coordinator.install``; pinning is the operator's job.
INSTALL_LOOSE: Final = r"^\S+$"

#: Environment names the operator or the sandbox owns. Agent env is also the setup script's
#: environment (bash, run before any agent), so a name bash, the dynamic linker or glibc acts on at
#: start-up could run code or change what the script does before its first line: BASH_ENV and ENV
#: source a file, SHELLOPTS/BASHOPTS/POSIXLY_CORRECT/GLOBIGNORE/CDPATH/IFS/PS4 change how it runs,
#: LD_* and GLIBC_TUNABLES reach every process it starts. TMUX* would break the orchestration,
#: E2B_* the sandbox's own agent (envd), SWARM_* and _SW*/_sw* the operator's script-only values.
RESERVED_ENV_NAMES: Final = (
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "PWD",
    "OLDPWD",
    "IFS",
    "ENV",
    "CDPATH",
    "GLOBIGNORE",
    "SHELLOPTS",
    "POSIXLY_CORRECT",
    "PS4",
    "PROMPT_COMMAND",
    "REPLY",
    "UID",
    "EUID",
    "PPID",
)
RESERVED_ENV_PREFIXES: Final = ("SWARM_", "LD_", "BASH", "GLIBC_", "E2B_", "TMUX", "_SW", "_sw")
_RESERVED_ENV_TEXT: Final = (
    ", ".join(RESERVED_ENV_NAMES)
    + " or a name starting with "
    + ", ".join(RESERVED_ENV_PREFIXES[:-1])
    + " or "
    + RESERVED_ENV_PREFIXES[-1]
)

#: Secret key references one resource may carry (agent.env valueFrom, the two apiKeySecretRefs,
#: workspace.credentialsSecretRef, mcp tokenSecretRef and fields valueFrom): the schema's bound.
MAX_SECRET_REFERENCES: Final = 64
#: Characters all of ``agent.args`` may hold together, and all literal ``mcp[].fields[].value``
#: together. Both are rendered into the one setup script, which must fit in one command
#: (``bootstrap.MAX_SCRIPT_BYTES``, about 77 KB of it left for user text): these bounds refuse
#: at the API server what could never fit; the operator still renders and measures the whole
#: script (ConfigMap files included) before it creates a sandbox.
MAX_ARGS_CHARS: Final = 32_768
MAX_MCP_VALUE_CHARS: Final = 16_384
#: Distinct Secrets (by name) one resource may reference: each is read again every re-read interval
#: and its values held for log redaction, so a resource naming hundreds would cost every tenant.
#: Several keys of one Secret count once: group a resource's values in a few Secrets.
MAX_SECRETS: Final = 16

#: status.metrics.stepSeconds: step names (``create``, ``init``, ``init.<step of the setup script>``)
#: and how many are kept. The setup script's step names come from inside the sandbox, so they are
#: bounded here rather than trusted.
STEP_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,31})?$")
MAX_STEPS: Final = 32

_PINNED_NAME_VERSION: Final = re.compile(
    # PEP 508 name, optional extras, then exactly "==" and a literal version (no wildcard: "==1.*"
    # is a range). "===" (arbitrary equality) is refused too: it is an escape hatch, not a pin.
    r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9][A-Za-z0-9.+!_-]*$"
)
_PINNED_GIT: Final = re.compile(
    r"^git\+https://[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9._~/-]+@[0-9a-f]{40}"
    r"(#(egg|subdirectory)=[A-Za-z0-9._/-]+(&(egg|subdirectory)=[A-Za-z0-9._/-]+)?)?$"
)
PREINSTALLED: Final = "preinstalled"
#: The coordinator a resource gets unless it says otherwise, and the default of ``swarm-operator
#: template --coordinator``: the one copy of this pin. claudeswarm (github.com/boriscardano/
#: claude-swarm) is not on PyPI — PyPI's ``claude-swarm`` is an unrelated project with no
#: ``claudeswarm`` command — so the pin is the commit the operator's hook and permissions were
#: checked against (see agentconfig). It needs Python >= 3.12 in the sandbox (PEP 695 syntax).
#: A template built with this pin records it, so such a sandbox installs nothing.
COORDINATOR_PIN: Final = (
    "git+https://github.com/boriscardano/claude-swarm@7d93e2e69a9d0acc63db57c0812ff438d86e010a"
)
#: Where agent.apiKeySecretRef puts the key: the variable Claude Code reads.
ANTHROPIC_API_KEY: Final = "ANTHROPIC_API_KEY"

#: A workspace repository: https only, a host (name or IPv4) and optional port, a path of safe
#: characters. No userinfo (credentials in a URL end up in .git/config, logs and process lists), no
#: query or fragment, nothing a shell or git would read as syntax or an option.
GIT_REPO_URL: Final = (
    r"^https://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~+-]+)+/?$"
)
#: A workspace ref as the schema lets it through: a full commit SHA, a refs/... name or a bare name.
#: Which bare names are tags is decided in the sandbox (``git ls-remote``): see WorkspaceSpec.
GIT_REF: Final = r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$"
_FULL_SHA: Final = re.compile(r"^[0-9a-f]{40}$")
#: A path inside the sandbox: relative to the home directory, or absolute. One alphabet, no spaces.
SANDBOX_PATH: Final = r"^[A-Za-z0-9._/+-]+$"
#: An MCP entry's name (also its key in status.mcp): a DNS label.
MCP_NAME: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A server key in E2B's MCP catalog (``notion``, ``duckduckgo``, ``github/owner/repo``).
MCP_SERVER: Final = r"^[A-Za-z][A-Za-z0-9]*(/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+)?$"
#: A ConfigMap key (Kubernetes' own rule for data keys).
CONFIGMAP_KEY: Final = r"^[-._a-zA-Z0-9]+$"

#: An egress destination as the schema lets it through: an IPv4 address or CIDR, or a host name
#: with an optional leading ``*.`` wildcard. The operator then checks octets, prefix lengths, host
#: bits and label lengths (``network_entry_problem``), which a regex cannot say well.
EGRESS_ENTRY: Final = (
    r"^([0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?"
    r"|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"
)

# Plain words for a pattern mismatch: "should match pattern '^[a-z0-9]([-a-z0-9]*...'" helps no one.
_PATTERN_HINTS: Final = {
    DNS_SUBDOMAIN: "must be a Kubernetes object name: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit",
    SECRET_KEY: "must be a Secret key: letters, digits, '-', '_' and '.'",
    ENV_NAME: "must be letters, digits and '_', not starting with a digit",
    TEMPLATE: "must be an E2B template id or alias: letters, digits and '.', '_', ':', '/', '-', "
    "starting with a letter or digit",
    COMMAND: "must be one word without whitespace (arguments go to args)",
    GIT_REPO_URL: "must be an https:// git URL with no credentials, query or shell metacharacters "
    "(private repositories: workspace.credentialsSecretRef)",
    GIT_REF: "must be a 40-hex commit SHA, refs/tags/NAME or a tag name",
    SANDBOX_PATH: "must be a path of letters, digits and '.', '_', '/', '+', '-'",
    MCP_NAME: "must be a DNS label: lowercase letters, digits and '-'",
    MCP_SERVER: "must be a server key of E2B's MCP catalog, e.g. 'notion' or 'github/owner/repo'",
    EGRESS_ENTRY: "must be an IPv4 address, an IPv4 CIDR (10.0.0.0/8) or a lowercase host name "
    "(optionally '*.'-prefixed)",
}


def network_entry_problem(entry: str, *, hosts_allowed: bool = True) -> str | None:
    """What is wrong with one egress destination, or None when E2B can take it.

    E2B filters denied traffic by address only (host names work in allowOut, where its egress
    proxy matches them), so ``hosts_allowed=False`` refuses names for denyOut.
    """
    if re.fullmatch(r"[0-9./]+", entry):
        try:
            ipaddress.IPv4Network(entry, strict=True)
        except ValueError as exc:
            return f"{entry!r} is not a valid IPv4 address or CIDR ({exc})"
        return None
    if not hosts_allowed:
        return f"{entry!r} is a host name; E2B denies traffic by address only: use an IP or CIDR"
    if not re.fullmatch(EGRESS_ENTRY, entry):
        return f"{entry!r} " + _PATTERN_HINTS[EGRESS_ENTRY]
    name = entry.removeprefix("*.")
    if len(name) > 253 or any(len(label) > 63 for label in name.split(".")):
        return f"{entry!r} is not a valid host name (at most 253 characters, 63 per label)"
    if "." not in name:
        return f"{entry!r} is not a fully qualified host name"
    return None


def _cel_reserved_env_rule() -> str:
    names = ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES)
    prefixes = " && ".join(f"!self.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES)
    return f"!(self.name in [{names}]) && {prefixes}"


def _cel_args_size_rule() -> str:
    return f"self.map(a, size(a)).sum() <= {MAX_ARGS_CHARS}"


def _cel_mcp_values_size_rule() -> str:
    return (
        "self.map(m, has(m.fields) ? m.fields.map(f, has(f.value) ? size(f.value) : 0).sum() : 0)"
        f".sum() <= {MAX_MCP_VALUE_CHARS}"
    )


def _cel_secret_references_rule() -> str:
    # sum() is the Kubernetes list library's (Kubernetes 1.24+; the chart needs 1.27).
    return (
        "(has(self.agent) && has(self.agent.env) ? size(self.agent.env.filter(e, has(e.valueFrom))) : 0)"
        " + (has(self.agent) && has(self.agent.apiKeySecretRef) ? 1 : 0)"
        " + (has(self.e2b) && has(self.e2b.apiKeySecretRef) ? 1 : 0)"
        " + (has(self.workspace) && has(self.workspace.credentialsSecretRef) ? 1 : 0)"
        " + (has(self.mcp) ? self.mcp.map(m, (has(m.tokenSecretRef) ? 1 : 0)"
        " + (has(m.fields) ? size(m.fields.filter(f, has(f.valueFrom))) : 0)).sum() : 0)"
        f" <= {MAX_SECRET_REFERENCES}"
    )


def is_pinned_install(install: str) -> bool:
    """Whether ``coordinator.install`` names exactly one build of the coordinator."""
    return install == PREINSTALLED or bool(_PINNED_NAME_VERSION.match(install) or _PINNED_GIT.match(install))


def _explain_unpinned(install: str) -> str:
    """A message that says what is wrong with this particular install string, not just that it is."""
    hint = f"use 'name==X.Y.Z', 'git+https://host/repo@<40-hex commit SHA>', or '{PREINSTALLED}'"
    if install.startswith("git+"):
        if not install.startswith("git+https://"):
            return f"{install!r} is not allowed: only git+https:// URLs are accepted; {hint}"
        ref = install.rsplit("@", 1)[1].split("#", 1)[0] if "@" in install[len("git+https://") :] else ""
        if not ref:
            return f"{install!r} is not pinned: the git URL has no @<commit SHA>; {hint}"
        return f"{install!r} is not pinned: git ref {ref!r} is not a full 40-hex commit SHA; {hint}"
    if any(op in install for op in (">", "<", "~=", "!=", "*", "===")):
        return f"{install!r} is not pinned: version ranges and wildcards are refused; {hint}"
    return f"{install!r} is not pinned: {hint}"


# --------------------------------------------------------------------------------------------------
# Timestamps: Kubernetes' metav1.Time is RFC 3339 with whole seconds, always UTC.
# --------------------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    # Naive times are taken as UTC: the operator only ever produces UTC, and a timestamp read back from
    # the API server carries "Z".
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _rfc3339(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    pydantic.AfterValidator(_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class InvalidSpecError(ValueError):
    """The spec cannot be acted on. ``str(err)`` is fit for a condition message; ``problems`` lists
    each one as ``"spec.path: what is wrong"``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def format_validation_error(exc: pydantic.ValidationError, prefix: str = "spec") -> list[str]:
    """Turn pydantic's errors into ``"spec.agent.env[2].name: ..."`` lines a user can act on."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        if err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our own message, without pydantic's "Value error, ".
        elif err["type"] == "string_pattern_mismatch":
            msg = _PATTERN_HINTS.get(err["ctx"]["pattern"], err["msg"]) + f", got {err['input']!r}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = err["msg"]
        problems.append(f"{path}: {msg}")
    return problems


def _plain(value: Any) -> Any:
    """Mappings as dicts, all the way down. kopf hands over read-only Mapping views (``kopf.Spec``),
    and a strict model takes only real dicts; tuples would pass a strict list check no better."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------------


class _Spec(BaseModel):
    # Strict and closed, like the schema: the model must refuse everything the API server refuses.
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
    )


class SecretRef(_Spec):
    """A key in a Secret in the resource's own namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Secret, in the same namespace as the SwarmSandbox.",
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description="Key within the Secret's data.",
    )


class SecretKeySelector(SecretRef):
    """Like Kubernetes' SecretKeySelector: a Secret key, optionally tolerated missing."""

    optional: bool = Field(
        default=False,
        description="If true, a missing Secret or key leaves the variable unset instead of "
        "failing with SecretNotFound.",
    )


class EnvVarSource(_Spec):
    """Where an env value comes from when it is not written inline."""

    secret_key_ref: SecretKeySelector = Field(
        description="Take the value from a key of a Secret in the resource's namespace. The value "
        "reaches the sandbox as an environment variable, never on a command line; anything "
        "running in the sandbox can read it (see docs/threat-model.md).",
    )


class EnvVar(_Spec):
    """One agent environment variable: exactly one of value or valueFrom."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.value) != has(self.valueFrom)",
                    "message": "exactly one of value or valueFrom must be set",
                },
                {
                    "rule": _cel_reserved_env_rule(),
                    "messageExpression": "'env name ' + self.name + ' is reserved: names that shadow "
                    + _RESERVED_ENV_TEXT
                    + " are refused'",
                    "message": f"env names that shadow {_RESERVED_ENV_TEXT} are refused",
                },
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_NAME,
        description="Variable name: letters, digits and underscores, not starting with a digit. Names "
        f"that shadow {_RESERVED_ENV_TEXT} are refused: the operator and the sandbox own them.",
    )
    value: str | None = Field(
        default=None,
        max_length=32768,
        description="Literal value. Use valueFrom for anything secret.",
    )
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Source of the value, instead of a literal one.",
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError(
                f"env name {name} is reserved: names that shadow {_RESERVED_ENV_TEXT} are refused"
            )
        return name

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"env {self.name}: exactly one of value or valueFrom must be set")
        return self


class AgentConfigSpec(_Spec):
    """Per-resource agent configuration files, from a ConfigMap in the resource's namespace.

    For Claude Code the key ``claude.json`` is deep-merged into ``~/.claude.json`` and
    ``settings.json`` into ``~/.claude/settings.json`` (objects merge, anything else replaces the
    operator's value), so a resource can add permissions or hooks without losing the onboarding,
    gateway and coordinator entries the operator writes. Every other key is written verbatim to
    ``~/.claude/<key>`` (``CLAUDE.md``, ...). Configuration is not secret: keep keys in Secrets.
    """

    config_map_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of a ConfigMap in the resource's namespace whose keys are agent "
        "configuration files (claude.json and settings.json are merged, other keys written to "
        "~/.claude/<key>).",
    )
    optional: bool = Field(
        default=False,
        description="If true, a missing ConfigMap is ignored instead of failing with ConfigMapNotFound.",
    )


class AgentSpec(_Spec):
    """What runs in each tmux pane."""

    command: str = Field(
        default="claude",
        min_length=1,
        max_length=1024,
        pattern=COMMAND,
        description="Program started in every agent pane: a name on the sandbox's PATH or an absolute "
        "path, one word (arguments go to args).",
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=64,
        description=f"Arguments passed to the command, each quoted as one word; at most "
        f"{MAX_ARGS_CHARS} characters together.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _cel_args_size_rule(),
                    "message": f"agent.args may hold at most {MAX_ARGS_CHARS} characters together",
                }
            ]
        },
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment of every agent, as in a container spec. Values reach the agents "
        "as environment variables, through a 0600 env file their own account reads (never on a "
        "command line); anything running in the sandbox can read them. Names must be unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    api_key_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding the agents' Anthropic API key. It reaches the agents as "
        "ANTHROPIC_API_KEY in their environment, through a 0600 env file their own account reads: "
        "never a command line, status, an Event or the operator's logs. The agents (and anything "
        "else in the sandbox) can read it: give them a key you would give the agents.",
    )
    config: AgentConfigSpec | None = Field(
        default=None,
        description="Agent configuration files overriding the operator's defaults.",
    )
    restart_on_secret_change: Literal["Restart", "Never"] = Field(
        default="Never",
        description="What happens when a Secret the agents' environment comes from changes. "
        "Restart: the agents are restarted with the new values. Never: they keep running with the "
        "old values and status.secrets.restartPending says so until they are restarted.",
    )

    @model_validator(mode="after")
    def _api_key_not_twice(self) -> AgentSpec:
        if self.api_key_secret_ref is not None and any(e.name == ANTHROPIC_API_KEY for e in self.env):
            raise ValueError(
                f"set the API key either with apiKeySecretRef or with env {ANTHROPIC_API_KEY}, not both"
            )
        return self

    @property
    def is_claude_code(self) -> bool:
        """Whether the agent is Claude Code, whose configuration files the operator writes."""
        return self.command.rsplit("/", 1)[-1] == "claude"

    @field_validator("args")
    @classmethod
    def _args_fit(cls, args: list[str]) -> list[str]:
        total = sum(len(a) for a in args)
        if total > MAX_ARGS_CHARS:
            raise ValueError(f"{total} characters together, over the limit of {MAX_ARGS_CHARS}")
        return args

    @field_validator("env")
    @classmethod
    def _unique_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        counts = collections.Counter(e.name for e in env)
        dupes = sorted(name for name, count in counts.items() if count > 1)
        if dupes:
            raise ValueError(f"duplicate env names: {', '.join(dupes)}")
        return env


class E2BSpec(_Spec):
    """E2B account settings for this resource."""

    api_key_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding the E2B API key. Unset: the operator-wide default Secret, in "
        "the namespaces the operator allows to use it (else reason DefaultKeyNotAllowed).",
    )


class CoordinatorSpec(_Spec):
    """The claudeswarm coordinator that lets agents find and message each other."""

    enabled: bool = Field(default=True, description="Start the coordinator in the sandbox.")
    install: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        pattern=INSTALL_LOOSE,
        description="How to get the coordinator: a pinned pip requirement 'name==X.Y.Z', a "
        "'git+https://host/repo@<40-hex commit SHA>' URL, or 'preinstalled' (the template has it). "
        "A pin the sandbox lacks is installed by the setup script (a template built by "
        "'swarm-operator template' with the same pin installs nothing). Unset: the operator's "
        "SWARM_COORDINATOR_INSTALL (by default its pin of claudeswarm, whose dependencies are installed "
        "from a lock shipped with the operator (sha256 hashes, wheels only) and itself by commit without "
        "dependencies; a mirror on air-gapped clusters). Any other pin is installed as pip resolves it. "
        "Anything unpinned is refused by the operator with Ready=False, reason InvalidSpec.",
    )

    @field_validator("install")
    @classmethod
    def _pinned(cls, install: str | None) -> str | None:
        # Not in the schema on purpose: see the module docstring.
        if install is not None and not is_pinned_install(install):
            raise ValueError(_explain_unpinned(install))
        return install


class WorkspaceSpec(_Spec):
    """The repository the agents work on, cloned into the sandbox by the setup script.

    Pinning: ``ref`` must name one commit for good. A 40-hex SHA does; a tag does by convention.
    A bare name (``v1.2.0``) cannot be told from a branch by its spelling, so the setup script
    resolves it with ``git ls-remote`` inside the sandbox and refuses it (InvalidSpec) unless it
    exists under ``refs/tags/``. ``refs/tags/NAME`` is accepted as written, ``refs/heads/NAME`` and
    every other ``refs/`` namespace are refused here, before any sandbox work. ``allowFloatingRef``
    lifts both refusals for those who want a branch tip (the commit is still reported in status).
    These are product rules, so (like coordinator pinning) they are the operator's, not the
    schema's: a refused ref is a stored resource with ``Ready=False, reason=InvalidSpec``.
    """

    repo: str = Field(
        min_length=9,
        max_length=2048,
        pattern=GIT_REPO_URL,
        description="https:// URL of the git repository. No credentials in the URL: use "
        "credentialsSecretRef.",
    )
    ref: str = Field(
        min_length=1,
        max_length=255,
        pattern=GIT_REF,
        description="What to check out: a full 40-hex commit SHA, refs/tags/NAME, or a tag name "
        "(verified to be a tag inside the sandbox). Branches are refused with InvalidSpec unless "
        "allowFloatingRef is true.",
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=SANDBOX_PATH,
        description="Where to clone it, relative to the sandbox user's home or absolute. The "
        "agents start in this directory. Unset: 'workspace'.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding a token or password for a private repository. The setup "
        "script gets it on its stdin, never in its environment; git gets it from a credential "
        "helper reading a 0600 file that is removed right after the clone: it is never in the URL, "
        "a command line, .git/config, a process environment or any file left in the sandbox. "
        "During the clone the agents' account can read that file: use a token scoped to this "
        "repository, read-only where the agents need no push.",
    )
    username: str = Field(
        default="x-access-token",
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9._@+-]+$",
        description="User name sent with the credentials (GitHub tokens accept 'x-access-token').",
    )
    allow_floating_ref: bool = Field(
        default=False,
        description="Accept a branch as ref. The workspace then follows whatever the branch pointed "
        "at when the setup script ran.",
    )

    @field_validator("ref")
    @classmethod
    def _sane_ref(cls, ref: str) -> str:
        # git check-ref-format's rules that the pattern cannot say.
        if ".." in ref or "//" in ref or ref.endswith((".lock", "/", ".")) or "/." in ref:
            raise ValueError(f"{ref!r} is not a valid git ref name")
        return ref

    @field_validator("path")
    @classmethod
    def _no_parent(cls, path: str | None) -> str | None:
        if path is not None and ".." in path.split("/"):
            raise ValueError("must not contain '..' components")
        return path

    @model_validator(mode="after")
    def _pinned_ref(self) -> WorkspaceSpec:
        if self.allow_floating_ref or _FULL_SHA.match(self.ref) or self.ref.startswith("refs/tags/"):
            return self
        if self.ref.startswith("refs/heads/"):
            raise ValueError(
                f"ref {self.ref!r} is a branch, which floats: pin a commit SHA or a tag, "
                "or set allowFloatingRef"
            )
        if self.ref.startswith("refs/"):
            raise ValueError(f"ref {self.ref!r} is neither a tag nor a commit SHA")
        return self

    @property
    def is_sha(self) -> bool:
        return bool(_FULL_SHA.match(self.ref))


class McpField(_Spec):
    """One setting of a custom MCP server: a literal value or a Secret key."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="The setting's key in the server's gateway configuration (e.g. apiKey).",
    )
    value: str | None = Field(default=None, max_length=4096, description="Literal value (not secret).")
    value_from: EnvVarSource | None = Field(default=None, description="Take the value from a Secret key.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> McpField:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"field {self.name}: exactly one of value or valueFrom must be set")
        return self


#: MCP entry types and the E2B gateway server key and token field each one configures.
MCP_TOKEN_FIELDS: Final = {
    "github": ("github", "personalAccessToken"),
    "exa": ("exa", "apiKey"),
    "perplexity": ("perplexityAsk", "perplexityApiKey"),
}


class McpServerSpec(_Spec):
    """One MCP server the agents can use, run by E2B's MCP gateway inside the sandbox."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=MCP_NAME,
        description="Name of the entry; reported in status.mcp.",
    )
    type: Literal["github", "exa", "perplexity", "filesystem", "custom"] = Field(
        description="github, exa and perplexity need tokenSecretRef; filesystem serves the "
        "workspace directory only; custom configures any server of E2B's MCP catalog by key.",
    )
    token_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding the service token (github, exa, perplexity). The gateway "
        "reads it from a 0600 file, never a command line; the agents' account can read that file.",
    )
    server: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=MCP_SERVER,
        description="custom only: the server's key in E2B's MCP catalog (e.g. 'notion').",
    )
    fields: list[McpField] = Field(
        default_factory=list,
        max_length=32,
        description="custom only: the server's settings, literal or from Secrets.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _shape(self) -> McpServerSpec:
        needs_token = self.type in MCP_TOKEN_FIELDS
        if needs_token and self.token_secret_ref is None:
            raise ValueError(f"mcp {self.name}: type {self.type} needs tokenSecretRef")
        if not needs_token and self.token_secret_ref is not None:
            raise ValueError(
                f"mcp {self.name}: tokenSecretRef is for github, exa and perplexity; "
                "custom servers take fields"
            )
        if (self.type == "custom") != (self.server is not None):
            raise ValueError(f"mcp {self.name}: server is required for type custom and only for it")
        if self.type != "custom" and self.fields:
            raise ValueError(f"mcp {self.name}: fields are for type custom only")
        if len({f.name for f in self.fields}) != len(self.fields):
            raise ValueError(f"mcp {self.name}: duplicate field names")
        return self

    @property
    def server_key(self) -> str:
        """The key of this server in the gateway configuration."""
        if self.type in MCP_TOKEN_FIELDS:
            return MCP_TOKEN_FIELDS[self.type][0]
        return self.server or self.type


class HealthCheckSpec(_Spec):
    """How the operator watches the agents once they run."""

    interval_seconds: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="Seconds between health probes of the sandbox and its agent panes.",
    )
    restart_dead_agents: bool = Field(
        default=True,
        description="Restart an agent whose pane process has exited.",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Restarts allowed per agent (and for the MCP gateway) before it is left dead; a dead "
        "agent then leaves the resource Degraded, a dead gateway its health Unhealthy.",
    )


class NetworkSpec(_Spec):
    """Where the sandbox may open connections to, enforced by E2B outside the sandbox.

    Each field left unset takes the operator-wide default. E2B lets ``allowOut`` win over
    ``denyOut`` (and over ``allowInternet: false``), so ``allowInternet: false`` with an
    ``allowOut`` list is "only these". Destinations the operator forbids for every resource are
    always denied, and an ``allowOut`` entry that would reopen one is refused (InvalidSpec).
    """

    allow_internet: bool | None = Field(
        default=None,
        description="Whether outbound internet traffic is allowed at all. Unset: the operator's default.",
    )
    allow_out: list[Annotated[str, Field(min_length=1, max_length=253, pattern=EGRESS_ENTRY)]] | None = Field(
        default=None,
        max_length=64,
        description="Destinations allowed even when the rest is denied: IPv4 addresses, CIDRs or host "
        "names ('*.example.com' matches subdomains). Unset: the operator's default.",
    )
    deny_out: list[Annotated[str, Field(min_length=1, max_length=18, pattern=EGRESS_ENTRY)]] | None = Field(
        default=None,
        max_length=64,
        description="Destinations denied: IPv4 addresses or CIDRs (E2B denies by address only). "
        "Unset: the operator's default.",
    )

    @field_validator("allow_out")
    @classmethod
    def _allow_entries(cls, entries: list[str] | None) -> list[str] | None:
        problems = [p for e in entries or [] if (p := network_entry_problem(e)) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return entries

    @field_validator("deny_out")
    @classmethod
    def _deny_entries(cls, entries: list[str] | None) -> list[str] | None:
        problems = [
            p for e in entries or [] if (p := network_entry_problem(e, hosts_allowed=False)) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return entries


class BudgetSpec(_Spec):
    """A cap on what the resource may spend on sandbox compute, as the operator estimates it.

    The estimate is E2B's billing formula (allocated vCPU and memory times running seconds) with the
    operator's price table; paused time is not counted. A limit left unset does not apply; with
    neither set there is no cap.
    """

    max_usd: float | None = Field(
        default=None,
        alias="maxUSD",
        ge=0,
        le=1_000_000,
        description="Estimated spend in USD (status.cost.estimatedUSD) at which the budget is "
        "exceeded (0: at once).",
    )
    max_hours: float | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Running sandbox time in hours (status.cost.sandboxSeconds / 3600), summed over "
        "every sandbox the resource has had, at which the budget is exceeded. Paused time does not count.",
    )
    action: Literal["Suspend", "Delete"] = Field(
        default="Suspend",
        description="What happens when the budget is exceeded. Suspend: the sandbox is paused (work "
        "kept, the meter stops) until a limit is raised or cleared. Delete: the sandbox is killed "
        "(its work is lost); the resource stays, to say why.",
    )


class IdleSpec(_Spec):
    """When a swarm that does nothing stops costing: its sandbox is paused (work kept)."""

    idle_after_seconds: int = Field(
        ge=10,
        le=604_800,
        description="Pause the sandbox once every agent has been idle this long: no pane printed "
        "anything and the coordinator registry did not change (as the health probe sees them, so "
        "within one health interval after). A spec change or `swarm-operator resume` resumes it.",
    )


class SwarmSandboxSpec(_Spec):
    """Desired state of a SwarmSandbox."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _cel_secret_references_rule(),
                    "message": f"at most {MAX_SECRET_REFERENCES} Secret key references per resource "
                    "(agent.env valueFrom, agent.apiKeySecretRef, e2b.apiKeySecretRef, "
                    "workspace.credentialsSecretRef, mcp tokenSecretRef and fields valueFrom)",
                },
            ]
        }
    )

    agents: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Number of agents (tmux panes). Changing it scales the panes in place.",
    )
    agent: AgentSpec = Field(
        default_factory=AgentSpec,
        description="What every agent runs.",
        json_schema_extra={"default": {}},
    )
    template: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=TEMPLATE,
        description="E2B template id or alias. Unset: the operator's default template. With the "
        "operator's default E2B key, only the templates the operator allows (else reason TemplateNotAllowed).",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="Hard cap on the sandbox's lifetime, in seconds. When reached the sandbox is killed "
        "and the resource is Failed with reason SandboxExpired. Unset: the operator's default "
        "(SWARM_DEFAULT_TTL_SECONDS, 2 h unless set); never more than its maximum "
        "(SWARM_MAX_TTL_SECONDS, 8 h unless set). status.sandbox.ttlSeconds shows the one applied.",
    )
    e2b: E2BSpec | None = Field(default=None, alias="e2b", description="E2B account settings.")
    coordinator: CoordinatorSpec = Field(
        default_factory=CoordinatorSpec,
        description="The agent coordinator.",
        json_schema_extra={"default": {}},
    )
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete",
        description="What happens to the sandbox when the resource is deleted: Delete kills it; Orphan "
        "leaves it running and stops tracking it. Orphan needs the resource's own E2B key "
        "(e2b.apiKeySecretRef); with the operator's default key it is refused (reason OrphanNotAllowed).",
    )
    health_check: HealthCheckSpec = Field(
        default_factory=HealthCheckSpec,
        description="Health probing and agent restarts.",
        json_schema_extra={"default": {}},
    )
    suspend: bool = Field(
        default=False,
        description="Pause the sandbox (E2B pause) while true; resume it when set back to false.",
    )
    workspace: WorkspaceSpec | None = Field(
        default=None,
        description="A git repository cloned into the sandbox at a pinned commit; the agents work in it.",
    )
    mcp: list[McpServerSpec] = Field(
        default_factory=list,
        max_length=16,
        description="MCP servers for the agents, run by E2B's MCP gateway in the sandbox; the "
        "agents' configuration points at the gateway. Secrets come from Secret keys.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                {
                    "rule": _cel_mcp_values_size_rule(),
                    "message": f"mcp literal field values may hold at most {MAX_MCP_VALUE_CHARS} "
                    "characters together",
                }
            ],
        },
    )

    network: NetworkSpec | None = Field(
        default=None,
        description="Egress policy: where the sandbox may connect to. Unset: the operator's default "
        "policy. Enforced by E2B at create; changing it moves the agents to a new sandbox.",
    )
    budget: BudgetSpec | None = Field(
        default=None,
        description="A spend or sandbox-time cap and what to do when it is reached. Unset: no cap.",
    )
    idle: IdleSpec | None = Field(
        default=None,
        description="Pause the sandbox when every agent has been idle for a while. Unset: never.",
    )

    @field_validator("mcp")
    @classmethod
    def _one_entry_per_server(cls, mcp: list[McpServerSpec]) -> list[McpServerSpec]:
        total = sum(len(f.value or "") for entry in mcp for f in entry.fields)
        if total > MAX_MCP_VALUE_CHARS:
            raise ValueError(
                f"literal field values hold {total} characters together, over the limit "
                f"of {MAX_MCP_VALUE_CHARS}"
            )
        seen: dict[str, str] = {}
        for entry in mcp:
            if entry.name in seen.values():
                raise ValueError(f"duplicate mcp name {entry.name}")
            if entry.server_key in seen:
                raise ValueError(
                    f"mcp {entry.name} and {seen[entry.server_key]} both configure "
                    f"server {entry.server_key}: the gateway runs each server once"
                )
            seen[entry.server_key] = entry.name
        return mcp

    @model_validator(mode="after")
    def _bounded_secrets(self) -> SwarmSandboxSpec:
        refs = self.secret_references()
        fields = sorted({path.split("[", 1)[0] for path, _ in refs})
        if len(refs) > MAX_SECRET_REFERENCES:
            raise ValueError(
                f"{len(refs)} Secret key references (in {', '.join(fields)}), over the "
                f"limit of {MAX_SECRET_REFERENCES} per resource"
            )
        names = sorted({ref.name for _, ref in refs})
        if len(names) > MAX_SECRETS:
            raise ValueError(
                f"{len(names)} distinct Secrets referenced (in {', '.join(fields)}), over the limit "
                f"of {MAX_SECRETS} per resource: put several keys in one Secret"
            )
        return self

    def secret_references(self) -> list[tuple[str, SecretRef]]:
        """Every Secret key the spec names, with the field that names it (``spec.agent.env[2]``)."""
        refs: list[tuple[str, SecretRef]] = []
        for i, var in enumerate(self.agent.env):
            if var.value_from is not None:
                refs.append((f"spec.agent.env[{i}]", var.value_from.secret_key_ref))
        if self.agent.api_key_secret_ref is not None:
            refs.append(("spec.agent.apiKeySecretRef", self.agent.api_key_secret_ref))
        if self.e2b is not None and self.e2b.api_key_secret_ref is not None:
            refs.append(("spec.e2b.apiKeySecretRef", self.e2b.api_key_secret_ref))
        if self.workspace is not None and self.workspace.credentials_secret_ref is not None:
            refs.append(("spec.workspace.credentialsSecretRef", self.workspace.credentials_secret_ref))
        for i, entry in enumerate(self.mcp):
            if entry.token_secret_ref is not None:
                refs.append((f"spec.mcp[{i}].tokenSecretRef", entry.token_secret_ref))
            for j, field_ in enumerate(entry.fields):
                if field_.value_from is not None:
                    refs.append((f"spec.mcp[{i}].fields[{j}]", field_.value_from.secret_key_ref))
        return refs

    @classmethod
    def from_body(cls, spec: Any) -> SwarmSandboxSpec:
        """Validate a resource's ``spec`` as the API server hands it over.

        Raises :class:`InvalidSpecError` whose message names every offending field, ready for an
        ``InvalidSpec`` condition.
        """
        try:
            return cls.model_validate(_plain({} if spec is None else spec))
        except pydantic.ValidationError as exc:
            raise InvalidSpecError(format_validation_error(exc)) from None


# --------------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------------


class Phase(str, enum.Enum):
    """The one-word summary in ``kubectl get``; derived from conditions (see conditions.py)."""

    PENDING = "Pending"
    CREATING = "Creating"
    INITIALIZING = "Initializing"
    READY = "Ready"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    FAILED = "Failed"
    TERMINATING = "Terminating"

    def __str__(self) -> str:
        return self.value


class _Status(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_assignment=True,
    )


class Condition(_Status):
    """A metav1.Condition."""

    model_config = ConfigDict(frozen=True, validate_assignment=False)

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of condition: SandboxCreated, AgentsReady, Ready, Synced, Suspended or BudgetExceeded.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: Timestamp = Field(
        description="When the status last changed (not when the condition was last written).",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was computed from.",
        json_schema_extra={"format": "int64"},
    )


class SandboxStatus(_Status):
    """The E2B sandbox backing the resource."""

    id: str | None = Field(default=None, max_length=256, description="E2B sandbox id.")
    template: str | None = Field(default=None, max_length=128, description="Template the sandbox runs.")
    started_at: Timestamp | None = Field(
        default=None,
        description="When the sandbox was created or adopted; kept across a lifetime hand-over, so "
        "ttlSeconds counts the swarm's whole life.",
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="When E2B will end the sandbox unless the operator renews its lease: never past "
        "the plan's lifetime cap (SWARM_SANDBOX_MAX_LIFETIME_SECONDS from the sandbox's start).",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "The lifetime this sandbox gets: spec.ttlSeconds, else the operator's default"
            " (SWARM_DEFAULT_TTL_SECONDS), never over its maximum (SWARM_MAX_TTL_SECONDS)."
        ),
    )
    init_attempts: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Failed setup attempts on this sandbox since its agents were last all up, timeouts and"
            " backend errors included. At the operator's SWARM_INIT_ATTEMPTS the sandbox is killed and"
            " the resource Failed (InitFailed). In status so a restart keeps the count."
        ),
    )


class AgentItem(_Status):
    """One agent pane."""

    id: int = Field(ge=0, le=99, description="Agent index, 0-based.")
    pane: str | None = Field(default=None, max_length=256, description="tmux pane id (e.g. %3).")
    state: Literal["Starting", "Running", "Dead", "Restarting", "Unknown"] = Field(
        default="Unknown",
        description="Last observed state of the agent process.",
    )
    restarts: int = Field(default=0, ge=0, description="Times the operator restarted this agent.")


class AgentsStatus(_Status):
    """Agents wanted and running. ``summary`` is kept in step with the counts for ``kubectl get``."""

    desired: int = Field(default=0, ge=0, description="Agents the spec asks for.")
    ready: int = Field(default=0, ge=0, description="Agents observed running.")
    summary: str = Field(default="0/0", max_length=16, description="ready/desired, for kubectl get.")
    items: list[AgentItem] = Field(
        default_factory=list,
        max_length=100,
        description="Per-agent state.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )

    @model_validator(mode="after")
    def _summarise(self) -> AgentsStatus:
        # Written only here, so the printer column can never disagree with the counts.
        summary = f"{self.ready}/{self.desired}"
        if self.summary != summary:
            object.__setattr__(self, "summary", summary)
        return self


class HealthStatus(_Status):
    """The last health probe."""

    status: Literal["Healthy", "Unhealthy", "Unknown"] = Field(
        default="Unknown", description="Verdict of the last probe."
    )
    last_probe_time: Timestamp | None = Field(default=None, description="When the last probe finished.")
    reason: str | None = Field(default=None, max_length=1024, description="Why, when not Healthy.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed probes in a row.")
    sandbox_faults: int = Field(
        default=0,
        ge=0,
        description="Probes in a row the sandbox itself failed (output past the operator's cap, a "
        "hang to the probe timeout, an unreadable report); probes back off meanwhile, and at the "
        "operator's quarantine threshold the sandbox is killed and the resource Failed with reason "
        "SandboxQuarantined. A failure of E2B itself neither counts nor resets it.",
    )


class MetricsStatus(_Status):
    """Counters of what the operator did for this resource."""

    step_seconds: dict[str, float] = Field(
        default_factory=dict,
        description=f"Seconds spent in each lifecycle step (create, init, init.<setup step>, ...); at "
        f"most {MAX_STEPS} steps.",
    )
    commands_executed: int = Field(default=0, ge=0, description="Commands run in the sandbox.")
    commands_failed: int = Field(default=0, ge=0, description="Commands that failed or timed out.")
    restarts: int = Field(default=0, ge=0, description="Agent restarts, all agents together.")

    @field_validator("step_seconds", mode="before")
    @classmethod
    def _bounded_steps(cls, steps: Any) -> Any:
        """Keep well-named steps with finite, non-negative seconds, at most :data:`MAX_STEPS`: the
        operator's own (no dot) first, then the setup script's. Dropped rather than refused, so a
        sandbox reporting junk can neither fail a status write nor grow the status."""
        if not isinstance(steps, Mapping):
            return steps
        kept = {
            k: v
            for k, v in steps.items()
            if isinstance(k, str)
            and STEP_NAME.match(k)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v >= 0
        }
        ordered = sorted(kept, key=lambda k: "." in k)  # stable: keeps the order within each group
        return {k: kept[k] for k in ordered[:MAX_STEPS]}


class WorkspaceStatus(_Status):
    """What the workspace was cloned from and is checked out at."""

    repo: str | None = Field(default=None, max_length=2048, description="Repository URL.")
    ref: str | None = Field(default=None, max_length=255, description="The ref asked for.")
    commit: str | None = Field(default=None, max_length=64, description="Commit checked out (full SHA).")
    path: str | None = Field(default=None, max_length=4096, description="Where it is in the sandbox.")


class McpServerStatus(_Status):
    """One MCP entry as seen through the gateway."""

    name: str = Field(max_length=63, description="The spec.mcp entry's name.")
    state: Literal["Ready", "Failed", "Unknown"] = Field(
        default="Unknown",
        description="Ready when the gateway reports the server healthy.",
    )
    message: str = Field(default="", max_length=1024, description="Why, when not Ready.")


class NetworkStatus(_Status):
    """The egress policy the sandbox was created with (spec, operator defaults and the operator's
    forbidden destinations merged), as sent to E2B."""

    allow_internet: bool = Field(default=True, description="Outbound internet traffic allowed.")
    allow_out: list[str] = Field(default_factory=list, max_length=256, description="Destinations allowed.")
    deny_out: list[str] = Field(default_factory=list, max_length=256, description="Destinations denied.")


class SecretsStatus(_Status):
    """What the operator knows about the Secrets the resource uses (never their values)."""

    restart_pending: bool = Field(
        default=False,
        description="A Secret in the agents' environment changed and the agents still run with the "
        "old values (agent.restartOnSecretChange: Never).",
    )
    last_change_time: Timestamp | None = Field(
        default=None,
        description="When the operator last noticed a referenced Secret change.",
    )
    message: str = Field(default="", max_length=1024, description="Which Secrets changed, and what was done.")
    applied: dict[str, Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        description="Per environment variable, a keyed digest (HMAC-SHA256 under the resource's E2B "
        "API key, truncated) of the Secret value the agents run with, never the value: a restarted "
        "operator still tells a rotation that happened while it was down.",
    )
    applied_key: str | None = Field(
        default=None,
        max_length=64,
        description="Which API key keyed the digests (a digest of it): after a key rotation they are "
        "not compared.",
    )


class CostStatus(_Status):
    """The resource's sandbox-compute meter: figures up to ``asOf``, and the rate since then.

    Written at a coarse cadence and on every change of metering state or size, not every second: the
    spend at any later time is ``estimatedUSD + rateUSDPerHour * (now - asOf) / 3600`` (see
    ``swarm_operator.cost``). Sums cover every sandbox the resource has had and survive operator
    restarts: they are read back from here.
    """

    sandbox_seconds: int = Field(
        default=0,
        ge=0,
        description="Seconds a sandbox was running (billed) up to asOf, all sandboxes of the resource summed.",
        json_schema_extra={"format": "int64"},
    )
    paused_seconds: int = Field(
        default=0,
        ge=0,
        description="Seconds a sandbox was paused up to asOf: not billed as compute, counted apart.",
        json_schema_extra={"format": "int64"},
    )
    estimated_usd: float = Field(
        default=0.0,
        ge=0,
        alias="estimatedUSD",
        description="Estimated compute spend in USD up to asOf, from the operator's price table.",
    )
    as_of: Timestamp | None = Field(
        default=None, description="When the figures above were last brought up to date."
    )
    state: Literal["Running", "Paused", "Stopped"] = Field(
        default="Stopped",
        description="What the meter has counted since asOf: Running (billed), Paused (counted apart) "
        "or Stopped (no sandbox).",
    )
    vcpu: int | None = Field(
        default=None, ge=0, le=1024, description="vCPUs of the current sandbox, from E2B."
    )
    memory_mib: int | None = Field(
        default=None,
        ge=0,
        alias="memoryMiB",
        description="Memory of the current sandbox in MiB, from E2B.",
        json_schema_extra={"format": "int64"},
    )
    rate_usd_per_hour: float = Field(
        default=0.0,
        ge=0,
        alias="rateUSDPerHour",
        description="Estimated USD per hour since asOf: the running sandbox's size priced, or 0 when "
        "paused or stopped.",
    )
    summary: str = Field(
        default="$0.0000",
        max_length=32,
        description="estimatedUSD for kubectl get, e.g. $0.0123 or $4.56.",
    )
    day: str | None = Field(
        default=None,
        max_length=10,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="The UTC day dayStartUSD belongs to (for the operator's per-namespace daily cap).",
    )
    day_start_usd: float | None = Field(
        default=None,
        ge=0,
        alias="dayStartUSD",
        description="estimatedUSD when that UTC day began (or when the resource was first metered "
        "that day): spend today is the estimate now minus this.",
    )

    @model_validator(mode="after")
    def _summarise(self) -> CostStatus:
        # Written only here, so the printer column can never disagree with the figure.
        usd = self.estimated_usd
        summary = f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"
        if self.summary != summary:
            object.__setattr__(self, "summary", summary)
        return self


class SwarmSandboxStatus(_Status):
    """Observed state of a SwarmSandbox, written by the operator only."""

    phase: Phase | None = Field(default=None, description="One-word summary, derived from the conditions.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation last acted on.",
        json_schema_extra={"format": "int64"},
    )
    message: str | None = Field(default=None, max_length=32768, description="Human-readable summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Latest observations: SandboxCreated, AgentsReady, Ready (overall), Synced "
        "(last reconcile succeeded), Suspended (paused: spec.suspend, budget or idle), BudgetExceeded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    sandbox: SandboxStatus | None = Field(default=None, description="The backing E2B sandbox.")
    agents: AgentsStatus | None = Field(default=None, description="Agent panes.")
    health: HealthStatus | None = Field(default=None, description="Last health probe.")
    metrics: MetricsStatus | None = Field(default=None, description="Operator activity counters.")
    workspace: WorkspaceStatus | None = Field(default=None, description="The cloned workspace.")
    mcp: list[McpServerStatus] | None = Field(
        default=None,
        max_length=16,
        description="MCP servers, as checked through the gateway.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    network: NetworkStatus | None = Field(default=None, description="The sandbox's egress policy.")
    secrets: SecretsStatus | None = Field(default=None, description="Referenced Secrets' changes.")
    cost: CostStatus | None = Field(default=None, description="Sandbox compute used and its estimated cost.")

    @classmethod
    def from_body(cls, status: Any) -> SwarmSandboxStatus:
        """Read ``status`` as stored on the resource (a kopf Mapping view, a dict, or None)."""
        return cls.model_validate(_plain({} if status is None else status))

    def to_patch(self) -> dict[str, Any]:
        """The JSON-ready dict for a ``status`` merge patch: camelCase, ``None`` left out.

        Only the top-level fields that were set (given, read, or assigned) are included, so a fresh
        ``SwarmSandboxStatus(phase=...)`` patches the phase and cannot wipe the stored conditions with
        the default ``[]``. A top-level field that is included is written whole.
        """
        dumped = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        keep = {type(self).model_fields[name].alias or name for name in self.model_fields_set}
        return {key: value for key, value in dumped.items() if key in keep}
