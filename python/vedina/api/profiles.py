"""/api/profiles: the caller's viewer profiles (up to five; the main one cannot be deleted)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body, no_content
from vedina.api.params import path_int
from vedina.http.auth import account_id_of, requires
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.profiles import Profile, ProfileList
from vedina.state import AppState

AgeRating = Literal["G", "PG", "PG-13", "R", "NC-17"]
# 1..50 printable characters, stored verbatim (HTML included: answers are JSON with nosniff);
# no leading or trailing space (MariaDB compares "Kids" and "Kids " as equal).
_EDGE = r"[^\s\x00-\x1f\x7f-\x9f]"
ProfileName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=50, pattern=rf"^{_EDGE}(?:[^\x00-\x1f\x7f-\x9f]*{_EDGE})?\Z")
]


class ProfileCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: ProfileName
    max_age_rating: AgeRating | None = None


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: ProfileName | msgspec.UnsetType = msgspec.UNSET
    max_age_rating: AgeRating | None | msgspec.UnsetType = msgspec.UNSET  # null: no limit


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def me_id(request: Request) -> int:
        return account_id_of(request, what="viewer profiles")

    @router.get("/", openapi_name="My profiles")
    @doc(answers={200: ProfileList})
    @requires("account:self", csrf_tokens=csrf)
    async def list_profiles(request: Request):
        """Main first; the main profile is created on first use."""
        items = await state.services.profiles.list(user_id=me_id(request))
        return json_response(ProfileList(items=list(items)))

    @router.post("/", openapi_name="Create a profile")
    @doc(body=ProfileCreate, answers={201: Profile}, errors=("409 conflict",))
    @requires("account:self", csrf_tokens=csrf)
    async def create_profile(request: Request):
        """409 ``profile_limit_reached`` past five profiles, ``profile_name_taken`` for a name in use."""
        body = decode_body(request, ProfileCreate)
        profile = await state.services.profiles.create(user_id=me_id(request), name=body.name,
                                                       max_age_rating=body.max_age_rating)
        return json_response(profile, status=201)

    @router.get("/:id", openapi_name="Get a profile")
    @doc(answers={200: Profile})
    @requires("account:self", csrf_tokens=csrf)
    async def get_profile(request: Request):
        profile = await state.services.profiles.current(user_id=me_id(request), profile_id=path_int(request, "id"))
        return json_response(profile)

    @router.patch("/:id", openapi_name="Rename a profile or change its age limit")
    @doc(body=ProfileUpdate, answers={200: Profile}, errors=("409 conflict",))
    @requires("account:self", csrf_tokens=csrf)
    async def update_profile(request: Request):
        body = decode_body(request, ProfileUpdate)
        changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
        profile = await state.services.profiles.update(user_id=me_id(request), profile_id=path_int(request, "id"),
                                                       changes=changes)
        return json_response(profile)

    @router.delete("/:id", openapi_name="Delete a profile (not the main one)")
    @doc(answers={204: None}, errors=("409 conflict",))
    @requires("account:self", csrf_tokens=csrf)
    async def delete_profile(request: Request):
        """Its progress, watchlist and ratings go with it."""
        await state.services.profiles.delete(user_id=me_id(request), profile_id=path_int(request, "id"))
        return no_content()
