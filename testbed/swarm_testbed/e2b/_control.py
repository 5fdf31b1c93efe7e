"""E2B's control plane (api.e2b.app): create, list, inspect, time out, pause, connect and kill.

camelCase JSON; exact status codes matter to the SDK — a 200 where it expects 201 reads as
"Body of the request is None", a 404 on kill is how ``kill()`` returns False, 409 on pause means
"already paused".
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from swarm_testbed.e2b._sandbox import Sandbox, rfc3339, utcnow

if TYPE_CHECKING:
    from swarm_testbed.e2b._server import E2BEmulator

_MAX_PAGE = 100


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def _not_found(sandbox_id: str) -> web.Response:
    # e2b-dev/infra packages/api/internal/utils/messages.go: SandboxNotFoundMsg (Go's %q quoting).
    return api_error(404, f"Sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")


def _cap_message(cap: int) -> str:
    # e2b-dev/infra packages/api/internal/handlers/timeout_helper.go (validateAndParseTimeout) and
    # sandbox_connect.go: "Timeout cannot be greater than %d hours" (the team's MaxLengthHours). A cap
    # that is not whole hours exists only in the emulator (lifetime_cap_seconds): say it in seconds.
    if cap % 3600 == 0:
        return f"Timeout cannot be greater than {cap // 3600} hours"
    return f"Timeout cannot be greater than {cap} seconds (emulator lifetime_cap_seconds)"


#: e2b-dev/infra packages/api/internal/handlers/sandbox_create.go: ErrMsgDomainsRequireBlockAll.
DOMAINS_REQUIRE_BLOCK_ALL = (
    "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' "
    "in deny out to block all other traffic."
)
#: e2b-dev/infra packages/shared/pkg/sandbox-network/firewall.go: AllInternetTrafficCIDR.
ALL_TRAFFIC = "0.0.0.0/0"


def _is_ip_or_cidr(entry: str) -> bool:
    """firewall.go IsIPOrCIDR: net.ParseIP or net.ParseCIDR accepts it."""
    try:
        if "/" in entry:
            ipaddress.ip_network(entry, strict=False)
        else:
            ipaddress.ip_address(entry)
    except ValueError:
        return False
    return True


def _is_specified_ip_or_cidr(entry: str) -> bool:
    """firewall.go IsSpecifiedIPOrCIDR: an IP/CIDR whose address is not 0.0.0.0 or ::, except the
    special all-traffic CIDR 0.0.0.0/0."""
    if not _is_ip_or_cidr(entry):
        return False
    if entry == ALL_TRAFFIC:
        return True
    address = entry.split("/", 1)[0]
    return not ipaddress.ip_address(address).is_unspecified


def egress_error(network: Any) -> str | None:
    """E2B's validation of ``network.allowOut``/``denyOut`` on create, or None when accepted.

    e2b-dev/infra packages/api/internal/handlers/sandbox_create.go validateEgressRules: denyOut
    entries must be IPs/CIDRs (no domains); allowOut entries may be IPs, CIDRs or domains; any domain
    in allowOut requires 0.0.0.0/0 in denyOut.
    """
    if network is None:
        return None
    if not isinstance(network, dict):
        return "Error when parsing request: network must be an object"
    deny_out = network.get("denyOut") or []
    allow_out = network.get("allowOut") or []
    if (
        not isinstance(deny_out, list)
        or not isinstance(allow_out, list)
        or not all(isinstance(e, str) for e in [*deny_out, *allow_out])
    ):
        return "Error when parsing request: allowOut and denyOut must be lists of strings"
    for cidr in deny_out:
        if not _is_specified_ip_or_cidr(cidr):
            return f"invalid denied CIDR {cidr}"
    addresses = [e for e in allow_out if _is_ip_or_cidr(e)]
    domains = [e for e in allow_out if not _is_ip_or_cidr(e)]
    for address in addresses:
        if not _is_specified_ip_or_cidr(address):
            return f"invalid allowed address {address}"
    if domains and ALL_TRAFFIC not in deny_out:
        return DOMAINS_REQUIRE_BLOCK_ALL
    return None


def effective_egress(body: dict[str, Any]) -> dict[str, list[str]]:
    """The egress rules the orchestrator applies: e2b-dev/infra packages/api/internal/orchestrator/
    create_instance.go buildNetworkConfig — ``allow_internet_access=false`` REPLACES the deny list
    with 0.0.0.0/0 (allowOut still wins over it)."""
    network = body.get("network") if isinstance(body.get("network"), dict) else {}
    allow_out = list(network.get("allowOut") or [])
    deny_out = list(network.get("denyOut") or [])
    if body.get("allow_internet_access") is False:
        deny_out = [ALL_TRAFFIC]
    return {"allowOut": allow_out, "denyOut": deny_out}


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"code": 400, "message": "invalid JSON body"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"code": 400, "message": "body must be an object"}),
            content_type="application/json",
        )
    return body


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise web.HTTPBadRequest(
            text=json.dumps({"code": 400, "message": f"{what} must map strings to strings"}),
            content_type="application/json",
        )
    return {str(k): v for k, v in value.items()}


class ControlPlane:
    """Handlers for the control-plane routes; state lives on the emulator."""

    def __init__(self, emulator: E2BEmulator) -> None:
        self.emulator = emulator

    def _create_timeout(self, value: Any) -> int | web.Response:
        """e2b-dev/infra packages/api/internal/handlers/timeout_helper.go validateAndParseTimeout:
        none sent -> SandboxTimeoutDefault (15 s); <= 0 -> 400; over the plan's cap -> 400."""
        knobs = self.emulator.knobs
        if value is None:
            return knobs.default_timeout
        if not isinstance(value, int) or isinstance(value, bool):
            return api_error(400, "Error when parsing request: timeout must be an integer (seconds)")
        if value <= 0:
            return api_error(400, "Timeout must be greater than 0")
        if value > knobs.lifetime_cap:
            return api_error(400, _cap_message(knobs.lifetime_cap))
        return value

    @staticmethod
    def _request_timeout(value: Any) -> int | web.Response:
        """spec/openapi.yml SandboxTimeoutRequest / ConnectSandbox: ``timeout`` is a required
        integer, minimum 0 (the schema check answers 400 before any handler runs)."""
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return api_error(400, "Error when parsing request: timeout is required, an integer >= 0")
        return value

    def _keep_alive(self, sandbox: Sandbox, seconds: int, allow_shorter: bool) -> web.Response | None:
        """e2b-dev/infra packages/api/internal/orchestrator/keep_alive.go KeepAliveFor: the new end is
        now + min(timeout, cap - age) — silently clamped to the lifetime cap counted from the
        sandbox's start; once the sandbox is older than the cap: 400 "Max instance length exceeded".
        ``allow_shorter`` False (connect, refresh) only ever extends."""
        now = utcnow()
        cap = datetime.timedelta(seconds=self.emulator.knobs.lifetime_cap)
        age = now - sandbox.lifetime_start
        if age > cap:
            return api_error(400, "Max instance length exceeded")
        ttl = min(cap - age, datetime.timedelta(seconds=seconds))
        end = now + max(ttl, datetime.timedelta(0))
        if not allow_shorter and end < sandbox.end_at:
            return None
        sandbox.end_at = end
        return None

    def _live(self, sandbox_id: str) -> Sandbox | None:
        sandbox = self.emulator.sandboxes.get(sandbox_id)
        return sandbox if sandbox is not None and sandbox.ended is None else None

    async def create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        template = body.get("templateID")
        if not isinstance(template, str) or not template:
            return api_error(400, "templateID is required")
        knobs = self.emulator.knobs
        if template in knobs.templates_forbidden:
            # e2b-dev/infra packages/api/internal/cache/templates/errors.go ToAPIError (ErrAccessDenied).
            return api_error(403, f"you don't have access to template '{template}'")
        if not self.emulator.template_exists(template):
            # e2b-dev/infra packages/api/internal/cache/templates/errors.go ToAPIError (ErrTemplateNotFound).
            return api_error(404, f"template '{template}' not found")
        timeout = self._create_timeout(body.get("timeout"))
        if isinstance(timeout, web.Response):
            return timeout
        if not knobs.permissive_egress:
            problem = egress_error(body.get("network"))
            if problem is not None:
                return api_error(400, problem)
        metadata = _string_map(body.get("metadata"), "metadata")
        env_vars = _string_map(body.get("envVars"), "envVars")
        quota = knobs.quota
        if quota is not None and self.emulator.running_count() >= quota:
            # e2b-dev/infra packages/api/internal/middleware/ratelimit/ratelimit.go: every 429 carries
            # Retry-After (at least 1 s).
            return api_error(
                429,
                f"You have reached the maximum number of concurrent E2B sandboxes "
                f"({quota}). If you need more, please contact us at 'https://e2b.dev/docs/getting-help'",
                headers={"Retry-After": str(max(1, knobs.retry_after_seconds))},
            )
        sandbox = self.emulator.new_sandbox(
            template=template,
            timeout=timeout,
            metadata=metadata,
            env_vars=env_vars,
            create_request=body,
            auto_pause=bool(body.get("autoPause", False)),
        )
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
            s
            for s in self.emulator.sandboxes.values()
            if s.ended is None
            and s.state in states
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
            candidates = [
                s for s in candidates if (_order_key(s) < cursor if descending else _order_key(s) > cursor)
            ]
        page = candidates[:limit]
        headers = {}
        if len(candidates) > limit:
            headers["x-next-token"] = _encode_token(_order_key(page[-1]))
        return web.json_response([s.listed_view() for s in page], headers=headers)

    async def list_v1(self, request: web.Request) -> web.Response:
        wanted = _parse_metadata_filter(request.query.get("metadata", ""))
        if wanted is None:
            return api_error(400, "invalid metadata filter")
        found = [
            s.listed_view()
            for s in self.emulator.sandboxes.values()
            if s.ended is None
            and s.state == "running"
            and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]
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
        """e2b-dev/infra packages/api/internal/handlers/sandbox_timeout.go: KeepAliveFor(timeout,
        allowShorter=true); 0 ends the sandbox now (it is reaped at once). A paused sandbox is not in
        the orchestrator's sandbox store (sandbox_connect.go: "Sandbox not in store at all -> ...
        snapshot resume"), so KeepAliveFor answers 404 for it."""
        body = await _json_body(request)
        timeout = self._request_timeout(body.get("timeout"))
        if isinstance(timeout, web.Response):
            return timeout
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None or sandbox.state != "running":
            return _not_found(request.match_info["sandbox_id"])
        refused = self._keep_alive(sandbox, timeout, allow_shorter=True)
        return refused or web.Response(status=204)

    async def refresh(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None or sandbox.state != "running":
            return _not_found(request.match_info["sandbox_id"])
        duration = body.get("duration", 60)
        if not isinstance(duration, int) or not 0 <= duration <= 3600:
            return api_error(400, "duration must be 0..3600 seconds")
        refused = self._keep_alive(sandbox, duration, allow_shorter=False)
        return refused or web.Response(status=204)

    async def connect(self, request: web.Request) -> web.Response:
        """Connect to a running sandbox (200; lease only extended, clamped to the cap), or resume a
        paused one (201). e2b-dev/infra packages/api/internal/handlers/sandbox_connect.go: timeout
        required, over the cap -> 400; running -> KeepAliveFor(timeout, allowShorter=false); not in
        the store (paused) -> resume from the snapshot as a new instance with that timeout."""
        body = await _json_body(request)
        # POST /v2/sandboxes/{id}/connect: timeout optional, default 300 s (the API model the SDK
        # ships, e2b/api/client/models/connect_sandbox_v2.py "Default: 300"; the v1 route of
        # spec/openapi.yml ConnectSandbox requires it).
        default = 300 if request.path.startswith("/v2/") else None
        timeout = self._request_timeout(body.get("timeout", default))
        if isinstance(timeout, web.Response):
            return timeout
        cap = self.emulator.knobs.lifetime_cap
        if timeout > cap:
            return api_error(400, _cap_message(cap))
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        if sandbox.state == "paused":
            await self._resume(sandbox, timeout)
            return web.json_response(sandbox.created_view(), status=201)
        refused = self._keep_alive(sandbox, timeout, allow_shorter=False)
        return refused or web.json_response(sandbox.created_view(), status=200)

    async def _resume(self, sandbox: Sandbox, timeout: int) -> None:
        # A resumed sandbox is a new instance started now (sandbox_connect.go resumes from the last
        # snapshot through the create path): its lifetime cap counts from the resume.
        await sandbox.resume()
        now = utcnow()
        sandbox.lifetime_start = now
        sandbox.end_at = now + datetime.timedelta(seconds=timeout)

    async def resume(self, request: web.Request) -> web.Response:
        """The deprecated resume call: 201 when resumed, 409 when already running."""
        body = await _json_body(request)
        sandbox = self._live(request.match_info["sandbox_id"])
        if sandbox is None:
            return _not_found(request.match_info["sandbox_id"])
        if sandbox.state != "paused":
            return api_error(409, f"Sandbox {sandbox.sandbox_id} is already running")
        timeout = self._create_timeout(body.get("timeout", 15))
        if isinstance(timeout, web.Response):
            return timeout
        await self._resume(sandbox, timeout)
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
