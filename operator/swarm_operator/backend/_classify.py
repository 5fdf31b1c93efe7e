"""The one place SDK exceptions are translated into the backend's error vocabulary (``_errors.py``).

:func:`classify` maps *every* exception the E2B SDK (and the HTTP stacks beneath it: httpx, pyqwest,
connectrpc) can raise. It reads types and status codes first and falls back to the message text
only where the SDK leaves no other trace (a 429 for the concurrency cap versus the request rate).
Messages never include an API key or an envd token: they are built here, not copied from headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._errors import (
    MAX_RETRY_AFTER_S,
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    CommandTimeout,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    SandboxNotFound,
    TemplateAccessDenied,
    TemplateNotFound,
)

__all__ = ["classify"]

# Fragments of the E2B API's 429 message when the cap is on concurrently running sandboxes
# (e.g. "You have reached the maximum number of concurrent E2B sandboxes (20)").
_QUOTA_HINTS = ("concurrent", "maximum number of", "quota")


def classify(exc: BaseException, operation: str, sandbox_id: str | None = None) -> BackendError:
    """Translate any exception raised by an SDK call into a :class:`BackendError`.

    ``operation`` is the backend method (``create``, ``list``, ``get``, ``kill``, ``set_timeout``,
    ``run``, ``connect``, ``pause``, ``resume``): the same status means different things in
    different places (a 404 on ``create`` is a missing template, elsewhere a missing sandbox).
    A :class:`BackendError` passes through unchanged.
    """
    if isinstance(exc, BackendError):
        return exc
    return _classify(exc, operation, sandbox_id)


def _classify(exc: BaseException, op: str, sid: str | None) -> BackendError:
    kw: dict[str, Any] = {"operation": op, "sandbox_id": sid}
    detail = _detail(exc)
    # Order matters: the SDK's hierarchy nests (SandboxNotRunning < Timeout < Sandbox), and the
    # SDK's own types say more than the transport's.
    for stage in (_sdk_access, _sdk_sandbox, _sdk_request, _transport):
        err = stage(exc, op, sid, detail, kw)
        if err is not None:
            return err
    # The SDK raises bare Exception for malformed answers ("Body of the request is None",
    # "Command ended without an end event"); anything else unknown lands here too.
    return BackendUnavailable(
        f"unexpected failure during {op} on {_target(sid)}: {type(exc).__name__}: {detail}",
        ambiguous=True,
        **kw,
    )


# The stages below import the SDK inside: importing the error vocabulary costs nothing and never
# fails because of the SDK's heavy imports; classify() is only ever called after an SDK call.


def _sdk_access(
    exc: BaseException, op: str, sid: str | None, detail: str, kw: dict[str, Any]
) -> BackendError | None:
    """The SDK's answers about the caller: a refused key, a rate, a busy service."""
    from e2b import exceptions as ex
    from e2b.sandbox.commands.command_handle import CommandExitException

    if isinstance(exc, CommandExitException):
        # Only reached if a caller asked the SDK to raise on non-zero exits; a result, really.
        return InvalidRequest(f"{op}: command exited with code {exc.exit_code}", **kw)
    if isinstance(exc, ex.AuthenticationException):
        return _auth(op, kw)
    if isinstance(exc, ex.RateLimitException):
        return _rate(op, detail, kw, exc)
    if isinstance(exc, ex.ServiceBusyException):
        # Documented by the SDK: a 503 changed nothing, so even create may be repeated.
        return BackendUnavailable(f"E2B is temporarily busy (503) during {op}; retrying. ({detail})", **kw)
    return None


def _sdk_sandbox(
    exc: BaseException, op: str, sid: str | None, detail: str, kw: dict[str, Any]
) -> BackendError | None:
    """The SDK's answers about the sandbox's state: unresponsive, gone, unreachable, too slow."""
    from e2b import exceptions as ex

    target = _target(sid)
    if isinstance(exc, ex.GuestUnresponsiveException):
        return InvalidRequest(
            f"{target} was paused while its guest agent was unresponsive and cannot be "
            "resumed with its memory; delete and recreate it (or resume with reboot).",
            **kw,
        )
    if isinstance(exc, ex.SandboxNotRunningException):
        return SandboxNotFound(
            f"{target} is not running anymore (killed, paused or past its timeout). ({detail})",
            **kw,
        )
    if isinstance(exc, ex.SandboxUnreachableException):
        return BackendUnavailable(
            f"{target} could not be reached; its state is unknown. ({detail})", ambiguous=True, **kw
        )
    if isinstance(exc, ex.TimeoutException):
        if op == "run" and _is_command_deadline(exc):
            return CommandTimeout(
                f"the command in {target} ran past its timeout; raise the timeout or make the "
                "script finish sooner",
                **kw,
            )
        return BackendUnavailable(f"{op} on {target} timed out; retrying. ({detail})", ambiguous=True, **kw)
    return None


