"""Spec models of what the agents work on: the repository and the MCP servers."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from swarm_operator.model._agent import (
    EnvVarSource,
    SecretRef,
)
from swarm_operator.model._push import PushSpec
from swarm_operator.model._vocab import (
    _FULL_SHA,
    GIT_REF,
    GIT_REPO_URL,
    MCP_NAME,
    MCP_SERVER,
    SANDBOX_PATH,
    _Spec,
)


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

    push: PushSpec | None = Field(
        default=None,
        description="Push the agents' work (HEAD, uncommitted changes as a WIP commit) to a branch of "
        "this repository periodically and before the operator ends the sandbox (delete, TTL, budget "
        "Delete, template/egress/lifetime hand-over, pause). See docs/results.md.",
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
