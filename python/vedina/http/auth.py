"""Authentication middleware and the ``requires`` route guard.

:func:`authenticate` is a global before-middleware. It reads, in order, an
``Authorization: Bearer`` access token, an ``Authorization: AWS4-HMAC-SHA256``
SigV4 signature (API keys), or the ``vedina_access`` cookie, and sets the
request context's ``principal`` (:mod:`vedina.http.context`), so later
middleware (rate limiting) and handlers can key on it. No credentials: the
request goes on anonymous. Bad bearer or SigV4 credentials: 401 at once (the client said
who it is, and it is not) — but that answer is given by
:func:`refuse_rejected`, registered *after* the rate limiter, so guessing
tokens or signatures is rate limited like any other request (the rejected
request counts against the client IP). A bad or expired *cookie* counts as
none, so a browser with a stale cookie can still reach login and refresh.

:func:`requires` wraps a handler: 401 without a principal, 403 when a cookie
session sends an unsafe method without the right CSRF token, 403 without the
permission. The permission is written into the handler's docstring, so it
appears in the OpenAPI document, and recorded in :data:`GUARDED_ROUTES`.

>>> @router.get("/me")
... @requires("account:self")
... async def me(request): ...
"""

from __future__ import annotations

import inspect
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote, urlencode

from robyn import Request, Response

from vedina.errors import AppError, Forbidden, Unauthorized, translate
from vedina.http.context import context_of
from vedina.http.operation import REQUIRES_MARK
from vedina.http.responses import apply_standard_headers, error_response
from vedina.security.csrf import HEADER as CSRF_HEADER
from vedina.security.csrf import UNSAFE_METHODS
from vedina.security.ratelimit.principal import request_client_address
from vedina.services.principals import Principal

ACCESS_COOKIE = "vedina_access"
REFRESH_COOKIE = "vedina_refresh"
REFRESH_COOKIE_PATH = "/api/auth"
SIGV4_SCHEME = "AWS4-HMAC-SHA256"
_BEARER_REALM = {"www-authenticate": 'Bearer realm="vedina"'}

# handler name -> permission (None: any authenticated principal); for tests and docs.
GUARDED_ROUTES: dict[str, str | None] = {}


