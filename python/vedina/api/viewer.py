"""Viewer requests act as a profile: ``X-Profile-Id: <id>`` picks one of the caller's, none means the main one.

Also the profile-scoped lists under /api/users/me (continue watching, watchlist).

>>> profile = await profile_of(request, state)      # NotFound for another account's profile id
"""

from __future__ import annotations

from robyn import Request, SubRouter

from vedina.api.audience import profile_id_of  # the header's parser, shared with catalog reads
from vedina.api.params import query_int
from vedina.errors import Forbidden
from vedina.http.auth import principal_of, requires
from vedina.http.operation import Cursor, doc, limit
from vedina.http.responses import json_response
from vedina.services.profiles import Profile
from vedina.services.viewing import ContinueWatching, WatchlistPage
from vedina.state import AppState

PROFILE_HEADER = "X-Profile-Id"
MAX_PAGE = 100


async def profile_of(request: Request, state: AppState) -> Profile:
    """The profile this request acts as (API keys have none: 403)."""
    principal = principal_of(request)
    if principal.kind != "user":
        raise Forbidden("API keys have no viewer profiles", details={"header": PROFILE_HEADER})
    return await state.services.profiles.current(user_id=int(principal.subject), profile_id=profile_id_of(request))


def register(router: SubRouter, state: AppState) -> None:
    """Under /api/users (the identity module's prefix; these routes are the current profile's)."""

    def csrf():
        return state.services.csrf

    @router.get("/me/continue-watching", openapi_name="Continue watching (current profile)")
    @doc(query={"limit": limit(50)}, headers=("X-Profile-Id",), answers={200: ContinueWatching})
    @requires("account:self", csrf_tokens=csrf)
    async def continue_watching(request: Request):
        """Started and unwatched movies the profile may see, most recently played first (``limit`` 1..50)."""
        limit = query_int(request, "limit", default=20, minimum=1, maximum=50)
        profile = await profile_of(request, state)
        return json_response(await state.services.viewing.continue_watching(profile=profile, limit=limit))

    @router.get("/me/watchlist", openapi_name="My watchlist (current profile)")
    @doc(query={"limit": limit(MAX_PAGE), "cursor": Cursor}, headers=("X-Profile-Id",), answers={200: WatchlistPage})
    @requires("account:self", csrf_tokens=csrf)
    async def my_watchlist(request: Request):
        """Newest first; pass ``next_cursor`` as ``cursor`` for the next page (``limit`` 1..100)."""
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        cursor = request.query_params.get("cursor", None)
        profile = await profile_of(request, state)
        return json_response(await state.services.viewing.watchlist(profile=profile, limit=limit, cursor=cursor))
