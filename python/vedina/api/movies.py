"""/api/movies: the catalog (answers from memory, with ETag and 304)."""

from __future__ import annotations

from robyn import Request, SubRouter

from vedina.api.params import path_int, query_int
from vedina.http.responses import document_response
from vedina.state import AppState

MAX_PAGE = 100


def register(router: SubRouter, state: AppState) -> None:
    @router.get("/", openapi_name="List movies")
    async def list_movies(request: Request):
        offset = query_int(request, "offset", default=0, minimum=0, maximum=10**9)
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return document_response(request, await state.services.catalog.list_movies(offset=offset, limit=limit))

    @router.get("/:id", openapi_name="Get a movie with its media assets")
    async def get_movie(request: Request):
        movie = await state.services.catalog.get_movie(movie_id=path_int(request, "id"))
        return document_response(request, movie)
