"""What a resource's spec asks the sandbox to hold besides the agents: the Secrets its tools read
(agent API key, workspace credentials, MCP tokens), Claude Code's configuration, and the MCP gateway's
configuration. Plain functions from the spec to the setup script's inputs; nothing here reads a
Secret's value — secrets are only *named* (``SWARM_SECRET_*`` variables) and read inside the sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from swarm_operator import bootstrap
from swarm_operator.model import (
    ANTHROPIC_API_KEY,
    MCP_TOKEN_FIELDS,
    InvalidSpecError,
    SwarmSandboxSpec,
)
from swarm_operator.secrets import SecretKeyRef


def tool_secret_refs(namespace: str, spec: SwarmSandboxSpec) -> dict[str, SecretKeyRef]:
    """Secret refs beyond agent.env, by the variable the setup script reads each one from."""
    refs: dict[str, SecretKeyRef] = {}
    if spec.agent.api_key_secret_ref is not None:
        key = spec.agent.api_key_secret_ref
        refs[ANTHROPIC_API_KEY] = SecretKeyRef(namespace, key.name, key.key)
    if spec.workspace is not None and spec.workspace.credentials_secret_ref is not None:
        cred = spec.workspace.credentials_secret_ref
        refs[bootstrap.GIT_PASSWORD_ENV] = SecretKeyRef(namespace, cred.name, cred.key)
    for index, entry in enumerate(spec.mcp):
        if entry.token_secret_ref is not None:
            refs[bootstrap.secret_env_name("MCP", str(index), "TOKEN")] = SecretKeyRef(
                namespace, entry.token_secret_ref.name, entry.token_secret_ref.key
            )
        for field_ in entry.fields:
            if field_.value_from is not None:
                sel = field_.value_from.secret_key_ref
                refs[bootstrap.secret_env_name("MCP", str(index), field_.name)] = SecretKeyRef(
                    namespace, sel.name, sel.key
                )
    return refs


#: The coordinator's commands agents may run without asking, and the hook that shows them new
#: messages before every prompt. The command is claudeswarm's own hook (its
#: ``.claude/hooks/check-for-messages.sh``, checked against claude-swarm 7d93e2e): unread messages
#: only, one line each, at most five; ``check-messages`` exits 1 when it cannot tell which agent
#: asks, and a hook must never turn that into an error shown on every prompt, hence ``|| true``.
COORDINATOR_PERMISSIONS = ("Bash(claudeswarm:*)",)
COORDINATOR_HOOK = "claudeswarm check-messages --new-only --quiet --limit 5 2>/dev/null || true"


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def claude_config_json(spec: SwarmSandboxSpec, files: Mapping[str, str]) -> str:
    """What the setup script writes for Claude Code: defaults, then the ConfigMap's files over them.

    ``claude.json`` and ``settings.json`` are merged (objects key by key), other keys are written as
    they are. Nothing here is secret: the API key stays in the agents' environment and the gateway
    token is read inside the sandbox.
    """
    if not bootstrap.is_claude_code(spec.agent.command):
        return ""
    settings: dict[str, Any] = {}
    if spec.coordinator.enabled:
        settings = {
            "permissions": {"allow": list(COORDINATOR_PERMISSIONS)},
            "hooks": {"UserPromptSubmit": [{"hooks": [{"type": "command", "command": COORDINATOR_HOOK}]}]},
        }
    if spec.mcp:
        settings["enableAllProjectMcpServers"] = True
    extra = dict(files)
    user_claude, user_settings = {}, {}
    try:
        if "claude.json" in extra:
            user_claude = json.loads(extra.pop("claude.json"))
        if "settings.json" in extra:
            user_settings = json.loads(extra.pop("settings.json"))
    except ValueError as exc:
        raise InvalidSpecError([f"spec.agent.config: claude.json/settings.json is not JSON: {exc}"]) from None
    if not isinstance(user_claude, dict) or not isinstance(user_settings, dict):
        raise InvalidSpecError(["spec.agent.config: claude.json and settings.json must be JSON objects"])
    return json.dumps(
        {"claude_json": user_claude, "settings": _merge(settings, user_settings), "files": extra},
        sort_keys=True,
    )


def spoofing_report(spec: SwarmSandboxSpec) -> str | None:
    """The Warning to post when ``agent.command`` imitates Claude Code's name without being it.

    Such a command is allowed — it is whatever program the sandbox has under that name — but it is
    never treated as Claude Code: no Claude Code package is installed for it, no configuration,
    onboarding or gateway entry is written for it. The name is shown escaped (``ascii``), so the
    Event tells the look-alike from the real name at a glance.
    """
    target = bootstrap.imitated(spec.agent.command)
    if target is None:
        return None
    name = bootstrap.program(spec.agent.command)
    return (
        f"spec.agent.command {ascii(name)} looks like {target!r} but is not it (possible spoofing "
        f"attempt): it runs as a generic command; Claude Code's package, configuration and "
        f"onboarding are not applied to it. Use exactly {target!r} for Claude Code."
    )


def mcp_config_json(spec: SwarmSandboxSpec) -> str:
    """The gateway configuration without secret values: those are named, read in the sandbox."""
    if not spec.mcp:
        return ""
    config: dict[str, dict[str, Any]] = {}
    secrets: list[list[str]] = []
    workspace: list[str] = []
    for index, entry in enumerate(spec.mcp):
        server = entry.server_key
        config[server] = {}
        if entry.type in MCP_TOKEN_FIELDS:
            secrets.append(
                [
                    server,
                    MCP_TOKEN_FIELDS[entry.type][1],
                    bootstrap.secret_env_name("MCP", str(index), "TOKEN"),
                ]
            )
        elif entry.type == "filesystem":
            workspace.append(server)
        for field_ in entry.fields:
            if field_.value_from is not None:
                secrets.append(
                    [server, field_.name, bootstrap.secret_env_name("MCP", str(index), field_.name)]
                )
            else:
                config[server][field_.name] = field_.value
    return json.dumps({"config": config, "secrets": secrets, "workspace": workspace}, sort_keys=True)
