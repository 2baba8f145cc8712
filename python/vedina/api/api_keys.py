"""/api/api-keys: API keys for external services (admin). The secret is in the answer once, never again."""

from __future__ import annotations

from typing import Annotated

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body
from vedina.api.params import path_int, query_int
from vedina.errors import ValidationFailed
from vedina.http.auth import principal_of, requires
from vedina.http.operation import doc, limit
from vedina.http.responses import json_response
from vedina.security.rbac import API_KEY_SCOPES
from vedina.services.api_keys import ApiKeyCreated, ApiKeyList, ApiKeyPublic
from vedina.state import AppState

KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
Scope = Annotated[str, msgspec.Meta(max_length=64)]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: KeyName
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=len(API_KEY_SCOPES))]


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.post("/", openapi_name="Create an API key (the secret is shown once)")
    @doc(body=ApiKeyCreate, answers={201: ApiKeyCreated})
    @requires("api_keys:manage", csrf_tokens=csrf)
    async def create_key(request: Request):
        """Scopes: catalog:read, catalog:write, media:ingest, payments:webhook.
        Sign requests with AWS SigV4, service ``vedina``, region SIGV4_REGION."""
        body = decode_body(request, ApiKeyCreate)
        unknown = sorted(set(body.scopes) - API_KEY_SCOPES)
        if unknown:
            raise ValidationFailed(
                f"Unknown scopes: {', '.join(unknown)}", details={"field": "scopes", "allowed": sorted(API_KEY_SCOPES)}
            )
        owner = int(principal_of(request).subject)
        created = await state.services.api_keys.create(name=body.name, scopes=body.scopes, owner_id=owner)
        return json_response(created, status=201)

    @router.get("/", openapi_name="List API keys")
    @doc(query={"offset": int, "limit": limit(100)}, answers={200: ApiKeyList})
    @requires("api_keys:manage", csrf_tokens=csrf)
    async def list_keys(request: Request):
        return json_response(await state.services.api_keys.list(
            offset=query_int(request, "offset", default=0, minimum=0, maximum=10**9),
            limit=query_int(request, "limit", default=20, minimum=1, maximum=100),
        ))

    @router.get("/:id", openapi_name="Get an API key (without its secret)")
    @doc(answers={200: ApiKeyPublic})
    @requires("api_keys:manage", csrf_tokens=csrf)
    async def get_key(request: Request):
        return json_response(await state.services.api_keys.get(key_id=path_int(request, "id")))

    @router.post("/:id/rotate", openapi_name="Rotate an API key's secret (the new one is shown once)")
    @doc(answers={200: ApiKeyCreated})
    @requires("api_keys:manage", csrf_tokens=csrf)
    async def rotate_key(request: Request):
        return json_response(await state.services.api_keys.rotate(key_id=path_int(request, "id")))

    @router.delete("/:id", openapi_name="Revoke an API key")
    @doc(answers={200: ApiKeyPublic})
    @requires("api_keys:manage", csrf_tokens=csrf)
    async def revoke_key(request: Request):
        return json_response(await state.services.api_keys.revoke(key_id=path_int(request, "id")))
