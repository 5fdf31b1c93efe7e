"""The server side of the Connect protocol, JSON codec only — what envd speaks to the SDK.

Unary calls are plain ``application/json`` both ways; errors are an HTTP status plus
``{"code": "not_found", "message": ...}``. Server streams are ``application/connect+json``: every
message is a 5-byte envelope (flag byte, big-endian length) and the stream ends with an envelope
flagged ``0x02`` carrying ``{}`` or ``{"error": ...}`` — always under HTTP 200, since headers are gone
by then. Hand-written rather than mounting connectrpc's ASGI app: aiohttp is not ASGI, and the
emulator needs to see every request (latency, faults, counters) on the one port.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from aiohttp import web

STREAM_CONTENT_TYPE = "application/connect+json"
END_STREAM_FLAG = 0x02

# Connect error codes and the HTTP status each travels under (connectrpc.com/docs/protocol).
_HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}


class RPCError(Exception):
    """An error a handler raises to answer with a Connect error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def is_streaming(request: web.Request) -> bool:
    return request.content_type.startswith("application/connect+")


def decode_request(body: bytes, streaming: bool) -> dict[str, Any]:
    """The one request message of a unary or server-streaming call."""
    if streaming:
        if len(body) < 5:
            raise RPCError("invalid_argument", "missing request envelope")
        flags, length = struct.unpack(">BI", body[:5])
        if flags & 0x01:
            raise RPCError("unimplemented", "compressed request messages are not supported")
        body = body[5 : 5 + length]
    if not body.strip():
        return {}
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise RPCError("invalid_argument", f"request is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RPCError("invalid_argument", "request must be a JSON object")
    return message


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(data)) + data


def unary_response(message: dict[str, Any]) -> web.Response:
    return web.json_response(message)


def unary_error(error: RPCError) -> web.Response:
    return web.json_response(error.to_json(), status=_HTTP_STATUS.get(error.code, 500))


def end_stream(error: RPCError | None = None) -> bytes:
    return envelope({"error": error.to_json()} if error else {}, flags=END_STREAM_FLAG)


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": STREAM_CONTENT_TYPE})
    await response.prepare(request)
    return response
