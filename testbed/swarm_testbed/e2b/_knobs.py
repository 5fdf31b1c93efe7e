"""Test knobs: per-operation call counters, added latency and seeded fault injection.

Operation names are stable (benchmarks count round trips with them) and listed in ``OPERATIONS``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

CONTROL_OPERATIONS = (
    "sandbox.create",  # POST /v2/sandboxes (and the legacy POST /sandboxes)
    "sandbox.list",  # GET /v2/sandboxes (and the legacy GET /sandboxes)
    "sandbox.get",  # GET /sandboxes/{id}
    "sandbox.kill",  # DELETE /sandboxes/{id}
    "sandbox.timeout",  # POST /sandboxes/{id}/timeout
    "sandbox.refresh",  # POST /sandboxes/{id}/refreshes
    "sandbox.connect",  # POST /v2/sandboxes/{id}/connect (and /sandboxes/{id}/connect)
    "sandbox.resume",  # POST /sandboxes/{id}/resume (deprecated by connect)
    "sandbox.pause",  # POST /sandboxes/{id}/pause
    "sandbox.metrics",  # GET /sandboxes/{id}/metrics
)
ENVD_OPERATIONS = (
    "envd.health",  # GET /health
    "files.read",  # GET /files
    "files.write",  # POST /files
    "process.start",
    "process.connect",
    "process.list",
    "process.send_input",
    "process.send_signal",
    "process.close_stdin",
    "process.update",
    "process.stream_input",
    "filesystem.stat",
    "filesystem.list_dir",
    "filesystem.make_dir",
    "filesystem.remove",
    "filesystem.move",
    "filesystem.watch_dir",
    "filesystem.create_watcher",
    "filesystem.get_watcher_events",
    "filesystem.remove_watcher",
)
OPERATIONS = CONTROL_OPERATIONS + ENVD_OPERATIONS

FAULT_KINDS = ("429", "500", "502", "timeout", "drop")

#: Lifetime caps by E2B plan, counted from a sandbox's start (TESTBED.md "Real-service numbers";
#: the server enforces the team's ``MaxLengthHours``: e2b-dev/infra
#: packages/api/internal/handlers/timeout_helper.go and packages/api/internal/orchestrator/keep_alive.go).
PLAN_LIFETIME_CAPS = {"hobby": 3600, "pro": 86_400}

#: E2B's public templates the emulator always serves (unless ``stock_templates=False``):
#: e2b-dev/infra packages/orchestrator/pkg/template/build/phases/... (``base``) and the SDK's
#: ``Sandbox.default_mcp_template`` (``mcp-gateway``); ``anthropic-claude-code`` is E2B's published
#: template with the Claude Code CLI preinstalled.
STOCK_TEMPLATES = ("base", "anthropic-claude-code", "mcp-gateway")


class Stats:
    """Thread-safe call counts by operation, readable over HTTP while the emulator runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def count(self, operation: str) -> None:
        with self._lock:
            self._calls[operation] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._faults.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            calls = dict(sorted(self._calls.items()))
            faults = dict(sorted(self._faults.items()))
        control = sum(n for op, n in calls.items() if op.startswith("sandbox."))
        return {
            "operations": calls,
            "total": sum(calls.values()),
            "control": control,
            "envd": sum(calls.values()) - control,
            "faults": faults,
            "faultsTotal": sum(faults.values()),
        }


@dataclass
class Knobs:
    """The emulator's adjustable misbehaviour; all off by default."""

    latency_ms: float = 0.0
    fault_rate: float = 0.0
    seed: int | None = None
    quota: int | None = None
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    fault_operations: frozenset[str] | None = None  # None: every operation may fail
    fault_hang_seconds: float = 30.0  # how long a "timeout" fault holds the request
    plan: str = "hobby"  # the E2B plan whose lifetime cap applies (PLAN_LIFETIME_CAPS)
    lifetime_cap_seconds: int | None = None  # overrides the plan's cap (tests use short caps)
    default_timeout: int = 15  # what the raw API applies when no timeout is sent
    identity_mismatch: bool = False  # sandboxes see another id in E2B_SANDBOX_ID
    identity_delay_seconds: float = 0.2  # E2B_SANDBOX_ID appears in envd's env only after this
    permissive_egress: bool = False  # accept any network rule (the pre-issue-14, WRONG, behaviour)
    retry_after_seconds: int = 1  # the Retry-After of every 429 (E2B sends at least 1)
    templates_forbidden: frozenset[str] = frozenset()  # templates answered with 403 on create
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        if self.plan not in PLAN_LIFETIME_CAPS:
            raise ValueError(f"unknown plan {self.plan!r}; known: {sorted(PLAN_LIFETIME_CAPS)}")
        if self.lifetime_cap_seconds is not None and self.lifetime_cap_seconds < 1:
            raise ValueError("lifetime_cap_seconds must be at least 1")
        self._random = random.Random(self.seed)

    @property
    def lifetime_cap(self) -> int:
        """Seconds a sandbox may live from its start: the override, else the plan's cap."""
        if self.lifetime_cap_seconds is not None:
            return self.lifetime_cap_seconds
        return PLAN_LIFETIME_CAPS[self.plan]

    @property
    def max_timeout(self) -> int:
        """The longest timeout a create/connect may ask for (the same cap, from now)."""
        return self.lifetime_cap

    def draw_fault(self, operation: str) -> str | None:
        """Decide, reproducibly for a given seed and call order, whether this call fails and how."""
        if self.fault_rate <= 0 or not self.fault_kinds:
            return None
        if self.fault_operations is not None and operation not in self.fault_operations:
            return None
        if self._random.random() >= self.fault_rate:
            return None
        return self._random.choice(self.fault_kinds)

    def update(self, changes: dict[str, Any]) -> None:
        """Change knobs at run time (``POST /_emulator/config``)."""
        for key, value in changes.items():
            if key.startswith("_") or key not in {f.name for f in fields(self)}:
                raise ValueError(f"unknown knob {key!r}")
            if key == "fault_kinds":
                value = tuple(value)
            if key == "fault_operations" and value is not None:
                value = frozenset(value)
            if key == "templates_forbidden":
                value = frozenset(value or ())
            setattr(self, key, value)
        if "seed" in changes:
            self._random = random.Random(self.seed)
        self.__post_init_check()

    def __post_init_check(self) -> None:
        if set(self.fault_kinds) - set(FAULT_KINDS) or not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("invalid fault settings")
        if self.plan not in PLAN_LIFETIME_CAPS:
            raise ValueError(f"unknown plan {self.plan!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fault_rate": self.fault_rate,
            "seed": self.seed,
            "quota": self.quota,
            "fault_kinds": list(self.fault_kinds),
            "fault_operations": sorted(self.fault_operations) if self.fault_operations else None,
            "fault_hang_seconds": self.fault_hang_seconds,
            "plan": self.plan,
            "lifetime_cap_seconds": self.lifetime_cap_seconds,
            "lifetime_cap": self.lifetime_cap,
            "default_timeout": self.default_timeout,
            "identity_mismatch": self.identity_mismatch,
            "identity_delay_seconds": self.identity_delay_seconds,
            "permissive_egress": self.permissive_egress,
            "retry_after_seconds": self.retry_after_seconds,
            "templates_forbidden": sorted(self.templates_forbidden),
        }


def as_operations(names: Iterable[str] | None) -> frozenset[str] | None:
    if names is None:
        return None
    names = frozenset(names)
    unknown = names - set(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}")
    return names
