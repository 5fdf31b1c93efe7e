"""E2B's control plane (api.e2b.app): create, list, inspect, time out, pause, connect and kill.

camelCase JSON; exact status codes matter to the SDK — a 200 where it expects 201 reads as
"Body of the request is None", a 404 on kill is how ``kill()`` returns False, 409 on pause means
"already paused".
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from swarm_operator.emulators.e2b._sandbox import Sandbox, rfc3339, utcnow

if TYPE_CHECKING:
    from swarm_operator.emulators.e2b._server import E2BEmulator

_MAX_PAGE = 100


def api_error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


def _not_found(sandbox_id: str) -> web.Response:
    return api_error(404, f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"code": 400, "message": "invalid JSON body"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"code": 400, "message": "body must be an object"}),
                                 content_type="application/json")
    return body


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise web.HTTPBadRequest(text=json.dumps({"code": 400, "message": f"{what} must map strings to strings"}),
                                 content_type="application/json")
    return {str(k): v for k, v in value.items()}


class ControlPlane:
    """Handlers for the control-plane routes; state lives on the emulator."""

    def __init__(self, emulator: E2BEmulator) -> None:
        self.emulator = emulator

    def _timeout(self, value: Any) -> int | web.Response:
        knobs = self.emulator.knobs
        if value is None:
            return knobs.default_timeout
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return api_error(400, "timeout must be a non-negative integer (seconds)")
        if value > knobs.max_timeout:
            return api_error(400, f"Timeout cannot be greater than {knobs.max_timeout // 3600} hours")
        return value

    def _live(self, sandbox_id: str) -> Sandbox | None:
        sandbox = self.emulator.sandboxes.get(sandbox_id)
        return sandbox if sandbox is not None and sandbox.ended is None else None

    async def create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        template = body.get("templateID")
        if not isinstance(template, str) or not template:
            return api_error(400, "templateID is required")
        known = self.emulator.templates
        if known is not None and template not in known:
            return api_error(404, f"template '{template}' not found")
        timeout = self._timeout(body.get("timeout"))
        if isinstance(timeout, web.Response):
            return timeout
        metadata = _string_map(body.get("metadata"), "metadata")
        env_vars = _string_map(body.get("envVars"), "envVars")
        quota = self.emulator.knobs.quota
        if quota is not None and self.emulator.running_count() >= quota:
            return api_error(429, f"You have reached the maximum number of concurrent E2B sandboxes "
                                  f"({quota}). If you need more, please contact us at 'https://e2b.dev/docs/getting-help'")
        sandbox = self.emulator.new_sandbox(template=template, timeout=timeout, metadata=metadata,
                                            env_vars=env_vars, create_request=body,
                                            auto_pause=bool(body.get("autoPause", False)))
        return web.json_response(sandbox.created_view(), status=201)

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", _MAX_PAGE))
        except ValueError:
            return api_error(400, "limit must be an integer")
        if not 1 <= limit <= _MAX_PAGE:
            return api_error(400, f"limit must be between 1 and {_MAX_PAGE}")
        states = {s for s in query.get("state", "running,paused").split(",") if s}
        if states - {"running", "paused"}:
            return api_error(400, f"invalid state filter {sorted(states)}")
        wanted = _parse_metadata_filter(query.get("metadata", ""))
        if wanted is None:
            return api_error(400, "invalid metadata filter")
        template = query.get("template")
        started_after: datetime.datetime | None = None
        if "startedAfter" in query:
            try:
                started_after = datetime.datetime.fromisoformat(query["startedAfter"].replace("Z", "+00:00"))
            except ValueError:
                return api_error(400, "startedAfter must be RFC 3339")
        descending = query.get("order", "desc") == "desc"
        candidates = [
            s for s in self.emulator.sandboxes.values()
            if s.ended is None and s.state in states
            and all(s.metadata.get(k) == v for k, v in wanted.items())
            and (template is None or template in (s.template_id, s.alias))
            and (started_after is None or s.started_at > started_after)
        ]
        candidates.sort(key=_order_key, reverse=descending)
        token = query.get("nextToken")
        if token:
            cursor = _decode_token(token)
            if cursor is None:
                return api_error(400, "invalid nextToken")
            candidates = [s for s in candidates
                          if (_order_key(s) < cursor if descending else _order_key(s) > cursor)]
        page = candidates[:limit]
        headers = {}
        if len(candidates) > limit:
            headers["x-next-token"] = _encode_token(_order_key(page[-1]))
        return web.json_response([s.listed_view() for s in page], headers=headers)

    async def list_v1(self, request: web.Request) -> web.Response:
        wanted = _parse_metadata_filter(request.query.get("metadata", ""))
        if wanted is None:
            return api_error(400, "invalid metadata filter")
        found = [s.listed_view() for s in self.emulator.sandboxes.values()
                 if s.ended is None and s.state == "running"
                 and all(s.metadata.get(k) == v for k, v in wanted.items())]
        return web.json_response(found)

    async def get(self, request: web.Request) -> web.Response:
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        return web.json_response(sandbox.detail_view())

    async def kill(self, request: web.Request) -> web.Response:
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        await self.emulator.destroy(sandbox, "killed")
        return web.Response(status=204)

    async def set_timeout(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        timeout = self._timeout(body.get("timeout"))
        if isinstance(timeout, web.Response):
            return timeout
        sandbox.end_at = utcnow() + datetime.timedelta(seconds=timeout)
        return web.Response(status=204)

    async def refresh(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        duration = body.get("duration", 60)
        if not isinstance(duration, int) or not 0 <= duration <= 3600:
            return api_error(400, "duration must be 0..3600 seconds")
        sandbox.end_at = max(sandbox.end_at, utcnow() + datetime.timedelta(seconds=duration))
        return web.Response(status=204)

    async def connect(self, request: web.Request) -> web.Response:
        """Connect to a running sandbox (200, lease extended), or resume a paused one (201)."""
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        timeout = self._timeout(body.get("timeout", 300))
        if isinstance(timeout, web.Response):
            return timeout
        wanted_end = utcnow() + datetime.timedelta(seconds=timeout)
        if sandbox.state == "paused":
            await sandbox.resume()
            sandbox.end_at = wanted_end
            return web.json_response(sandbox.created_view(), status=201)
        sandbox.end_at = max(sandbox.end_at, wanted_end)
        return web.json_response(sandbox.created_view(), status=200)

    async def resume(self, request: web.Request) -> web.Response:
        """The deprecated resume call: 201 when resumed, 409 when already running."""
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        if sandbox.state != "paused":
            return api_error(409, f"Sandbox {sandbox.sandbox_id} is already running")
        timeout = self._timeout(body.get("timeout", 15))
        if isinstance(timeout, web.Response):
            return timeout
        await sandbox.resume()
        sandbox.end_at = utcnow() + datetime.timedelta(seconds=timeout)
        return web.json_response(sandbox.created_view(), status=201)

    async def pause(self, request: web.Request) -> web.Response:
        await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        if sandbox.state == "paused":
            return api_error(409, f"Sandbox {sandbox.sandbox_id} is already paused")
        await sandbox.pause()
        return web.Response(status=204)

    async def metrics(self, request: web.Request) -> web.Response:
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        now = utcnow()
        running = sum(1 for p in sandbox.processes.values() if not p.done.is_set())
        sample = {
            "timestamp": rfc3339(now),
            "timestampUnix": int(now.timestamp()),
            "cpuCount": sandbox.cpu_count,
            "cpuUsedPct": min(100.0, 1.0 + 5.0 * running),
            "memUsed": (128 + 32 * running) * 1024 * 1024,
            "memTotal": sandbox.memory_mb * 1024 * 1024,
            "memCache": 16 * 1024 * 1024,
            "diskUsed": _disk_usage(sandbox),
            "diskTotal": sandbox.disk_size_mb * 1024 * 1024,
        }
        return web.json_response([sample])


def _disk_usage(sandbox: Sandbox) -> int:
    total = 0
    for root in (sandbox.fs.home, sandbox.fs.tmp):
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
            except OSError:
                pass
    return total


def _parse_metadata_filter(raw: str) -> dict[str, str] | None:
    """The SDK percent-encodes keys and values, then url-encodes the pairs: undo both."""
    if not raw:
        return {}
    try:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    return {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in pairs}


def _order_key(sandbox: Sandbox) -> tuple[float, str]:
    return (sandbox.started_at.timestamp(), sandbox.sandbox_id)


def _encode_token(key: tuple[float, str]) -> str:
    """An opaque cursor: the sort key of the last item served, so deletions never skip an item."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[float, str] | None:
    try:
        started, sandbox_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (float(started), str(sandbox_id))
    except (ValueError, TypeError):
        return None
