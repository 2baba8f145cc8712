"""One typed context per request, built once by the first middleware and read by the rest.

Robyn's ``Request`` carries it in its ``session`` slot, which both servers
(Robyn's own and the Granian bridge) pass unchanged from middleware to
handler to after-middleware; nothing travels in request headers or is
stringified into a Robyn ``Identity``.

>>> context = context_of(request)
>>> context.principal.subject, context.request_id
('42', '5f0c...')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vedina.errors import AppError
    from vedina.services.principals import Principal


class RequestContext:
    __slots__ = ("request_id", "started", "principal", "refusal", "rate_headers", "raw_query", "route_label")

    def __init__(self, request_id: str, started: float, *, raw_query: str | None = None) -> None:
        self.request_id = request_id
        self.started = started  # time.perf_counter() when the request entered the app
        # The query string exactly as received (the Granian bridge knows it; Robyn's server does not).
        self.raw_query = raw_query
        self.route_label: str | None = None  # the matched route's metrics label, when the server knows it
        self.principal: Principal | None = None  # set by authentication
        # Credentials the client sent and we refused: answered after the rate
        # limiter has counted the request (guessing is throttled).
        self.refusal: AppError | None = None
        self.rate_headers: dict[str, str] | None = None  # RateLimit-* of an allowed request


def context_of(request) -> RequestContext:
    """The request's context (a new, empty one for a request that never entered the middleware)."""
    context = request.session
    return context if isinstance(context, RequestContext) else RequestContext("", 0.0)