def read_cookie(request: Request, name: str) -> str | None:
    raw = request.headers.get("cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def client_ip(request: Request, proxies) -> str:
    """The client's address (behind trusted proxies, the one they report), as sessions record it."""
    return request_client_address(request, proxies)[:64]


def user_agent(request: Request) -> str:
    return (request.headers.get("user-agent") or "")[:200]


def _raw_query(request: Request) -> str:
    """The query as received (the Granian bridge keeps it), else the parsed parameters
    re-encoded (Robyn's own server), which canonicalise alike in the AWS form."""
    raw = context_of(request).raw_query
    if raw is not None:
        return raw
    return urlencode(request.query_params.multi_items(), quote_via=quote)


def _raw_path(request: Request) -> str:
    # The server hands over the percent-decoded path; encoded again (RFC 3986) it is what a
    # client sends for it, unless the client escaped characters that need none (%31 for 1).
    return quote(request.url.path, safe="/")


def authenticate(state):
    """The global before-middleware; ``state`` is the AppState (services exist once a worker started)."""

    async def middleware(request: Request) -> Request | Response:
        context = context_of(request)
        try:
            context.principal = await _principal(state.services.authenticator, request, request.headers.get("authorization"))
        except Exception as exc:
            refusal = translate(exc)  # an outage of the store behind the check is a 503, not a 500
            if not isinstance(refusal, AppError):
                raise
            if isinstance(refusal, Unauthorized) and "www-authenticate" not in refusal.headers:
                refusal.headers.update(_BEARER_REALM)
            context.refusal = refusal  # answered by refuse_rejected once the rate limiter has counted it
        return request

    return middleware


def admit_with(authenticator, *permissions: str):
    """A :func:`vedina.http.routes.body_limit` ``admit`` check: the caller's bearer token or
    cookie grants one of ``permissions``. A SigV4 request is let through to be verified with
    its body (the signature covers it; API keys are issued by admins)."""

    async def admit(request: Request) -> AppError | None:
        authorization = request.headers.get("authorization")
        if authorization and authorization.strip().startswith(SIGV4_SCHEME):
            return None
        try:
            principal = await _principal(authenticator(), request, authorization)
        except AppError as exc:
            return exc
        if principal is None:
            return Unauthorized("Authentication required", headers=dict(_BEARER_REALM))
        if not principal.permissions & set(permissions):
            return Forbidden(f"Requires permission {' or '.join(permissions)}", details={"permission": permissions[0]})
        return None

    return admit


def refuse_rejected(request: Request) -> Request | Response:
    """Answer a request whose credentials :func:`authenticate` rejected."""
    context = context_of(request)
    if context.refusal is None:
        return request
    response = error_response(context.refusal)
    return apply_standard_headers(response, request_id=context.request_id, path=request.url.path)


async def _principal(authenticator, request: Request, authorization: str | None) -> Principal | None:
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return await authenticator.access_token(credentials.strip(), via="bearer")
        if scheme == SIGV4_SCHEME:
            body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
            return await authenticator.signed_request(
                method=request.method, path=_raw_path(request), query=_raw_query(request),
                headers=list(request.headers.multi_items()),
                body=body, authorization=authorization,
            )
        raise Unauthorized("Unsupported Authorization scheme: use Bearer or AWS4-HMAC-SHA256")
    token = read_cookie(request, ACCESS_COOKIE)
    if token:
        try:
            return await authenticator.access_token(token, via="cookie")
        except AppError:
            return None
    return None


def principal_of(request: Request) -> Principal:
    principal = context_of(request).principal
    if principal is None:
        raise Unauthorized(headers=dict(_BEARER_REALM))
    return principal


def account_id_of(request: Request, *, what: str) -> int:
    """The user id of a request made for a user account; API keys have no ``what`` (403)."""
    principal = principal_of(request)
    if principal.kind != "user":
        raise Forbidden(f"API keys have no {what}")
    return int(principal.subject)


def check_csrf(csrf, request: Request, *, session_id: str) -> None:
    if not csrf.matches(session_id, request.headers.get(CSRF_HEADER)):
        raise Forbidden("Missing or wrong CSRF token", details={"header": "X-CSRF-Token"})


def requires(*permissions: str | None, csrf_tokens=None):
    """Guard a handler ``async def h(request)``; ``csrf_tokens`` is looked up lazily when omitted.
    Several permissions: any one of them is enough (``requires("catalog:write", "media:ingest")``)."""
    needed = tuple(p for p in permissions if p is not None)
    permission = " or ".join(needed) or None

    def decorate(handler):
        is_async = inspect.iscoroutinefunction(handler)

        async def guarded(request: Request):
            principal = principal_of(request)
            if principal.via == "cookie" and request.method in UNSAFE_METHODS:
                tokens = csrf_tokens() if callable(csrf_tokens) else csrf_tokens
                check_csrf(tokens, request, session_id=principal.session_id)
            if needed and principal.permissions.isdisjoint(needed):
                raise Forbidden(f"Requires permission {permission}", details={"permission": permission})
            result = handler(request)
            return await result if is_async else result

        # No __wrapped__: app._add_head_routes unwraps handlers, and must not
        # reach past the guard.
        guarded.__name__ = handler.__name__
        guarded.__qualname__ = handler.__qualname__
        need = f"Requires permission `{permission}`." if permission else "Requires authentication."
        guarded.__doc__ = f"{need}\n\n{inspect.getdoc(handler) or ''}".strip()
        GUARDED_ROUTES[f"{handler.__module__}.{handler.__name__}"] = permission
        setattr(guarded, REQUIRES_MARK, needed)  # read by the OpenAPI document (vedina.http.operation)
        return guarded

    return decorate
