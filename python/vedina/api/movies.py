"""/api/movies: the catalog (answers from memory, with ETag and 304) and its editing.

Reading is public; what an answer holds depends on the audience
(:mod:`vedina.api.audience`). Editing needs ``catalog:write``; a change
names the version it was made from in ``If-Match`` (the ETag of the movie's
GET, or ``"<version>"``): a stale one is ``412``, none at all ``428`` for PATCH.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from robyn import Request, SubRouter

from vedina.api.answers import MovieVersion
from vedina.api.audience import audience_of
from vedina.api.bodies import decode_body, no_content
from vedina.api.params import if_match_version, path_int, query_int
from vedina.errors import ValidationFailed
from vedina.http.auth import requires
from vedina.http.context import context_of
from vedina.http.operation import Cursor, doc, limit
from vedina.http.responses import document_response, json_response
from vedina.services.catalog import MAX_PAGE, MovieDetail, MovieList, MovieQuery
from vedina.services.catalog_editor import MovieCreate, MoviePatch
from vedina.state import AppState
from vedina.storage.catalog_queries import SORTS
from vedina.storage.schema import AGE_RATINGS

_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_GENRE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# If-Match: "7.<digest>" (our ETag), "7", W/ forms, or *.
_QUERY_PARAMS = {
    "q", "sort", "cursor", "limit", "genre", "year_from", "year_to", "language", "age_rating", "person", "status",
}
_YEAR = Annotated[int, msgspec.Meta(ge=1800, le=2200)]
# What parse_query reads, for the OpenAPI document (a test checks both name the same parameters).
QUERY_DOC = {
    "q": Annotated[str, msgspec.Meta(max_length=200, description="search words (typos corrected)")],
    "sort": Literal[tuple(SORTS)], "cursor": Cursor, "limit": limit(MAX_PAGE), "genre": str,
    "year_from": _YEAR, "year_to": _YEAR, "language": str, "person": Annotated[int, msgspec.Meta(ge=1)],
    "age_rating": Annotated[str, msgspec.Meta(description=f"comma-separated among {', '.join(AGE_RATINGS)}")],
    "status": Literal["draft", "published", "deleted", "all"],  # editors
}


def _text(request: Request, name: str, *, max_length: int, pattern: re.Pattern | None = None) -> str | None:
    value = request.query_params.get(name, None)
    if value is None:
        return None
    if len(value) > max_length or (pattern is not None and not pattern.fullmatch(value)):
        raise ValidationFailed(f"{name} is not valid", details={"field": name})
    return value


def parse_query(request: Request) -> MovieQuery:
    for name in request.query_params.to_dict():
        if name not in _QUERY_PARAMS:
            raise ValidationFailed(f"Unknown query parameter {name!r}", details={"field": name[:64]})
    sort = request.query_params.get("sort", None) or "newest"
    if sort not in SORTS:
        raise ValidationFailed(f"sort must be one of {', '.join(SORTS)}", details={"field": "sort"})
    ratings = _text(request, "age_rating", max_length=40)
    age_ratings = None
    if ratings is not None:
        age_ratings = tuple(dict.fromkeys(ratings.split(",")))
        if not all(r in AGE_RATINGS for r in age_ratings):
            raise ValidationFailed(f"age_rating must be among {', '.join(AGE_RATINGS)}", details={"field": "age_rating"})
    status = _text(request, "status", max_length=10)
    if status is not None and status not in ("draft", "published", "deleted", "all"):
        raise ValidationFailed("status must be draft, published, deleted or all", details={"field": "status"})
    q = request.query_params.get("q", None)
    if q is not None and (len(q) > 200 or any(ord(c) < 0x20 for c in q)):
        raise ValidationFailed("q must be at most 200 printable characters", details={"field": "q"})
    year_from = query_int(request, "year_from", default=0, minimum=1800, maximum=2200) or None
    year_to = query_int(request, "year_to", default=0, minimum=1800, maximum=2200) or None
    return MovieQuery(
        q=q or None, sort=sort, cursor=_text(request, "cursor", max_length=512), status=status,
        limit=query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE),
        genre=_text(request, "genre", max_length=64, pattern=_GENRE),
        year_from=year_from, year_to=year_to,
        language=_text(request, "language", max_length=16, pattern=_LANGUAGE),
        age_ratings=age_ratings,
        person=query_int(request, "person", default=0, minimum=1, maximum=2**62) or None,
    )



def _version_answer(movie_id: int, version: int, *, status: int = 200):
    return json_response({"id": movie_id, "version": version}, status=status, headers={"etag": f'"{version}"'})


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.get("/", openapi_name="List and search movies (keyset pages)")
    @doc(public=True, query=QUERY_DOC, headers=("X-Profile-Id", "If-None-Match"), answers={200: MovieList, 304: None})
    async def list_movies(request: Request):
        catalog, audience = state.services.catalog, await audience_of(request, state)
        request_key = context_of(request).raw_query  # None on Robyn's own server: keyed by the parsed query
        page = None if request_key is None else catalog.cached_page(request_key=request_key, audience=audience)
        if page is None:
            page = await catalog.list_movies(query=parse_query(request), audience=audience, request_key=request_key)
        return document_response(request, page)

    @router.get("/:id", openapi_name="Get a movie with its credits and media assets")
    @doc(public=True, headers=("X-Profile-Id", "If-None-Match"), answers={200: MovieDetail, 304: None})
    async def get_movie(request: Request):
        movie_id = path_int(request, "id")
        return document_response(request, await state.services.catalog.get_movie(movie_id=movie_id, audience=await audience_of(request, state)))

    @router.post("/", openapi_name="Create a movie (a draft)")
    @doc(body=MovieCreate, answers={201: MovieVersion}, errors=("409 conflict",))
    @requires("catalog:write", csrf_tokens=csrf)
    async def create_movie(request: Request):
        movie_id, version = await state.services.catalog_editor.create(decode_body(request, MovieCreate))
        return _version_answer(movie_id, version, status=201)

    @router.patch("/:id", openapi_name="Edit a movie (If-Match required)")
    @doc(body=MoviePatch, headers=("If-Match",), required=("If-Match",), answers={200: MovieVersion},
         errors=("409 conflict",))
    @requires("catalog:write", csrf_tokens=csrf)
    async def update_movie(request: Request):
        movie_id = path_int(request, "id")
        version = if_match_version(request, required=True, what="movie")
        patch = decode_body(request, MoviePatch)
        return _version_answer(movie_id, await state.services.catalog_editor.update(movie_id, patch, if_version=version))

    async def set_published(request: Request, published: bool):
        movie_id, editor = path_int(request, "id"), state.services.catalog_editor
        change = editor.publish if published else editor.unpublish
        version = if_match_version(request, required=False, what="movie")
        return _version_answer(movie_id, await change(movie_id, if_version=version))

    @router.post("/:id/publish", openapi_name="Publish a movie")
    @doc(headers=("If-Match",), answers={200: MovieVersion})
    @requires("catalog:write", csrf_tokens=csrf)
    async def publish_movie(request: Request):
        return await set_published(request, True)

    @router.post("/:id/unpublish", openapi_name="Unpublish a movie (back to draft)")
    @doc(headers=("If-Match",), answers={200: MovieVersion})
    @requires("catalog:write", csrf_tokens=csrf)
    async def unpublish_movie(request: Request):
        return await set_published(request, False)

    @router.delete("/:id", openapi_name="Delete a movie (soft)")
    @doc(headers=("If-Match",), answers={204: None})
    @requires("catalog:write", csrf_tokens=csrf)
    async def delete_movie(request: Request):
        movie_id = path_int(request, "id")
        version = if_match_version(request, required=False, what="movie")
        await state.services.catalog_editor.delete(movie_id, if_version=version)
        return no_content()

    @router.delete("/:id/media/:asset_id", openapi_name="Detach a media asset from a movie")
    @doc(answers={204: None})
    @requires("catalog:write", csrf_tokens=csrf)
    async def detach_asset(request: Request):
        await state.services.catalog_editor.detach_asset(path_int(request, "id"), path_int(request, "asset_id"))
        return no_content()
