"""How E2B's refusals reach the operator, through the real SDK against a stand-in API that answers
the way E2B's server does (e2b-dev/infra packages/api): a 403 for another team's template is the
template's problem, not a bad key; a 429's Retry-After decides when the next attempt goes out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from swarm_operator.backend import (
    AuthenticationFailed,
    E2BBackend,
    RateLimited,
    RetryPolicy,
    TemplateAccessDenied,
    classify,
)
from swarm_operator.backend._errors import MAX_RETRY_AFTER_S

KEY = "e2b_" + "0" * 40


class StandIn:
    """Answers each request with the next scripted (status, message, headers); records arrivals."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str, dict[str, str]]] = []
        self.arrivals: list[tuple[str, float]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append((f"{request.method} {request.path}", time.monotonic()))
        status, message, headers = self.script.pop(0) if self.script else (500, "unscripted", {})
        return web.json_response({"code": status, "message": message}, status=status, headers=headers)


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    stand_in = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stand_in.url = f"http://127.0.0.1:{port}"
    yield stand_in
    await runner.cleanup()


def _backend(api: StandIn) -> E2BBackend:
    return E2BBackend(KEY, api_url=api.url, sandbox_url=api.url, retry=RetryPolicy(attempts=1))


# e2b-dev/infra packages/api/internal/cache/templates/errors.go (ErrAccessDenied):
# 403 "you don't have access to template '<id>'".
NO_ACCESS = (403, "you don't have access to template 'team-b-private'", {})


async def test_a_template_of_another_team_is_template_access_denied(api: StandIn) -> None:
    api.script = [NO_ACCESS]
    with pytest.raises(TemplateAccessDenied) as refused:
        await _backend(api).create("team-b-private", {"uid": "u"}, timeout_s=60)
    err = refused.value
    assert (err.reason, err.transient) == ("TemplateAccessDenied", False)
    assert "spec.template" in err.message and "team-b-private" in err.message
    assert KEY not in err.message


async def test_a_403_elsewhere_is_still_the_key(api: StandIn) -> None:
    api.script = [(403, "Invalid API key", {}), (401, "Invalid API key", {})]
    backend = _backend(api)
    with pytest.raises(AuthenticationFailed):
        await backend.create("base", {"uid": "u"}, timeout_s=60)
    with pytest.raises(AuthenticationFailed):
        await backend.get("sbx1")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("999999", MAX_RETRY_AFTER_S),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
async def test_retry_after_is_carried_bounded(
    api: StandIn, header: str | None, expected: float | None
) -> None:
    api.script = [(429, "Rate limit exceeded", {"Retry-After": header} if header else {})]
    with pytest.raises(RateLimited) as limited:
        await _backend(api).get("sbx1")
    assert limited.value.retry_after == expected
    assert limited.value.retry_after_s == expected


async def test_retry_after_sets_when_the_next_attempt_goes_out(api: StandIn) -> None:
    api.script = [(429, "Rate limit exceeded", {"Retry-After": "1"}), NO_ACCESS]
    backend = E2BBackend(
        KEY,
        api_url=api.url,
        sandbox_url=api.url,
        retry=RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=5, deadline_s=30),
    )
    with pytest.raises(TemplateAccessDenied):
        await backend.create("team-b-private", {"uid": "u"}, timeout_s=60)
    (_, first), (_, second) = api.arrivals
    assert second - first >= 1.0


def test_classify_reads_the_status_not_just_the_words() -> None:
    from e2b.exceptions import SandboxException

    exc = SandboxException("403: you don't have access to template 'x'", status_code=403)
    assert isinstance(classify(exc, "create"), TemplateAccessDenied)
    assert isinstance(classify(exc, "list"), AuthenticationFailed)
