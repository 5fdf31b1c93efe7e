"""The settings that limit and price what the operator makes: creation rates and caps, who may use
the default key, egress, prices and spending caps, Secret sizes (part of
:class:`~swarm_operator.config.Settings`; each field is ``SWARM_<FIELD_NAME_UPPER>``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator


class PolicySettings(BaseModel):
    """Creation limits, default-key tenancy, egress, cost and Secret bounds."""

    creations_per_minute: float | None = Field(
        default=30.0, gt=0, description="Operator-wide sandbox creations per minute; unset = no limit."
    )

    creations_per_hour: float | None = Field(
        default=None, gt=0, description="Operator-wide sandbox creations per hour; unset = no limit."
    )

    max_sandboxes_per_namespace: int | None = Field(
        default=20,
        ge=0,
        description=(
            "Live sandboxes allowed per namespace (more wait, reason RateLimited); a bound on what"
            " one tenant can make the platform pay for. Raise it for a namespace-heavy workload."
        ),
    )

    quota_retry_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Least wait before retrying a create refused for E2B's concurrent-sandbox quota.",
    )

    default_key_namespaces: str = Field(
        default="default",
        description=(
            "Comma-separated namespaces (glob patterns such as team-*; * = every namespace) whose"
            " resources may omit spec.e2b.apiKeySecretRef and so use the operator's default E2B"
            " key; a resource elsewhere gets reason DefaultKeyNotAllowed and no sandbox. Default:"
            " only 'default' (the quick start's namespace); empty: no namespace."
        ),
    )

    default_key_templates: str = Field(
        default="",
        description=(
            "Comma-separated E2B templates (glob patterns such as claude-swarm*; * = any) a resource"
            " using the default key may name, besides SWARM_DEFAULT_TEMPLATE, which is always"
            " allowed; another gets reason TemplateNotAllowed. Default: empty (only the default)."
        ),
    )

    network_allow_internet: bool = Field(
        default=True,
        description="Default of spec.network.allowInternet: outbound internet traffic allowed.",
    )

    network_allow_out: str = Field(
        default="",
        description="Default of spec.network.allowOut: comma-separated IPv4 addresses, CIDRs or host names.",
    )

    network_deny_out: str = Field(
        default="",
        description="Default of spec.network.denyOut: comma-separated IPv4 addresses or CIDRs.",
    )

    network_forbidden_out: str = Field(
        default="",
        description=(
            "Comma-separated IPv4 addresses, CIDRs or host names no resource may open: CIDRs are"
            " denied on every sandbox, and an allowOut entry reaching one is refused (InvalidSpec)."
        ),
    )

    # Cost: E2B's published prices (see swarm_operator.cost for the source and date) and how often
    # status.cost is rewritten while nothing else changes.
    price_vcpu_usd_per_second: float = Field(
        default=0.000014,
        ge=0,
        le=1,
        description=(
            "Price of one vCPU per running second, in USD, for status.cost and budgets. Default: E2B's"
            " published rate ($0.0504/hour), read 2026-11-29; set your contract's."
        ),
    )

    price_memory_usd_per_gib_second: float = Field(
        default=0.0000045,
        ge=0,
        le=1,
        description=(
            "Price of one GiB of memory per running second, in USD. Default: E2B's published rate"
            " ($0.0162/hour), read 2026-11-29."
        ),
    )

    cost_refresh_minutes: float = Field(
        default=10.0,
        gt=0,
        le=1440,
        description=(
            "How often status.cost (at most: status.progress) is rewritten while nothing else changes"
            " (cost always on a pause, resume, hand-over, size change, and with the lease's expiresAt);"
            " in between, none is written."
        ),
    )

    max_usd_per_namespace_per_day: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Operator-wide cap on the estimated spend, per namespace and UTC day, of the resources"
            " that use the operator's default E2B API key (not their own spec.e2b.apiKeySecretRef):"
            " reaching it pauses them (BudgetExceeded) until the next UTC day. Unset: no cap."
        ),
    )

    max_secret_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=8 * 1024 * 1024,
        description=(
            "Bytes all the Secret values one resource references may hold together; a resource over"
            " it gets reason SecretsTooLarge and no sandbox work. They become the setup script's"
            " environment, which Linux bounds."
        ),
    )

    @field_validator("network_allow_out", "network_deny_out", "network_forbidden_out")
    @classmethod
    def _egress_list(cls, value: str, info: Any) -> str:
        from swarm_operator.model import network_entry_problem  # model imports nothing from here

        hosts = info.field_name != "network_deny_out"
        problems = [p for e in _split(value) if (p := network_entry_problem(e, hosts_allowed=hosts))]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("default_key_namespaces", "default_key_templates")
    @classmethod
    def _pattern_list(cls, value: str) -> str:
        # The chart copies these into CEL string literals of its admission policy: plain names only.
        bad = [p for p in _split(value) if not _PATTERN.fullmatch(p)]
        if bad:
            raise ValueError(f"not a name or glob pattern (letters, digits, . _ : / - * ?): {bad[0]!r}")
        return value

    def patterns(self, name: str) -> tuple[str, ...]:
        """One of the comma-separated pattern settings (``default_key_namespaces`` ...) as a tuple."""
        return _split(getattr(self, name))

    def egress_list(self, name: str) -> tuple[str, ...]:
        """One of the comma-separated egress settings as a tuple (``network_allow_out`` ...)."""
        return _split(getattr(self, name))


_PATTERN = re.compile(r"[A-Za-z0-9._:/*?-]{1,253}")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
