"""Sharding by label: which operator process owns a SwarmSandbox, and the labeller that says so.

With ``SWARM_SHARD=i/N`` a process serves only the resources labelled ``claudeswarm.io/shard=i``
(a server-side label selector, so kopf never sees another shard's resources: no handler, no
finalizer, no annotation from a process that does not own it). Growth needs no manual labelling:
every shard also watches the resources whose label is missing or names no shard, and labels a
missing one with :func:`shard_of` — a pure function of the uid, so whichever shard gets there
first writes the same value the others would, and each write is conditional on the
resourceVersion it saw (a label written meanwhile, by a person or another shard, is never
overwritten). A label outside ``0..N-1`` is never rewritten: it is reported (Warning Event,
reason ``ShardLabelInvalid``) by the one shard the uid hashes to, once per process.

What this does not do: re-label anything already labelled (changing N leaves every labelled
resource where it is), or move a dead shard's resources to the others (they keep their sandboxes,
which live on only to their lease, until that shard's process returns and resumes them).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from swarm_operator.conditions import Reason
from swarm_operator.lifecycle.runtime import ResourceRef
from swarm_operator.names import SHARD_LABEL

__all__ = ["Labeller", "ShardPlan", "assign_forever", "shard_of"]

logger = logging.getLogger("swarm_operator.lifecycle")

_SPEC = re.compile(r"(\d+)/(\d+)")


def shard_of(uid: str, shards: int) -> int:
    """The shard a uid belongs to: sha256 of the uid, modulo ``shards``.

    Stable across processes, restarts, Python versions and machines (never :func:`hash`, which is
    salted per process): every shard computes the same answer, so concurrent labellers agree.
    """
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


@dataclass(frozen=True)
class ShardPlan:
    """This process's place among the shards: index ``index`` of ``shards``."""

    index: int
    shards: int

    @classmethod
    def parse(cls, text: str) -> ShardPlan | None:
        """``"i/N"`` (``SWARM_SHARD``) as a plan; empty means unsharded (None).

        Raises ValueError, naming the rule, for anything else: N of at least 2, 0 <= i < N.
        """
        if not text:
            return None
        match = _SPEC.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not 'index/shards', e.g. '0/3'")
        index, shards = int(match[1]), int(match[2])
        if shards < 2 or not 0 <= index < shards:
            raise ValueError(f"{text!r}: needs at least 2 shards and 0 <= index < shards")
        return cls(index, shards)

    @property
    def own_selector(self) -> str:
        """The label selector of the resources this shard serves."""
        return f"{SHARD_LABEL}={self.index}"

    @property
    def unassigned_selector(self) -> str:
        """Resources no shard serves: the label missing or outside ``0..N-1``
        (Kubernetes' ``notin`` matches objects without the label too)."""
        return f"{SHARD_LABEL} notin ({','.join(map(str, range(self.shards)))})"

    def owner(self, uid: str) -> int:
        return shard_of(uid, self.shards)


class Labeller(Protocol):
    """The Kubernetes side of the labeller (``cluster.KubeShardLabeller`` in production)."""

    def unassigned(self, selector: str) -> AsyncIterator[Mapping[str, Any]]:
        """Every resource matching ``selector`` now, then each one that comes to match it."""
        ...

    async def label(self, body: Mapping[str, Any], key: str, value: str) -> bool:
        """Set the label if the resource is still at the body's resourceVersion; False if not."""
        ...

    async def warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        """Post a Warning Event about the resource (kopf's queue serves only its handlers)."""
        ...


@dataclass
class _Reported:
    """(uid, label) pairs already reported by this process: one Warning each, not one per event."""

    seen: set[tuple[str, str]] = field(default_factory=set)

    def first(self, uid: str, value: str) -> bool:
        if (uid, value) in self.seen:
            return False
        self.seen.add((uid, value))
        return True


async def assign_forever(plan: ShardPlan, labeller: Labeller) -> None:
    """Label every unlabelled resource with its shard; report labels that name no shard.

    Runs until cancelled (the operator's cleanup). A failed write is only logged: the resource is
    still unlabelled, so the labeller's next listing offers it again.
    """
    reported = _Reported()
    async for body in labeller.unassigned(plan.unassigned_selector):
        await assign(plan, body, labeller, reported)


async def assign(
    plan: ShardPlan,
    body: Mapping[str, Any],
    labeller: Labeller,
    reported: _Reported | None = None,
) -> str | None:
    """One resource: label it (returns the value written) or report its invalid label (None)."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # no shard served it, so it carries no finalizer of ours: it is going
    ref = ResourceRef.from_body(body)
    owner = plan.owner(ref.uid)
    current = (meta.get("labels") or {}).get(SHARD_LABEL)
    if current is None:
        value = str(owner)
        try:
            written = await labeller.label(body, SHARD_LABEL, value)
        except Exception as exc:  # the next listing offers it again
            logger.warning("shard label not written: %s", exc, extra=ref.log_extra)
            return None
        if written:
            logger.info("labelled %s=%s", SHARD_LABEL, value, extra=ref.log_extra)
        return value if written else None
    if owner == plan.index and (reported or _Reported()).first(ref.uid, current):
        message = (
            f"label {SHARD_LABEL}={current} names no shard (the operator runs {plan.shards}:"
            f" 0..{plan.shards - 1}); no shard serves this resource. Remove the label to have it"
            f" assigned ({SHARD_LABEL}={owner}), or set one in range."
        )
        try:
            await labeller.warn(body, Reason.SHARD_LABEL_INVALID.value, message)
        except Exception as exc:  # the log line says it instead
            logger.warning(
                "shard label invalid (event not posted: %s): %s", exc, message, extra=ref.log_extra
            )
    return None
