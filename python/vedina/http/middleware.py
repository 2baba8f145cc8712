"""Global Robyn middleware: request ids, body limits, standard response headers.

Each function does one thing and is registered once by ``vedina.app``; the
same middleware runs on Robyn's own server and under the Granian bridge.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from robyn import Request, Response

from vedina.errors import PayloadTooLarge
from vedina.http.responses import apply_standard_headers, error_response
from vedina.logs import request_id_var
from vedina.metrics import LATENCY, REQUESTS, route_group

log = logging.getLogger(__name__)

REQUEST_ID = "x-request-id"
# Internal: when the request entered the app (set by start_timer, overwritten if a client sends it).
_STARTED = "x-vedina-started"
# A client-chosen id is kept only if it is short and plain, so it cannot
# inject anything into logs or headers.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _reseed_request_ids() -> None:
    # A forked worker must not repeat its parent's (or a sibling's) ids.
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed_request_ids)


def request_id_of(request: Request) -> str:
    return request.headers.get(REQUEST_ID) or ""


def new_request_id() -> str:
    """32 hex digits, unique across processes: a random per-process prefix and a
    counter (no system call per request; request ids need not be unpredictable)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def assign_request_id(request: Request) -> Request:
    incoming = request.headers.get(REQUEST_ID)
    if not incoming or not _SAFE_REQUEST_ID.match(incoming):
        incoming = new_request_id()
        request.headers.set(REQUEST_ID, incoming)
    request_id_var.set(incoming)
    return request


def body_limit(max_body_bytes: int):
    """Refuse bodies over the limit with 413 (the bridge also stops reading early)."""

    def check(request: Request) -> Request | Response:
        body = request.body
        if body and len(body) > max_body_bytes:
            response = error_response(
                PayloadTooLarge(f"Request body exceeds {max_body_bytes} bytes", details={"limit": max_body_bytes})
            )
            return apply_standard_headers(response, request_id=request_id_of(request), path=request.url.path)
        return request

    return check


def standard_headers(request: Request, response: Response) -> Response:
    return apply_standard_headers(response, request_id=request_id_of(request), path=request.url.path)


def start_timer(request: Request) -> Request:
    request.headers.set(_STARTED, repr(time.perf_counter()))
    return request


def record_metrics(request: Request, response: Response) -> Response:
    started = request.headers.get(_STARTED)
    route = route_group(request.url.path)
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    if started:
        LATENCY.labels(request.method, route).observe(time.perf_counter() - float(started))
    return response
