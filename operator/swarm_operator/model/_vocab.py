"""Shared vocabulary of the models: patterns, reserved names, limits, timestamps, errors, the base classes.

Patterns are written in the common subset of the three regex engines that apply them (Go's RE2 in the
API server, Rust's regex in pydantic-core, Python's re in jsonschema).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import pydantic
from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

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
        " + (has(self.workspace) && has(self.workspace.push) && has(self.workspace.push.credentialsSecretRef) ? 1 : 0)"
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
