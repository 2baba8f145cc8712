"""A small HTTP/1.1 server on asyncio streams, so the simulator controls the socket.

A handler returns a :class:`Response`, or ``None`` to close the connection without
answering (what a network failure looks like to the client). Keep-alive, bodies by
``Content-Length`` only (the SDK and httpx send nothing else); anything else is
answered 400/411/413 and the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import msgspec

log = logging.getLogger("vedina.provider_sim")
MAX_HEAD_BYTES = 32 * 1024
MAX_BODY_BYTES = 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Request Failed", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
            500: "Internal Server Error"}


class Request(msgspec.Struct, kw_only=True):
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Response(msgspec.Struct, kw_only=True):
    status: int
    body: bytes
    headers: dict[str, str] = {}

    @classmethod
    def json(cls, status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
        return cls(status=status, body=msgspec.json.encode(payload),
                   headers={"content-type": "application/json", **(headers or {})})


Handler = Callable[[Request], Awaitable[Response | None]]


async def _read_request(reader: asyncio.StreamReader) -> Request | Response | None:
    """The next request on the connection; None at a clean end; a Response for a refusal."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        return Response.json(400, {"error": {"message": "request head too large"}})
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ")
    except ValueError:
        return Response.json(400, {"error": {"message": "malformed request line"}})
    headers: dict[str, str] = {}
    for line in filter(None, lines[1:]):
        name, sep, value = line.partition(":")
        if not sep:
            return Response.json(400, {"error": {"message": "malformed header"}})
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        return Response.json(411, {"error": {"message": "send a Content-Length body"}})
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return Response.json(400, {"error": {"message": "bad Content-Length"}})
    if not 0 <= length <= MAX_BODY_BYTES:
        return Response.json(413, {"error": {"message": "body too large"}})
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    url = urlsplit(target)
    return Request(method=method.upper(), path=unquote(url.path), query=url.query, headers=headers, body=body)


def _encode(response: Response, *, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
             f"content-length: {len(response.body)}", f"connection: {'keep-alive' if keep_alive else 'close'}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


async def _connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                break
            if isinstance(request, Response):
                writer.write(_encode(request, keep_alive=False))
                await writer.drain()
                break
            try:
                response = await handler(request)
            except Exception:
                log.exception("provider-sim: %s %s failed", request.method, request.path)
                response = Response.json(500, {"error": {"type": "api_error", "message": "simulator error"}})
            if response is None:
                writer.transport.abort()  # no answer: the client sees the connection drop
                return
            keep_alive = request.headers.get("connection", "").lower() != "close"
            writer.write(_encode(response, keep_alive=keep_alive))
            await writer.drain()
            if not keep_alive:
                break
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def start_server(handler: Handler, *, host: str, port: int) -> asyncio.Server:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(handler, reader, writer)

    return await asyncio.start_server(on_connect, host, port, limit=MAX_HEAD_BYTES, reuse_address=True)
