"""Tenancy: which resources the operator serves at all, and which may spend its default E2B key.

The operator's default key bills the platform, not the tenant, so a platform admin decides who may
use it — the control Crossplane gives with one ProviderConfig per namespace and ACK with its
namespace → account map (CARM): a namespace list (``SWARM_DEFAULT_KEY_NAMESPACES``), a template
list (``SWARM_DEFAULT_KEY_TEMPLATES``), no ``deletionPolicy: Orphan`` (a released sandbox bills
untracked for hours), and a per-namespace sandbox cap (``SWARM_MAX_SANDBOXES_PER_NAMESPACE``,
enforced by the creation limiter). A resource that names its own key in ``spec.e2b.apiKeySecretRef``
spends its own team's money and is subject only to the cap.

And no resource is served in the operator's own namespace: its Secrets include the default key, and
the right to create a SwarmSandbox in a namespace is the right to hand that namespace's Secrets to
agents.

:func:`refusal` is a pure function of the resource's namespace, its spec and the settings, called
before any Secret is read; the chart's ValidatingAdmissionPolicy enforces the same rules at
admission (``charts/swarm-operator/templates/admissionpolicy.yaml``; the glob syntax here, ``*``
and ``?`` only, is the one it translates into CEL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from swarm_operator.conditions import Reason
from swarm_operator.config import Settings
from swarm_operator.model import SwarmSandboxSpec

__all__ = ["Refusal", "glob_match", "refusal", "uses_default_key"]


@dataclass(frozen=True)
class Refusal:
    """Why the operator will not serve this resource: a stable reason and an actionable message."""

    reason: Reason
    message: str


def uses_default_key(spec: SwarmSandboxSpec) -> bool:
    """The resource names no E2B key of its own: the operator's default key would pay."""
    return spec.e2b is None or spec.e2b.api_key_secret_ref is None


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    # '*' and '?' only (no [classes]): exactly what the chart's CEL translation understands.
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))


def glob_match(patterns: Iterable[str], value: str) -> bool:
    """``value`` matches one of the glob patterns (``*`` any run, ``?`` one character)."""
    return any(_regex(p).fullmatch(value) for p in patterns)


def refusal(namespace: str, spec: SwarmSandboxSpec, settings: Settings) -> Refusal | None:
    """The first tenancy rule this resource breaks, or None. Pure: reads nothing, so it runs before
    any Secret of the resource (or the operator's key) is read."""
    if namespace == settings.namespace:
        return Refusal(
            Reason.NAMESPACE_NOT_ALLOWED,
            (
                f"namespace {namespace} is the operator's own (it holds the operator's E2B key Secret): "
                f"SwarmSandboxes are refused there; create this one in a team's namespace"
            ),
        )
    if not uses_default_key(spec):
        return None
    allowed = settings.patterns("default_key_namespaces")
    if not glob_match(allowed, namespace):
        return Refusal(
            Reason.DEFAULT_KEY_NOT_ALLOWED,
            (
                f"namespace {namespace} may not use the operator's default E2B key (setting "
                f"SWARM_DEFAULT_KEY_NAMESPACES allows {_shown(allowed)}): name this team's own key in "
                f"spec.e2b.apiKeySecretRef, or ask the platform admin to allow the namespace"
            ),
        )
    if spec.deletion_policy == "Orphan":
        return Refusal(
            Reason.ORPHAN_NOT_ALLOWED,
            (
                "spec.deletionPolicy: Orphan is refused with the operator's default E2B key (a released "
                "sandbox would bill the platform with nothing tracking it): use deletionPolicy: Delete, "
                "or name this team's own key in spec.e2b.apiKeySecretRef"
            ),
        )
    template = spec.template or settings.default_template
    templates = (settings.default_template, *settings.patterns("default_key_templates"))
    if not glob_match(templates, template):
        return Refusal(
            Reason.TEMPLATE_NOT_ALLOWED,
            (
                f"spec.template: {template} may not be used with the operator's default E2B key "
                f"(allowed: {_shown(templates)}; setting SWARM_DEFAULT_KEY_TEMPLATES): pick one of those, "
                f"or name this team's own key in spec.e2b.apiKeySecretRef"
            ),
        )
    return None


def _shown(patterns: tuple[str, ...]) -> str:
    return ", ".join(patterns[:10]) + (", ..." if len(patterns) > 10 else "") if patterns else "none"
