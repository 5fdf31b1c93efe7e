"""The backend's error vocabulary: one class per condition reason a backend call can fail with.

Everything above the backend (lifecycle, conditions, metrics) reasons about failures through
three questions only — *which condition reason is this*, *will trying again help*, and *how long
should I wait* — so each :class:`BackendError` answers exactly those: ``reason`` (a stable
condition-reason string), ``transient`` and ``retry_after_s``, plus a ``message`` a human can act
on. A fourth flag, ``ambiguous``, says whether the failed call may nevertheless have taken effect
on the server (a timeout, a dropped connection, a 502): that is what decides whether a call that is
not idempotent — ``create`` — may be repeated.

The translation of SDK exceptions into this vocabulary is ``_classify.py``'s.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationFailed",
    "BackendError",
    "BackendUnavailable",
    "CommandTimeout",
    "InvalidRequest",
    "OutputLimitExceeded",
    "QuotaExceeded",
    "RateLimited",
    "SandboxNotFound",
    "TemplateAccessDenied",
    "TemplateNotFound",
]

#: The longest wait a 429's ``Retry-After`` may impose on one call. E2B's rate windows are per
#: second (creates) and per 30 s (management API); anything longer is not honoured as-is, so a
#: misbehaving proxy in front of E2B cannot park the operator's retries for hours.
MAX_RETRY_AFTER_S = 120.0


class BackendError(Exception):
    """A failed backend call, classified.

    Class attributes hold each kind's defaults; an instance may override ``transient``,
    ``retry_after_s`` and ``ambiguous`` where the particular failure says more.
    """

    reason: ClassVar[str] = "BackendError"
    default_transient: ClassVar[bool] = False
    default_retry_after_s: ClassVar[float | None] = None

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        sandbox_id: str | None = None,
        transient: bool | None = None,
        retry_after_s: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.sandbox_id = sandbox_id
        self.transient = self.default_transient if transient is None else transient
        self.retry_after_s = self.default_retry_after_s if retry_after_s is None else retry_after_s
        self.ambiguous = ambiguous

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reason={self.reason!r}, operation={self.operation!r}, "
            f"sandbox_id={self.sandbox_id!r}, transient={self.transient}, "
            f"retry_after_s={self.retry_after_s}, message={self.message!r})"
        )


class AuthenticationFailed(BackendError):
    """401/403: the API key is wrong, revoked or lacks access. Retrying cannot help."""

    reason = "AuthenticationFailed"


class QuotaExceeded(BackendError):
    """429 because the team runs as many sandboxes as its plan allows.

    Transient in the sense that it clears when sandboxes end, but not within one call: the long
    ``retry_after_s`` is beyond any per-call retry budget, so the caller backs off at its own level.
    """

    reason = "QuotaExceeded"
    default_transient = True
    default_retry_after_s = 60.0


class RateLimited(BackendError):
    """429 for the request rate (creation per second, management API per 30 s).

    ``retry_after`` is the wait the service asked for in its ``Retry-After`` header (seconds,
    bounded by :data:`MAX_RETRY_AFTER_S`), or None when it sent none: the next attempt waits at
    least that long (``retry_after_s`` carries the same value, which the retry loop honours).
    """

    reason = "RateLimited"
    default_transient = True

    @property
    def retry_after(self) -> float | None:
        return self.retry_after_s


class TemplateNotFound(BackendError):
    """``create`` named a template that does not exist (or this key cannot see)."""

    reason = "TemplateNotFound"


class TemplateAccessDenied(BackendError):
    """403 on ``create`` because the team has no access to the named template (another team's
    private template). The key is fine — other calls with it work — so this is the template's
    problem, terminal until spec.template (or the template's sharing) changes.

    e2b-dev/infra packages/api/internal/handlers/sandbox_create.go answers such a create with
    403 "You don't have access to this sandbox template (<alias>)".
    """

    reason = "TemplateAccessDenied"


class OutputLimitExceeded(BackendError):
    """A command printed more than the backend's per-stream byte cap; it was killed.

    Only the sandbox can cause this (an agent-editable file the command reads, a tool gone wild):
    the operator's memory stays bounded by the cap whatever the sandbox prints. Not transient —
    the same command in the same sandbox will most likely flood again — so a caller counts these
    per sandbox and quarantines one that keeps doing it rather than retrying.
    """

    reason = "OutputLimitExceeded"


class SandboxNotFound(BackendError):
    """The sandbox is gone: killed, expired, or never existed under this key."""

    reason = "SandboxNotFound"


class BackendUnavailable(BackendError):
    """The service could not be reached or failed on its side (5xx, timeouts, resets)."""

    reason = "BackendUnavailable"
    default_transient = True


class InvalidRequest(BackendError):
    """The service refused the request as malformed; the same request will fail again."""

    reason = "InvalidRequest"


class CommandTimeout(BackendError):
    """A command ran past its timeout. The same script would most likely do so again."""

    reason = "CommandTimeout"


# Exceptions that are programming errors in our own code, never answers from the service:
# the backend re-raises them untouched instead of hiding them behind a retry.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
)
