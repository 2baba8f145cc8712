"""The application's route table, built once and shared by the bridge, the 404/405
answer and the metrics.

>>> routes = RouteTable.of(app)
>>> routes.match("GET", "/api/movies/42")          # (route, {"id": "42"})
>>> routes.template("GET", "/api/movies/42")
'/api/movies/:id'
>>> routes.template("GET", "/no/such/path")
'unmatched'

A route may take bodies larger than ``MAX_BODY_BYTES`` (an upload chunk): its handler
is marked with :func:`body_limit`, and both servers read its body up to that limit, once
its ``admit`` check (credentials, from the headers alone) has passed: nobody gets to make a
worker hold a large body before they are known.
"""

from __future__ import annotations

import inspect
from typing import Any

from vedina._native import Router

CATCH_ALL = "/*path"  # the route that answers 404/405 (vedina.app)
UNMATCHED = "unmatched"
_METHOD_PREFIX = len("HttpMethod.")


_BODY_LIMIT = "vedina_max_body_bytes"
_ADMIT = "vedina_admit_body"


def method_name(route_type: Any) -> str:
    """``HttpMethod.GET`` -> ``GET``."""
    return str(route_type)[_METHOD_PREFIX:]


def body_limit(max_bytes: int, *, admit=None):
    """Mark a handler as taking bodies of up to ``max_bytes`` (instead of ``MAX_BODY_BYTES``).

    ``admit(request)`` (async; the request without its body) returns an error to answer
    instead of reading the body, or None.

    Apply it outermost (above ``requires``): the mark is read from the function Robyn holds.

    >>> @router.patch("/:id")
    ... @body_limit(64 * 1024**2)
    ... @requires("catalog:write")
    ... async def append(request): ...
    """

    def mark(handler):
        setattr(handler, _BODY_LIMIT, max_bytes)
        setattr(handler, _ADMIT, admit)
        return handler

    return mark


class Route:
    __slots__ = ("method", "template", "label", "function", "handler", "is_async", "max_body_bytes", "admit")

    def __init__(self, method: str, template: str, function: Any) -> None:
        self.method = method
        self.template = template
        self.label = UNMATCHED if template == CATCH_ALL else template  # for metrics
        self.function = function  # Robyn's FunctionInfo: its wrapper injects arguments, formats, handles errors
        # The handler itself when it is ``handler(request)``: a caller that formats and
        # handles errors may skip Robyn's wrapper (the bridge does).
        self.handler = _request_handler(function.handler)
        self.is_async = inspect.iscoroutinefunction(self.handler)
        # None: the server's MAX_BODY_BYTES applies.
        self.max_body_bytes: int | None = getattr(inspect.unwrap(function.handler), _BODY_LIMIT, None)
        self.admit = getattr(inspect.unwrap(function.handler), _ADMIT, None)


def _request_handler(wrapper: Any) -> Any | None:
    handler = inspect.unwrap(wrapper)
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(parameters) == 1 and parameters[0].kind in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD):
        return handler
    return None


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self._router = Router()
        self._routes = routes
        for index, route in enumerate(routes):
            self._router.insert(route.method, route.template, index)

    @classmethod
    def of(cls, app) -> RouteTable:
        """Every route of a Robyn app (call once all routes are added)."""
        return cls([
            Route(method_name(r.route_type), r.route, r.function) for r in app.router.get_routes()
        ])

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        found = self._router.lookup(method, path)
        return None if found is None else (self._routes[found[0]], found[1])

    def template(self, method: str, path: str) -> str:
        """A bounded metrics label: the matched route's template, or ``unmatched``."""
        found = self._router.lookup(method, path)
        return UNMATCHED if found is None else self._routes[found[0]].label

    def allowed_methods(self, path: str) -> list[str]:
        """Methods with a real route (not the catch-all) for ``path``: a 405's ``Allow``."""
        return [m for m in self._router.allowed_methods(path) if self.template(m, path) != UNMATCHED]
