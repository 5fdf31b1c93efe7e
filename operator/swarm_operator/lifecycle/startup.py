"""What the operator learns from E2B before it creates anything, so a restart forgets nothing that
bounds creation.

The creation limiter lives in memory; without this an operator that crash-loops would get a fresh
burst of creations on every start. E2B remembers what matters: every sandbox this operator made is
tagged with its ``operator_id``, with its start time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from swarm_operator.lifecycle.agents import default_api_key_ref
from swarm_operator.lifecycle.runtime import Runtime
from swarm_operator.names import TAG_OPERATOR

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["seed_limiter"]


async def seed_limiter(runtime: Runtime, *, timeout_s: float) -> int | None:
    """Replay the start times of this operator's live sandboxes (listed with the default API key)
    into the creation limiter. Returns how many were seen, or None when E2B or the key could not
    be read within ``timeout_s``: then the limiter is drained instead (the next create waits for
    one refill), never left with a fresh burst."""
    settings = runtime.settings
    try:
        async with asyncio.timeout(timeout_s):
            key = await runtime.secrets.read_many([default_api_key_ref(settings)])
            backend = runtime.backends.for_key(next(iter(key.values())))
            sandboxes = await backend.list({TAG_OPERATOR: settings.operator_id})
    except Exception as exc:  # any failure: assume the worst, never a fresh burst
        runtime.limiter.drain()
        logger.warning("creation history unknown (%s); the creation limiter starts empty", type(exc).__name__)
        return None
    now = datetime.now(UTC)
    runtime.limiter.seed([(now - s.started_at).total_seconds() for s in sandboxes])
    logger.info("creation limiter seeded from %d sandbox(es) of this operator", len(sandboxes))
    return len(sandboxes)
