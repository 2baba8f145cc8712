"""Building the Robyn application, and the RSGI app Granian serves.

>>> from vedina.config import load_settings
>>> app = create_app(load_settings({}))    # a robyn.Robyn
"""

from __future__ import annotations

import inspect
import logging

from robyn import Robyn, SubRouter
from robyn.argument_parser import Config

from vedina.api import (
    api_keys,
    auth,
    blog,
    comments,
    docs,
    genres,
    health,
    media,
    movies,
    payments,
    people,
    plans,
    playback,
    profiles,
    sitemap,
    subscriptions,
    uploads,
    users,
    viewer,
    viewing,
    webhooks,
)
from vedina.config import Settings, load_settings
from vedina.error_tracking import init_error_tracking
from vedina.errors import AppError, MethodNotAllowed, NotFound, translate
from vedina.http import middleware, sendfile
from vedina.http.auth import authenticate, refuse_rejected
from vedina.http.bridge import RSGIBridge
from vedina.http.responses import error_response
from vedina.http.routes import CATCH_ALL, RouteTable
from vedina.logs import configure_logging
from vedina.security.ratelimit import RateLimitMiddleware
from vedina.state import AppState

log = logging.getLogger(__name__)

# One SubRouter per resource: (prefix, OpenAPI tags, module with register(router, state)).
RESOURCE_ROUTERS = [
    ("/api/movies", ["movies"], movies),
    ("/api/movies", ["viewer"], viewing),  # a second router on the prefix: progress, watchlist, rating
    ("/api/profiles", ["profiles"], profiles),
    ("/api/users", ["viewer"], viewer),  # /api/users/me/continue-watching, /api/users/me/watchlist
    ("/api/genres", ["genres"], genres),
    ("/api/people", ["people"], people),
    ("/api/media", ["media"], media),
    ("/api/uploads", ["uploads"], uploads),
    ("/api", ["playback"], playback),  # /api/movies/:id/playback, /api/playback/sessions
    ("/api", ["comments"], comments),  # /api/movies/:id/comments, /api/comments/...
    ("/api/webhooks", ["webhooks"], webhooks),
    ("/api/plans", ["plans"], plans),
    ("/api/subscriptions", ["subscriptions"], subscriptions),
    ("/api/payments", ["payments"], payments),
    ("/api/blog", ["blog"], blog),
    ("/api", ["sitemap"], sitemap),  # /api/sitemap.xml, /api/sitemaps/:page
    ("/api/auth", ["auth"], auth),
    ("/api/users", ["users"], users),
    ("/api/api-keys", ["api keys"], api_keys),
]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def on_exception(exc: Exception):
    """Robyn's exception handler: the one place an exception becomes a response."""
    translated = translate(exc)
    if translated is not exc:
        log.warning("backing service unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
    elif not isinstance(exc, AppError):
        log.error("unhandled exception", exc_info=exc)
    return error_response(translated)


def _robyn_config(settings: Settings) -> Config:
    config = Config()  # parses sys.argv: callers clear it first (see vedina.cli)
    config.log_level = settings.log_level.upper()
    config.processes = settings.worker_count
    config.workers = 1
    return config


def _sub_router(prefix: str, tags: list[str]) -> SubRouter:
    router = SubRouter(prefix=prefix, tags=tags)
    # Robyn binds the exception handler when a route is added, so it must be
    # set before the routes.
    router.exception(on_exception)
    return router


def create_app(settings: Settings, *, server: str = "granian") -> Robyn:
    app = Robyn(__file__, config=_robyn_config(settings))
    state = AppState(settings)
    app.exception(on_exception)

    app.before_request()(middleware.begin)  # the request context: id, start time
    app.before_request()(authenticate(state))  # its principal (rate limits key on it)
    limiting = RateLimitMiddleware(settings) if settings.rate_limit_enabled else None
    if limiting is not None:
        app.before_request()(limiting.before)
    app.before_request()(refuse_rejected)  # bad credentials: 401, after the limiter counted them
    if server == "robyn":  # the Granian bridge caps the body while reading it
        app.before_request()(middleware.body_limit(settings.max_body_bytes))

    health.register(app, state)
    for prefix, tags, module in RESOURCE_ROUTERS:
        router = _sub_router(prefix, tags)
        module.register(router, state)
        app.include_router(router)
    # Our own /docs and /openapi.json (Swagger UI served from here, not a CDN), added now so the
    # route table has them; disable_openapi stops Robyn.start() and the bridge adding Robyn's.
    if not app.config.disable_openapi and app.openapi is not None:
        docs.register(app)
        app.config.disable_openapi = True
    _add_head_routes(app)
    _register_not_found(app, state)
    state.routes = RouteTable.of(app)

    app.after_request()(middleware.standard_headers)
    if server == "robyn":  # the Granian bridge calls state.answered itself, for every answer
        app.after_request()(middleware.record_metrics(state.routes, state.answered))
    if limiting is not None:
        app.after_request()(limiting.after)
    if server == "robyn":
        app.after_request()(sendfile.inline)

    app.startup_handler(state.startup)
    app.shutdown_handler(state.shutdown)
    app.state = state
    return app


def _add_head_routes(app: Robyn) -> None:
    """HEAD for every GET route (RFC 9110 §9.3.2): Robyn's server does not map
    HEAD to GET by itself; both servers drop the body of a HEAD answer."""
    for route in list(app.router.get_routes()):
        if str(route.route_type) == "HttpMethod.GET":
            original = inspect.unwrap(route.function.handler)
            app.add_route("HEAD", route.route, original, include_in_schema=False)


def _register_not_found(app: Robyn, state: AppState) -> None:
    """A catch-all answering 405 (with ``Allow``) for a known path with another
    method, else 404 — in the common error shape, on both servers."""

    def not_found(request):
        allowed = state.routes.allowed_methods(request.url.path)
        if allowed:
            return error_response(
                MethodNotAllowed(f"{request.method} is not allowed here", details={"allowed": allowed},
                                 headers={"allow": ", ".join(allowed)})
            )
        return error_response(NotFound(f"No route for {request.method} {request.url.path}"))

    for method in _METHODS:
        app.add_route(method, CATCH_ALL, not_found, include_in_schema=False)


def create_rsgi_app() -> RSGIBridge:
    """Granian's target (``factory=True``): called once in each worker process."""
    settings = load_settings()
    configure_logging(settings.log_level)
    init_error_tracking(settings)
    app = create_app(settings)
    return RSGIBridge(app, routes=app.state.routes, max_body_bytes=settings.max_body_bytes)
