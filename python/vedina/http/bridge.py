"""Serve a Robyn application under Granian's RSGI interface.

Robyn ships its own server and is neither ASGI nor RSGI. Its Python side
already does the per-route work (argument injection, the exception handler,
response formatting) inside the wrappers that ``Router.add_route`` stores in
each ``FunctionInfo``; what its Rust server adds is path matching and the
middleware chain. This bridge does those two, in the order Robyn's server
does (global before -> route before -> handler -> global response headers ->
global after -> route after), and turns the result into an RSGI response.

Path matching uses the app's :class:`~vedina.http.routes.RouteTable` (the
``matchit`` crate, as in Robyn's server), so both servers resolve paths alike;
the contract tests run one HTTP suite against both and compare the answers.

The hot path skips Robyn's per-call wrappers where they would do nothing: a
middleware is called directly (its return value is cast as Robyn casts it),
and a route whose handler takes just the request is called directly, its
exceptions going to the app's exception handler as Robyn's wrapper would send
them. Other routes (argument injection, OpenAPI pages) go through the wrapper.

Extras over Robyn's server:

- the request body is read with a size cap (413 before it is all in memory): ``MAX_BODY_BYTES``,
  or the route's own (:func:`vedina.http.routes.body_limit`, e.g. an upload chunk);
- responses carrying the internal ``x-vedina-sendfile`` header are sent from
  a file by Granian (``response_file_range``), so media bytes never pass
  through Python (see :mod:`vedina.http.sendfile`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from robyn import Headers, Request, Response, StreamingResponse
from robyn.events import Events
from robyn.robyn import MiddlewareType, QueryParams, Url
from robyn.router import _cast_before_request_return

from vedina._native import Router
from vedina.errors import MethodNotAllowed, NotFound, PayloadTooLarge
from vedina.http import sendfile
from vedina.http.context import RequestContext
from vedina.http.middleware import new_request_id
from vedina.http.responses import apply_standard_headers, error_response
from vedina.http.routes import UNMATCHED, RouteTable, method_name
from vedina.metrics import IN_FLIGHT_REQUESTS, MEDIA_BYTES, BufferedCounter

log = logging.getLogger(__name__)

class _Direct:
    """A middleware called without Robyn's wrapper (which only casts the return value)."""

    __slots__ = ("function", "is_async", "with_request")

    def __init__(self, function_info: Any) -> None:
        self.function = inspect.unwrap(function_info.handler)
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.with_request = function_info.number_of_params > 1  # after-middleware: (request, response)


async def _run_before(middleware: _Direct, request: Request):
    result = middleware.function(request)
    if middleware.is_async:
        result = await result
    if result is None or type(result) is Request:
        return result
    return _cast_before_request_return(result)


async def _call(function_info, *args):
    # FunctionInfo says whether the wrapper is a coroutine function: no
    # isawaitable() probing on the hot path.
    kwargs = function_info.kwargs
    result = function_info.handler(*args, **kwargs) if kwargs else function_info.handler(*args)
    return await result if function_info.is_async else result


def _as_response(result: Any) -> Response | StreamingResponse:
    """What Robyn's Rust executor does with a bare return value."""
    if isinstance(result, (Response, StreamingResponse)):
        return result
    if isinstance(result, (dict, list)):
        return Response(200, Headers({"content-type": "application/json"}), orjson.dumps(result))
    if isinstance(result, bytes):
        return Response(200, Headers({"content-type": "application/octet-stream"}), result)
    return Response(200, Headers({"content-type": "text/plain"}), str(result).encode())


def _cookie_header(name: str, cookie: Any) -> str:
    parts = [f"{name}={cookie.value}"]
    for attribute, label in (("path", "Path"), ("domain", "Domain"), ("expires", "Expires")):
        value = getattr(cookie, attribute)
        if value:
            parts.append(f"{label}={value}")
    if cookie.max_age is not None:
        parts.append(f"Max-Age={cookie.max_age}")
    if cookie.secure:
        parts.append("Secure")
    if cookie.http_only:
        parts.append("HttpOnly")
    if cookie.same_site:
        parts.append(f"SameSite={cookie.same_site}")
    return "; ".join(parts)


