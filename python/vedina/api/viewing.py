"""Movie-scoped viewer routes under /api/movies (a second router on the catalog's prefix):
progress, watched, watchlist and rating of the current profile (``X-Profile-Id``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body, no_content
from vedina.api.params import path_int
from vedina.api.viewer import profile_of
from vedina.http.auth import requires
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.viewing import Progress, RatingSummary
from vedina.state import AppState

MAX_SECONDS = 864_000  # ten days: longer than any movie


class ProgressReport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    position_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_SECONDS)]
    duration_seconds: Annotated[int, msgspec.Meta(gt=0, le=MAX_SECONDS)]


class Vote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    score: Annotated[int, msgspec.Meta(ge=1, le=10)]


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def viewing():
        return state.services.viewing

    @router.get("/:id/progress", openapi_name="My progress in a movie")
    @doc(headers=("X-Profile-Id",), answers={200: Progress})
    @requires("account:self", csrf_tokens=csrf)
    async def get_progress(request: Request):
        movie_id = path_int(request, "id")
        return json_response(await viewing().get_progress(profile=await profile_of(request, state), movie_id=movie_id))

    @router.put("/:id/progress", openapi_name="Report my position in a movie")
    @doc(body=ProgressReport, headers=("X-Profile-Id",), answers={200: Progress})
    @requires("account:self", csrf_tokens=csrf)
    async def put_progress(request: Request):
        """Coalesced: the database is written at most once per PROGRESS_FLUSH_SECONDS per profile and movie
        (at once when the movie becomes watched, at 95%); reads always see the latest position."""
        movie_id, body = path_int(request, "id"), decode_body(request, ProgressReport)
        progress = await viewing().save_progress(profile=await profile_of(request, state), movie_id=movie_id,
                                                 position=body.position_seconds, duration=body.duration_seconds)
        return json_response(progress)

    async def set_watched(request: Request, watched: bool):
        progress = await viewing().mark_watched(profile=await profile_of(request, state),
                                                movie_id=path_int(request, "id"), watched=watched)
        return json_response(progress)

    @router.post("/:id/watched", openapi_name="Mark a movie watched")
    @doc(headers=("X-Profile-Id",), answers={200: Progress})
    @requires("account:self", csrf_tokens=csrf)
    async def mark_watched(request: Request):
        return await set_watched(request, True)

    @router.delete("/:id/watched", openapi_name="Mark a movie not watched (back to the start)")
    @doc(headers=("X-Profile-Id",), answers={200: Progress})
    @requires("account:self", csrf_tokens=csrf)
    async def unmark_watched(request: Request):
        return await set_watched(request, False)

    @router.put("/:id/watchlist", openapi_name="Add a movie to my watchlist")
    @doc(headers=("X-Profile-Id",), answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def add_to_watchlist(request: Request):
        """Idempotent: 204 whether or not it was there."""
        movie_id = path_int(request, "id")
        await viewing().add_to_watchlist(profile=await profile_of(request, state), movie_id=movie_id)
        return no_content()

    @router.delete("/:id/watchlist", openapi_name="Remove a movie from my watchlist")
    @doc(headers=("X-Profile-Id",), answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def remove_from_watchlist(request: Request):
        movie_id = path_int(request, "id")
        await viewing().remove_from_watchlist(profile=await profile_of(request, state), movie_id=movie_id)
        return no_content()

    @router.get("/:id/rating", openapi_name="A movie's rating and my vote")
    @doc(headers=("X-Profile-Id",), answers={200: RatingSummary})
    @requires("account:self", csrf_tokens=csrf)
    async def get_rating(request: Request):
        movie_id = path_int(request, "id")
        return json_response(await viewing().rating(profile=await profile_of(request, state), movie_id=movie_id))

    @router.put("/:id/rating", openapi_name="Rate a movie (1..10, one vote per profile)")
    @doc(body=Vote, headers=("X-Profile-Id",), answers={200: RatingSummary})
    @requires("account:self", csrf_tokens=csrf)
    async def put_rating(request: Request):
        movie_id, body = path_int(request, "id"), decode_body(request, Vote)
        summary = await viewing().rate(profile=await profile_of(request, state), movie_id=movie_id, score=body.score)
        return json_response(summary)

    @router.delete("/:id/rating", openapi_name="Withdraw my vote")
    @doc(headers=("X-Profile-Id",), answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def delete_rating(request: Request):
        movie_id = path_int(request, "id")
        await viewing().rate(profile=await profile_of(request, state), movie_id=movie_id, score=None)
        return no_content()
