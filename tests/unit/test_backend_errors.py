"""classify(): every exception the SDK can raise becomes the right BackendError.

The exceptions are produced by the SDK's own mapping functions wherever it has them
(``handle_api_exception``, ``handle_rpc_exception``), so these tests follow the SDK if it changes
what a status code turns into.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pyqwest
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b import exceptions as ex
from e2b.api import handle_api_exception
from e2b.envd.rpc import handle_rpc_exception
from hypothesis import given
from hypothesis import strategies as st

from swarm_operator.backend import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    CommandTimeout,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    SandboxNotFound,
    TemplateNotFound,
    classify,
)

OPERATIONS = ["create", "list", "get", "kill", "set_timeout", "run", "connect", "pause", "resume"]


@dataclass
class _Response:
    status_code: int
    content: bytes


def api_error(status: int, message: str | None = None) -> Exception:
    body = json.dumps({"code": status, "message": message}).encode() if message else b""
    return handle_api_exception(_Response(status, body))


def rpc_error(code: Code, message: str = "boom") -> Exception:
    """An SDK exception raised the way the SDK raises it: inside the except of a ConnectError."""
    try:
        raise ConnectError(code, message)
    except ConnectError as e:
        try:
            raise handle_rpc_exception(e)
        except Exception as mapped:
            return mapped
    raise AssertionError("unreachable")


@pytest.mark.parametrize("op", ["create", "list", "get", "kill", "set_timeout", "pause"])
def test_401_is_authentication_failed_and_not_transient(op: str) -> None:
    err = classify(api_error(401, "Invalid API key"), op)
    assert isinstance(err, AuthenticationFailed)
    assert err.reason == "AuthenticationFailed"
    assert not err.transient
    assert "apiKeySecretRef" in err.message


def test_403_status_is_authentication_failed() -> None:
    err = classify(ex.SandboxException("403: forbidden", status_code=403), "get", "sbx1")
    assert isinstance(err, AuthenticationFailed)


def test_envd_refusing_the_token_during_run_is_a_reconnectable_glitch() -> None:
    err = classify(rpc_error(Code.UNAUTHENTICATED), "run", "sbx1")
    assert isinstance(err, BackendUnavailable)
    assert err.transient


def test_429_on_create_for_concurrency_is_quota_with_long_backoff() -> None:
    message = "You have reached the maximum number of concurrent E2B sandboxes (20)"
    err = classify(api_error(429, message), "create")
    assert isinstance(err, QuotaExceeded)
    assert err.reason == "QuotaExceeded"
    assert err.retry_after_s is not None and err.retry_after_s >= 30
    assert "concurrent-sandbox limit" in err.message


@pytest.mark.parametrize("op", ["create", "list", "kill"])
def test_429_for_request_rate_is_rate_limited_and_transient(op: str) -> None:
    err = classify(api_error(429, "Rate limit exceeded"), op)
    assert isinstance(err, RateLimited)
    assert err.transient and not err.ambiguous


def test_429_naming_concurrency_outside_create_is_only_rate_limited() -> None:
    err = classify(api_error(429, "too many concurrent requests"), "list")
    assert isinstance(err, RateLimited)


def test_503_is_unavailable_but_not_ambiguous_so_create_may_repeat() -> None:
    err = classify(api_error(503, "no capacity"), "create")
    assert isinstance(err, BackendUnavailable)
    assert err.transient and not err.ambiguous


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_are_unavailable_and_ambiguous(status: int) -> None:
    err = classify(api_error(status, "upstream failed"), "create")
    assert isinstance(err, BackendUnavailable)
    assert err.transient and err.ambiguous


def test_404_on_create_is_a_missing_template() -> None:
    err = classify(api_error(404, "template 'nope' not found"), "create")
    assert isinstance(err, TemplateNotFound)
    assert not err.transient


def test_400_naming_the_template_on_create_is_a_missing_template() -> None:
    err = classify(api_error(400, "invalid template id 'x y'"), "create")
    assert isinstance(err, TemplateNotFound)


def test_other_400_is_an_invalid_request() -> None:
    err = classify(api_error(400, "timeout must be at most 3600"), "create")
    assert isinstance(err, InvalidRequest)
    assert not err.transient


@pytest.mark.parametrize("op", ["get", "kill", "set_timeout", "pause", "resume", "connect"])
def test_404_elsewhere_is_sandbox_not_found(op: str) -> None:
    assert isinstance(classify(api_error(404, "not found"), op, "sbx1"), SandboxNotFound)


@pytest.mark.parametrize(
    "exc",
    [
        ex.SandboxNotFoundException("Sandbox sbx1 not found"),
        ex.SandboxNotRunningException("The sandbox sbx1 was not found"),
        ex.NotFoundException("gone"),
    ],
)
def test_sandbox_gone(exc: Exception) -> None:
    err = classify(exc, "run", "sbx1")
    assert isinstance(err, SandboxNotFound)
    assert err.sandbox_id == "sbx1"


def test_envd_proxy_502_for_a_killed_sandbox_is_not_found() -> None:
    err = classify(rpc_error(Code.UNAVAILABLE, "The sandbox sbx1 was not found"), "run", "sbx1")
    assert isinstance(err, SandboxNotFound)


def test_unreachable_sandbox_is_unavailable() -> None:
    err = classify(rpc_error(Code.UNAVAILABLE, "port is not open"), "run", "sbx1")
    assert isinstance(err, BackendUnavailable)
    assert err.ambiguous


def test_command_deadline_is_command_timeout() -> None:
    exc = rpc_error(Code.DEADLINE_EXCEEDED, "deadline exceeded")
    assert isinstance(exc, ex.TimeoutException)
    err = classify(exc, "run", "sbx1")
    assert isinstance(err, CommandTimeout)
    assert not err.transient


def test_request_timeout_is_unavailable_not_command_timeout() -> None:
    exc = ex.format_request_timeout_error()
    err = classify(exc, "run", "sbx1")
    assert isinstance(err, BackendUnavailable)
    assert err.ambiguous


def test_server_cancel_is_unavailable() -> None:
    assert isinstance(classify(rpc_error(Code.CANCELED), "run", "s"), BackendUnavailable)


@pytest.mark.parametrize(
    ("exc", "ambiguous"),
    [
        (httpx.ConnectError("refused"), False),
        (ConnectionRefusedError("refused"), False),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("bad frame"), True),
        (TimeoutError(), True),
        (ConnectionResetError("reset"), True),
        (pyqwest.ReadError("reset"), True),
        (pyqwest.WriteError("broken pipe"), True),
        (pyqwest.StreamError("reset", 8), True),
        (Exception("Body of the request is None"), True),
    ],
)
def test_transport_failures_are_unavailable(exc: Exception, ambiguous: bool) -> None:
    err = classify(exc, "create")
    assert isinstance(err, BackendUnavailable)
    assert err.transient
    assert err.ambiguous is ambiguous


@pytest.mark.parametrize(
    "exc",
    [
        ex.InvalidArgumentException("bad idempotency key"),
        ex.TemplateException("too old"),
        ex.NotEnoughSpaceException("disk full"),
        ex.GuestUnresponsiveException("unresponsive"),
        ex.SandboxException("409: conflict", status_code=409),
        rpc_error(Code.INVALID_ARGUMENT),
    ],
)
def test_refusals_are_invalid_requests(exc: Exception) -> None:
    err = classify(exc, "resume", "sbx1")
    assert isinstance(err, InvalidRequest)
    assert not err.transient


def test_raw_connect_errors_map_by_code() -> None:
    assert isinstance(classify(ConnectError(Code.NOT_FOUND, "x"), "get", "s"), SandboxNotFound)
    assert isinstance(classify(ConnectError(Code.RESOURCE_EXHAUSTED, "x"), "run", "s"), RateLimited)
    assert isinstance(classify(ConnectError(Code.DEADLINE_EXCEEDED, "x"), "run", "s"), CommandTimeout)
    assert isinstance(classify(ConnectError(Code.INTERNAL, "x"), "run", "s"), BackendUnavailable)


def test_backend_errors_pass_through_unchanged() -> None:
    original = QuotaExceeded("full", operation="create")
    assert classify(original, "list") is original


_SDK_EXCEPTIONS = st.sampled_from(
    [
        ex.SandboxException("x"),
        ex.SandboxException("x", status_code=418),
        ex.TimeoutException("x"),
        ex.AuthenticationException("x"),
        ex.RateLimitException("x"),
        ex.ServiceBusyException("x"),
        ex.BuildException("x"),
        ex.SecretException("x"),
        ex.VolumeException("x"),
        ex.FileNotFoundException("x"),
        ValueError("x"),
        KeyError("x"),
        RuntimeError("x"),
    ]
)


@given(exc=_SDK_EXCEPTIONS, op=st.sampled_from(OPERATIONS), sid=st.none() | st.text(max_size=20))
def test_every_exception_becomes_a_classified_error(exc: Exception, op: str, sid: str | None) -> None:
    err = classify(exc, op, sid)
    assert isinstance(err, BackendError)
    assert type(err) is not BackendError
    assert err.reason == type(err).reason
    assert err.message
    assert err.operation == op and err.sandbox_id == sid
    assert isinstance(err.transient, bool)
