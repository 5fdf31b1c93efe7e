"""Spec models of what runs: the agent, its environment and Secrets, the E2B settings, the coordinator."""

from __future__ import annotations

import collections
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from swarm_operator.model._vocab import (
    _RESERVED_ENV_TEXT,
    ANTHROPIC_API_KEY,
    COMMAND,
    DNS_SUBDOMAIN,
    ENV_NAME,
    INSTALL_LOOSE,
    MAX_ARGS_CHARS,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    SECRET_KEY,
    _cel_args_size_rule,
    _cel_reserved_env_rule,
    _explain_unpinned,
    _Spec,
    is_pinned_install,
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