def _sdk_request(
    exc: BaseException, op: str, sid: str | None, detail: str, kw: dict[str, Any]
) -> BackendError | None:
    """The SDK's answers about the request: refused, not found, or a bare status/RPC code."""
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError
    from e2b import exceptions as ex

    if isinstance(exc, ex.TemplateException):
        return InvalidRequest(
            "the template's envd is too old for this SDK; rebuild the template with a current "
            "E2B template builder",
            **kw,
        )
    if isinstance(exc, ex.NotEnoughSpaceException):
        return InvalidRequest(
            f"{_target(sid)} ran out of disk space; use a template with a larger disk", **kw
        )
    if isinstance(exc, ex.InvalidArgumentException):
        return InvalidRequest(f"E2B refused the {op} request as invalid: {detail}", **kw)
    if isinstance(exc, ex.NotFoundException):
        return _not_found(op, sid, detail, kw)
    if isinstance(exc, ex.SandboxException):
        return _by_status(exc.status_code, op, sid, detail, kw, exc)
    if isinstance(exc, ConnectError):
        return _by_connect_code(exc, Code, op, sid, detail, kw)
    return None


def _transport(
    exc: BaseException, op: str, sid: str | None, detail: str, kw: dict[str, Any]
) -> BackendError | None:
    """Transport-level failures: the request may or may not have reached the server."""
    import httpx
    from pyqwest import ReadError, RemoteProtocolError, WriteError

    if isinstance(exc, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
        return BackendUnavailable(
            f"{op} on {_target(sid)} timed out; retrying. ({detail})", ambiguous=True, **kw
        )
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        # Nothing was sent: connecting failed.
        return BackendUnavailable(f"cannot connect to E2B during {op}: {detail}", **kw)
    if isinstance(
        exc,
        httpx.TransportError | ReadError | WriteError | RemoteProtocolError | OSError,
    ):
        return BackendUnavailable(f"connection to E2B failed during {op}: {detail}", ambiguous=True, **kw)
    if isinstance(exc, httpx.HTTPStatusError):
        return _by_status(exc.response.status_code, op, sid, detail, kw, exc)
    return None


def _target(sid: str | None) -> str:
    return f"sandbox {sid}" if sid else "the E2B API"


def _by_status(
    status: int | None,
    op: str,
    sid: str | None,
    detail: str,
    kw: dict[str, Any],
    exc: BaseException | None = None,
) -> BackendError:
    target = _target(sid)
    if status == 403 and op == "create" and _is_template_access(detail):
        return _template_access(detail, kw)
    if status in (401, 403):
        return _auth(op, kw)
    if status == 404:
        return _not_found(op, sid, detail, kw)
    if status == 429:
        return _rate(op, detail, kw, exc)
    if status in (400, 422):
        if op == "create" and "template" in detail.lower():
            return TemplateNotFound(
                f"E2B does not know the requested template: {detail}. Check spec.template.", **kw
            )
        return InvalidRequest(f"E2B refused the {op} request ({status}): {detail}", **kw)
    if status == 409:
        return InvalidRequest(
            f"E2B refused {op} on {target}: it conflicts with the sandbox's state ({detail})", **kw
        )
    if status == 503:
        return BackendUnavailable(f"E2B is busy (503) during {op}; retrying. ({detail})", **kw)
    if status is not None and status >= 500:
        return BackendUnavailable(
            f"E2B failed during {op} ({status}); retrying. ({detail})", ambiguous=True, **kw
        )
    return BackendUnavailable(f"E2B answered {op} unexpectedly ({status}): {detail}", ambiguous=True, **kw)


def _not_found(op: str, sid: str | None, detail: str, kw: dict[str, Any]) -> BackendError:
    if op == "create":
        return TemplateNotFound(
            f"E2B does not know the requested template: {detail}. Check spec.template.", **kw
        )
    return SandboxNotFound(f"sandbox {sid} does not exist (killed or expired). ({detail})", **kw)


def _by_connect_code(
    exc: Any, code_cls: Any, op: str, sid: str | None, detail: str, kw: dict[str, Any]
) -> BackendError:
    """A raw connectrpc error (the SDK normally maps these itself; this is the safety net)."""
    code = exc.code
    if code is code_cls.UNAUTHENTICATED or code is code_cls.PERMISSION_DENIED:
        return _auth(op, kw)
    if code is code_cls.NOT_FOUND:
        return _not_found(op, sid, detail, kw)
    if code is code_cls.RESOURCE_EXHAUSTED:
        return RateLimited(f"envd rate limit hit during {op}. ({detail})", **kw)
    if code is code_cls.DEADLINE_EXCEEDED and op == "run":
        return CommandTimeout(f"the command in sandbox {sid} ran past its timeout", **kw)
    if code is code_cls.INVALID_ARGUMENT:
        return InvalidRequest(f"envd refused the {op} request as invalid: {detail}", **kw)
    return BackendUnavailable(f"envd failed during {op} ({code}): {detail}", ambiguous=True, **kw)


def _is_template_access(detail: str) -> bool:
    # e2b-dev/infra packages/api/internal/cache/templates/errors.go (ErrAccessDenied) and
    # packages/api/internal/handlers/auth.go: 403 "you don't have access to template '<id>'".
    text = detail.lower()
    return "template" in text and "access" in text


def _template_access(detail: str, kw: dict[str, Any]) -> BackendError:
    return TemplateAccessDenied(
        "E2B refused the template: this API key's team has no access to it (a private template of "
        f"another team). Use a template your team owns or a public one in spec.template. ({detail})",
        **kw,
    )


def _retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` (delta-seconds) of the 429 behind ``exc``, bounded, or None.

    The SDK (e2b 2.63, ``e2b/api/__init__.py: api_exception_from_code``) builds its
    RateLimitException from the status and body only and drops the response. The response is
    still a local of the SDK function that raised (``res = await ...asyncio_detailed(...)``;
    ``raise handle_api_exception(res)``), so it is read from the traceback's frames; an
    ``httpx.HTTPStatusError`` anywhere in the chain carries it directly. Only an integer
    delta-seconds value is honoured (as the SDK's own ``e2b/retry.py: parse_retry_after``).
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        try:
            value = _header(getattr(cur, "response", None)) or _header_in_frames(cur)
        except Exception:  # an odd object's property raised: no hint, never a crash in classify
            value = None
        if value is not None:
            value = value.strip()
            if value.isascii() and value.isdecimal() and len(value) <= 10:
                return min(float(int(value)), MAX_RETRY_AFTER_S)
            return None
        cur = cur.__cause__ or cur.__context__
    return None


def _header_in_frames(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    while tb is not None:
        for local in list(tb.tb_frame.f_locals.values()):
            if getattr(local, "status_code", None) == 429 and (value := _header(local)):
                return value
        tb = tb.tb_next
    return None


def _header(response: Any) -> str | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def _rate(op: str, detail: str, kw: dict[str, Any], exc: BaseException | None = None) -> BackendError:
    # E2B answers 429 both for the request rate and, on create, for the concurrent-sandbox cap;
    # only the message tells them apart, and they need very different backoffs.
    if op == "create" and any(h in detail.lower() for h in _QUOTA_HINTS):
        return QuotaExceeded(
            "E2B refused to start another sandbox: the team is at its concurrent-sandbox "
            "limit. Delete or suspend SwarmSandboxes, or raise the limit with E2B; "
            f"the operator retries later. ({detail})",
            **kw,
        )
    after = _retry_after(exc) if exc is not None else None
    hint = f" E2B asked to wait {after:g}s." if after is not None else ""
    return RateLimited(
        f"E2B rate limit hit during {op}; backing off and retrying.{hint} ({detail})",
        retry_after_s=after,
        **kw,
    )


def _auth(op: str, kw: dict[str, Any]) -> BackendError:
    # On `run` the refusal comes from envd, about the sandbox's access token, not the API key:
    # the cached connection is stale (e.g. the sandbox was resumed elsewhere); reconnecting fixes it.
    if op == "run":
        return BackendUnavailable(
            "the sandbox refused the cached access token; the backend reconnects and retries", **kw
        )
    return AuthenticationFailed(
        "E2B rejected the API key (401/403). Check that the Secret referenced by "
        "spec.e2b.apiKeySecretRef holds a valid, unrevoked key for this team.",
        **kw,
    )


def _is_command_deadline(exc: BaseException) -> bool:
    """Whether a TimeoutException came from a command's own deadline (connectrpc's
    DEADLINE_EXCEEDED), as opposed to a request timeout or a server-side cancel.

    The SDK raises its mapped exception inside the ``except`` block that caught the
    ConnectError, so the original survives as ``__context__``/``__cause__``.
    """
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectError):
            return cur.code is Code.DEADLINE_EXCEEDED
        cur = cur.__cause__ or cur.__context__
    return "exceeding 'timeout'" in str(exc)


def _detail(exc: BaseException) -> str:
    """The exception's own text, shortened; never contains request headers (keys, tokens)."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
