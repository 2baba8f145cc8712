"""Global Robyn middleware: the request context, body limits, standard response headers, metrics.

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
from vedina.http.context import RequestContext, context_of
from vedina.http.responses import apply_standard_headers, error_response
from vedina.http.routes import UNMATCHED, RouteTable
from vedina.logs import AccessLog, request_id_var
from vedina.metrics import RequestRecorder

log = logging.getLogger(__name__)

REQUEST_ID = "x-request-id"
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
    return context_of(request).request_id


def new_request_id() -> str:
    """32 hex digits, unique across processes: a random per-process prefix and a
    counter (no system call per request; request ids need not be unpredictable)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def begin(request: Request) -> Request:
    """The first middleware: the request's context, with its id and start time."""
    started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID)
    if not incoming or not _SAFE_REQUEST_ID.match(incoming):
        incoming = new_request_id()
    context = request.session
    if isinstance(context, RequestContext):  # begun by the server bridge, which timed it from its start
        context.request_id = incoming
        context.started = context.started or started
    else:
        request.session = RequestContext(incoming, started)
    request_id_var.set(incoming)
    return request


def body_limit(max_body_bytes: int):
    """Refuse bodies over the limit with 413. Only Robyn's own server needs it:
    the Granian bridge stops reading at the limit."""

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


# Any other method a client sends is counted as OTHER: labels stay a bounded set.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def answered(recorder: RequestRecorder, access_log: AccessLog | None):
    """``answer(method, context, status)``, called once per answer: counts and times it,
    labelled by route template (a bounded set), and adds its access-log line. The Granian
    bridge calls it after sending (every answer, even one a before-middleware gave)."""
    record = recorder.record
    add_line = access_log.add if access_log is not None else None

    def answer(method: str, context: RequestContext, status: int) -> None:
        seconds = time.perf_counter() - context.started if context.started else 0.0
        label = context.route_label or UNMATCHED
        record(method if method in METRIC_METHODS else "OTHER", label, status, seconds)
        if add_line is not None:
            add_line(context.request_id, method, label, status, seconds, context.principal)

    return answer


def record_metrics(routes: RouteTable, answer):
    """Robyn's own server: ``answer`` as an after-middleware (it does not tell which route matched,
    and answers a before-middleware gives never reach the after-middleware)."""

    def record(request: Request, response: Response) -> Response:
        context = context_of(request)
        context.route_label = context.route_label or routes.template(request.method, request.url.path)
        answer(request.method, context, response.status_code)
        return response

    return record
