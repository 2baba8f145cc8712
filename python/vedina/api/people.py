"""/api/people: cast and crew (editors manage them; credits are set on the movie)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from robyn import Request, SubRouter

from vedina.api.answers import PersonDetail, PersonList, PersonName
from vedina.api.audience import audience_of
from vedina.api.bodies import decode_body, no_content
from vedina.api.params import path_int, query_int
from vedina.errors import NotFound, ValidationFailed
from vedina.http.auth import requires
from vedina.http.operation import doc, limit
from vedina.http.responses import json_response
from vedina.services.catalog_editor import PersonCreate
from vedina.services.visibility import ratings_up_to
from vedina.state import AppState
from vedina.storage.clock import utcnow

MAX_PAGE = 50


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.get("/", openapi_name="Find people by name prefix")
    @doc(public=True,
         query={"name": Annotated[str, msgspec.Meta(min_length=1, max_length=100)], "limit": limit(MAX_PAGE)},
         required=("name",), answers={200: PersonList})
    async def find_people(request: Request):
        prefix = request.query_params.get("name", None)
        if prefix is None or not 1 <= len(prefix) <= 100 or any(ord(c) < 0x20 for c in prefix):
            raise ValidationFailed("name (a prefix, 1-100 characters) is required", details={"field": "name"})
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return json_response({"items": await state.services.people.find(name_prefix=prefix, limit=limit)})

    @router.get("/:id", openapi_name="A person and their published credits")
    @doc(public=True, headers=("X-Profile-Id",), answers={200: PersonDetail})
    async def get_person(request: Request):
        person_id = path_int(request, "id")
        audience = await audience_of(request, state)
        person = await state.services.people.get(person_id, now=utcnow(), ratings=ratings_up_to(audience.max_age_rating))
        if person is None:
            raise NotFound(f"Person {person_id} not found", details={"id": person_id})
        return json_response(person)

    @router.post("/", openapi_name="Add a person")
    @doc(body=PersonCreate, answers={201: PersonName})
    @requires("catalog:write", csrf_tokens=csrf)
    async def create_person(request: Request):
        body = decode_body(request, PersonCreate)
        person_id = await state.services.catalog_editor.create_person(body)
        return json_response({"id": person_id, "name": body.name}, status=201)

    @router.patch("/:id", openapi_name="Rename a person")
    @doc(body=PersonCreate, answers={200: PersonName})
    @requires("catalog:write", csrf_tokens=csrf)
    async def rename_person(request: Request):
        person_id = path_int(request, "id")
        body = decode_body(request, PersonCreate)
        await state.services.catalog_editor.rename_person(person_id, body)
        return json_response({"id": person_id, "name": body.name})

    @router.delete("/:id", openapi_name="Remove a person (and their credits)")
    @doc(answers={204: None})
    @requires("catalog:write", csrf_tokens=csrf)
    async def delete_person(request: Request):
        await state.services.catalog_editor.delete_person(path_int(request, "id"))
        return no_content()
