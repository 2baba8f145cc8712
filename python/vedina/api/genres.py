"""/api/genres: the genres movies are filed under (editors manage them)."""

from __future__ import annotations

import re

from robyn import Request, SubRouter

from vedina.api.answers import GenreList, GenreName
from vedina.api.bodies import decode_body, no_content
from vedina.errors import NotFound
from vedina.http.auth import requires
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.catalog_editor import GenreCreate, GenreUpdate
from vedina.state import AppState

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _slug(request: Request) -> str:
    slug = request.path_params.get("slug", "")
    if len(slug) > 64 or not _SLUG.fullmatch(slug):
        raise NotFound("Genre not found", details={"slug": slug[:64]})
    return slug


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.get("/", openapi_name="List genres")
    @doc(public=True, answers={200: GenreList})
    async def list_genres(request: Request):
        return json_response({"items": await state.services.genres.all()})

    @router.post("/", openapi_name="Create a genre")
    @doc(body=GenreCreate, answers={201: GenreName}, errors=("409 conflict",))
    @requires("catalog:write", csrf_tokens=csrf)
    async def create_genre(request: Request):
        body = decode_body(request, GenreCreate)
        await state.services.catalog_editor.create_genre(body)
        return json_response({"slug": body.slug, "name": body.name}, status=201)

    @router.patch("/:slug", openapi_name="Rename a genre")
    @doc(body=GenreUpdate, answers={200: GenreName})
    @requires("catalog:write", csrf_tokens=csrf)
    async def rename_genre(request: Request):
        slug = _slug(request)
        body = decode_body(request, GenreUpdate)
        await state.services.catalog_editor.rename_genre(slug, body)
        return json_response({"slug": slug, "name": body.name})

    @router.delete("/:slug", openapi_name="Delete a genre (movies keep their other genres)")
    @doc(answers={204: None})
    @requires("catalog:write", csrf_tokens=csrf)
    async def delete_genre(request: Request):
        await state.services.catalog_editor.delete_genre(_slug(request))
        return no_content()