class RSGIBridge:
    """An RSGI application (``__rsgi__``) that runs a Robyn app."""

    def __init__(self, app: Any, *, routes: RouteTable | None = None, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        if not app.config.disable_openapi and app.openapi is not None:
            app._add_openapi_routes()  # what Robyn.start() does before serving
        self._routes = routes if routes is not None else RouteTable.of(app)

        self._global_before: list[_Direct] = []
        self._global_after: list[_Direct] = []
        for middleware in app.middleware_router.get_global_middlewares():
            before = middleware.middleware_type == MiddlewareType.BEFORE_REQUEST
            (self._global_before if before else self._global_after).append(_Direct(middleware.function))
        self._on_error = app.exception_handler

        self._route_before, self._route_after = Router(), Router()
        self._route_middleware_functions: list[Any] = []
        for index, middleware in enumerate(app.middleware_router.get_route_middlewares()):
            table = self._route_before if middleware.middleware_type == MiddlewareType.BEFORE_REQUEST else self._route_after
            table.insert(method_name(middleware.route_type), middleware.route, index)
            self._route_middleware_functions.append(middleware.function)

        self._route_middlewares = bool(self._route_middleware_functions)
        self._response_headers = app.response_headers
        self._global_headers = not app.response_headers.is_empty()
        self._excluded_header_paths = set(app.excluded_response_headers_paths or [])
        # Called once per answer with (method, context, status): metrics and the access log
        # (vedina.http.middleware.answered), here so that answers the middleware chain never
        # saw (401, 429 and 413 from a before-middleware or the body cap) are counted too.
        self._answered = getattr(getattr(app, "state", None), "answered", None)
        self._media_bytes = {200: BufferedCounter(MEDIA_BYTES.labels("200")),
                             206: BufferedCounter(MEDIA_BYTES.labels("206"))}

    # -- lifecycle (Granian calls these once per worker process) -------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        startup = self.app.event_handlers.get(Events.STARTUP)
        if startup is not None:
            loop.run_until_complete(_call(startup))

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        shutdown = self.app.event_handlers.get(Events.SHUTDOWN)
        if shutdown is not None:
            loop.run_until_complete(_call(shutdown))

    # -- requests -------------------------------------------------------------

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":  # websockets are disabled in the server config
            return
        context = RequestContext("", time.perf_counter(), raw_query=scope.query_string)
        in_flight = IN_FLIGHT_REQUESTS
        in_flight.count += 1
        try:
            try:
                response = await self._respond(scope, protocol, context)
            except Exception as exc:
                log.exception("unhandled error in request pipeline", extra={"path": scope.path})
                # Even this answer carries the standard headers (request id, nosniff, CSP, no-store).
                response = apply_standard_headers(error_response(exc), request_id=context.request_id, path=scope.path)
            if isinstance(response, StreamingResponse):
                await self._send_stream(protocol, response, head=scope.method == "HEAD")
            else:
                self._send(protocol, response, head=scope.method == "HEAD")
        finally:
            in_flight.count -= 1
        if self._answered is not None:
            self._answered(scope.method, context, response.status_code)

    async def _read_body(self, scope: Any, protocol: Any, limit: int) -> bytes:
        declared = scope.headers.get("content-length")
        if declared is None and "transfer-encoding" not in scope.headers and not scope.http_version.startswith("2"):
            return b""  # HTTP/1.x: no framing header, no body (RFC 9112 §6.3); HTTP/2 reads the stream
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes", details={"limit": limit})
        chunks, size = [], 0
        async for chunk in protocol:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds {limit} bytes", details={"limit": limit})
            chunks.append(chunk)
        return b"".join(chunks)

    def _build_request(self, scope: Any, body: bytes, context: RequestContext | None = None) -> Request:
        query = QueryParams()
        if scope.query_string:
            # RFC 3986: "+" in a query is a plus, as SigV4 signs it (so what is verified is what
            # handlers read: "a+b" and "a%2Bb" mean the same); spaces are sent as %20.
            for key, value in parse_qsl(scope.query_string.replace("+", "%2B"), keep_blank_values=True):
                query.set(key, value)
        items = scope.headers.items()
        unique = dict(items)
        if len(unique) == len(items):
            headers = Headers(unique)
        else:  # a repeated header name: keep every value
            headers = Headers({})
            for name, value in items:
                headers.append(name, value)
        form: dict[str, str] = {}
        if body and (headers.get("content-type") or "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        host = scope.authority or headers.get("host") or ""
        client = scope.client.rsplit(":", 1)[0] if scope.client else None
        request = Request(query, headers, {}, body, scope.method, Url(scope.scheme, host, scope.path), form, {}, None, client)
        request.session = context if context is not None else RequestContext("", 0.0, raw_query=scope.query_string)
        return request

    async def _respond(self, scope: Any, protocol: Any, context: RequestContext) -> Response | StreamingResponse:
        method, path = scope.method, scope.path
        # Matched before the body is read: the route may allow a larger body.
        found = self._routes.match(method, path)
        context.route_label = UNMATCHED if found is None else found[0].label
        limit = (found[0].max_body_bytes if found is not None else None) or self.max_body_bytes
        if found is not None and found[0].admit is not None:  # a large body: only from a known caller
            refusal = await found[0].admit(self._build_request(scope, b"", context))
            if refusal is not None:
                return self._refused(refusal, context, path)
        try:
            body = await self._read_body(scope, protocol, limit)
        except PayloadTooLarge as exc:
            return self._refused(exc, context, path)
        request = self._build_request(scope, body, context)

        for middleware in self._global_before:
            result = await _run_before(middleware, request)
            if result is not None:
                if type(result) is not Request:
                    return result  # a Response: the chain stops here
                request = result

        matched = self._route_before.lookup(method, path) if self._route_middlewares else None
        if matched is not None:
            request.path_params = matched[1]
            result = await _call(self._route_middleware_functions[matched[0]], request)
            if isinstance(result, (Response, StreamingResponse)):
                return result
            request = result if result is not None else request

        if found is None:  # a method no route (not even the catch-all) has: TRACE, PROPFIND, ...
            response = error_response(self._unrouted(method, path))
        else:
            route, request.path_params = found
            if route.handler is None:
                response = _as_response(await _call(route.function, request))
            else:
                try:
                    result = route.handler(request)
                    response = _as_response(await result if route.is_async else result)
                except Exception as exc:
                    if self._on_error is None:
                        raise
                    response = _as_response(self._on_error(exc))

        if self._global_headers and path not in self._excluded_header_paths:
            for name, value in self._response_headers.multi_items():
                response.headers.append(name, value)

        for middleware in self._global_after:
            result = middleware.function(request, response) if middleware.with_request else middleware.function(response)
            if middleware.is_async:
                result = await result
            if isinstance(result, (Response, StreamingResponse)):
                response = result
        matched = self._route_after.lookup(method, path) if self._route_middlewares else None
        if matched is not None:
            response = await self._call_after(self._route_middleware_functions[matched[0]], request, response)
        return response

    @staticmethod
    def _refused(exc: Exception, context: RequestContext, path: str) -> Response:
        """An answer before the middleware ran (no request id yet: one is made here)."""
        context.request_id = new_request_id()
        return apply_standard_headers(error_response(exc), request_id=context.request_id, path=path)

    def _unrouted(self, method: str, path: str) -> Exception:
        allowed = self._routes.allowed_methods(path)
        if allowed:
            return MethodNotAllowed(f"{method} is not allowed here", details={"allowed": allowed},
                                    headers={"allow": ", ".join(allowed)})
        return NotFound(f"No route for {method} {path}")

    @staticmethod
    async def _call_after(function_info, request: Request, response):
        args = (response,) if function_info.number_of_params <= 1 else (request, response)
        result = await _call(function_info, *args)
        return result if isinstance(result, (Response, StreamingResponse)) else response

    # -- responses ------------------------------------------------------------

    @staticmethod
    def _headers_of(response: Response) -> list[tuple[str, str]]:
        headers = list(response.headers.multi_items())
        if response.cookies is not None:
            for name in response.cookies:
                headers.append(("set-cookie", _cookie_header(name, response.cookies.get(name))))
        return headers

    async def _send_stream(self, protocol: Any, response: StreamingResponse, *, head: bool) -> None:
        headers = list(response.headers.multi_items()) if response.headers is not None else []
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("content-type", response.media_type))
        if head:
            protocol.response_empty(response.status_code, headers)
            return
        transport = protocol.response_stream(response.status_code, headers)
        # Robyn wraps async generators in a thread-driven sync iterator; under
        # Granian we are already on a loop, so iterate the generator itself.
        content = getattr(response.content, "_async_gen", response.content)
        if hasattr(content, "__aiter__"):
            async for chunk in content:
                await transport.send_bytes(chunk.encode() if isinstance(chunk, str) else chunk)
        else:
            for chunk in content:
                await transport.send_bytes(chunk.encode() if isinstance(chunk, str) else chunk)

    def _send(self, protocol: Any, response: Response, *, head: bool) -> None:
        headers = self._headers_of(response)
        file_range = sendfile.take(headers) if response.headers.contains(sendfile.HEADER) else None
        status = response.status_code
        if file_range is not None and not head:
            counter = self._media_bytes.get(status)
            if counter is not None:
                counter.add(file_range.end - file_range.start)
            protocol.response_file_range(status, headers, file_range.path, file_range.start, file_range.end)
            return
        body = response.description
        if isinstance(body, str):
            body = body.encode()
        if head:
            if file_range is None:
                headers.append(("content-length", str(len(body))))
            protocol.response_empty(status, headers)
            return
        protocol.response_bytes(status, headers, body)
