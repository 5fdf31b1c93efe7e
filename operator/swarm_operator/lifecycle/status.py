"""The status draft: the resource's status as a handler is changing it, written only when it differs.

Every handler builds one :class:`StatusBook` from the status it was handed, sets conditions and
fields on it, and commits. Skipping identical writes keeps the API server's write load (and kopf's
own reaction to our writes) at what a reconcile really changed; a Kubernetes Event is posted on
every phase change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from swarm_operator import logs
from swarm_operator.conditions import (
    TERMINAL_REASONS,
    ConditionType,
    Reason,
    Status,
    derive_phase,
    refresh_ready,
    set_condition,
    troubleshooting_pointer,
)
from swarm_operator.lifecycle.runtime import GiveUp, ResourceRef, Runtime
from swarm_operator.model import MetricsStatus, Phase, SwarmSandboxStatus

logger = logging.getLogger("swarm_operator.lifecycle")

__all__ = ["StatusBook", "give_up"]


#: Bounds on text the operator writes about a resource: conditions carry up to 32 KiB (the API's
#: own limit), Events are shown one a line by ``kubectl describe``.
CONDITION_MESSAGE_LIMIT = 32_768
EVENT_MESSAGE_LIMIT = 1_024


class StatusBook:
    """The resource's status as the operator is changing it, written only when it differs."""

    def __init__(self, ref: ResourceRef, status: SwarmSandboxStatus, runtime: Runtime) -> None:
        self.ref = ref
        self.runtime = runtime
        # A copy: the caller's status is what was last observed, and stays so.
        self.status = status.model_copy(deep=True)
        self._written = self.status.to_patch()
        self._phase = self.status.phase

    def set(self, type_: ConditionType, status: Status, reason: str, message: str = "") -> None:
        # Messages quote sandbox text (step errors, stderr tails, gateway lines): every one goes
        # through the resource's redactor and a length bound before it reaches status.
        # A problem's message ends with where its reason is explained (docs/troubleshooting.md).
        pointed = reason in _WARNING_REASONS
        message = _fit(message, self.ref.uid, CONDITION_MESSAGE_LIMIT, reason if pointed else "")
        self.status.conditions = set_condition(
            self.status.conditions,
            type_,
            status,
            reason,
            message,
            observed_generation=self.ref.generation,
        )

    def event(self, type_: str, reason: str, message: str) -> None:
        """Post a Kubernetes Event about this resource (never raises, never blocks)."""
        message = _fit(message, self.ref.uid, EVENT_MESSAGE_LIMIT, reason if type_ == "Warning" else "")
        self.runtime.events.record(self.ref, type_, reason, message)

    @contextlib.contextmanager
    def unannounced(self) -> Iterator[None]:
        """Changes made inside stay in the draft, but no commit writes them and no Event is posted
        until a commit after the block: for work whose intermediate states would mislead (a
        hand-over's new sandbox failing its setup while the old one runs every agent)."""
        runtime, written, phase = self.runtime, self._written, self._phase
        self.runtime = dataclasses.replace(runtime, status=_Unwritten(), events=_Unwritten())
        try:
            yield
        finally:
            self.runtime, self._written, self._phase = runtime, written, phase

    def step(self, name: str, seconds: float) -> None:
        metrics = self.status.metrics or MetricsStatus()
        metrics.step_seconds = {**metrics.step_seconds, name: round(seconds, 3)}
        self.status.metrics = metrics
        self.runtime.metrics.step(name, seconds)

    def changed(self) -> bool:
        """Whether the status differs from what was last written (conditions refreshed first)."""
        conditions = refresh_ready(self.status.conditions, observed_generation=self.ref.generation)
        probe = self.status.model_copy(
            update={
                "conditions": conditions,
                "phase": derive_phase(conditions),
            }
        )
        patch = probe.to_patch()
        patch.pop("message", None)
        written = {k: v for k, v in self._written.items() if k != "message"}
        written.pop("observedGeneration", None)
        patch.pop("observedGeneration", None)
        return patch != written

    async def commit(self, *, deleting: bool = False) -> None:
        conditions = refresh_ready(self.status.conditions, observed_generation=self.ref.generation)
        self.status.conditions = conditions
        self.status.phase = derive_phase(conditions, deleting=deleting)
        ready = next(c for c in conditions if c.type == ConditionType.READY)
        self.status.message = ready.message or None
        self.status.observed_generation = self.ref.generation
        self.runtime.metrics.observe_phase(self.ref.uid, self.ref.namespace, self.status.phase)
        patch = self.status.to_patch()
        if patch == self._written:
            return
        await self.runtime.status.patch_status(self.ref, _with_removals(self._written, patch))
        self._written = patch
        if self.status.phase != self._phase:
            kind = "Warning" if ready.status == "False" and ready.reason in _WARNING_REASONS else "Normal"
            # A resource's first phase is not a transition; when it only says "work started"
            # (Creating, Initializing) the Event would cost an API write per resource for nothing
            # `kubectl get` does not already show. Errors are always posted.
            if self._phase is not None or kind == "Warning" or self.status.phase not in _STARTING:
                self.runtime.events.record(
                    self.ref,
                    kind,
                    ready.reason,
                    _fit(
                        f"Phase {self._phase or 'None'} -> {self.status.phase}: {ready.message}",
                        self.ref.uid,
                        EVENT_MESSAGE_LIMIT,
                        ready.reason if kind == "Warning" else "",
                    ),
                )
            logger.info(
                "phase %s -> %s (%s)",
                self._phase,
                self.status.phase,
                ready.reason,
                extra=self.ref.log_extra,
            )
            self._phase = self.status.phase


class _Unwritten:
    """A status writer and event recorder that keeps nothing (:meth:`StatusBook.unannounced`)."""

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> None:
        return None

    def record(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None:
        return None


_STARTING = frozenset({Phase.CREATING, Phase.INITIALIZING})

_WARNING_REASONS = frozenset(TERMINAL_REASONS) | {
    Reason.IDENTITY_MISMATCH,
    Reason.SECRET_NOT_FOUND,
    Reason.CONFIG_MAP_NOT_FOUND,
    Reason.QUOTA_EXCEEDED,
    Reason.RATE_LIMITED,
    Reason.BACKEND_UNAVAILABLE,
    Reason.SANDBOX_NOT_FOUND,
    Reason.AGENTS_DEGRADED,
    Reason.AGENTS_NOT_REGISTERED,
    Reason.OUTPUT_LIMIT_EXCEEDED,
    Reason.COMMAND_TIMEOUT,
    Reason.PROBE_FAILED,
}


def _fit(message: str, uid: str, limit: int, reason: str) -> str:
    """``message`` made fit for status or an Event (redacted, bounded: ``logs.sandbox_text``),
    ending with the pointer to ``reason``'s section of docs/troubleshooting.md when one is given;
    the pointer survives any cut, and a message that already ends with it is not pointed twice."""
    pointer = troubleshooting_pointer(reason) if reason else ""
    text = message.strip().removesuffix(pointer).rstrip() if pointer else message
    text = logs.sandbox_text(text, uid, limit=limit - len(pointer) - 1 if pointer else limit, keep="head")
    return f"{text} {pointer}" if text and pointer else text or pointer


def _with_removals(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a JSON merge patch over ``old``: a merge patch only sets keys, so every key we
    dropped, at any depth (``health.reason`` once healthy again), must be sent as null."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = _with_removals(before, value)
        else:
            patch[key] = value
    return patch


async def give_up(book: StatusBook, reason: str, message: str) -> NoReturn:
    """Record a failure only a spec (or referenced object) change fixes, and raise :class:`GiveUp`."""
    book.set(ConditionType.SYNCED, "False", reason, message)
    await book.commit()
    logger.warning("%s: %s", reason, message, extra=book.ref.log_extra)
    raise GiveUp(message, reason=reason)
