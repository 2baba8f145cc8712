"""/api/users: one's own account and sessions, and user administration."""

from __future__ import annotations

from typing import Literal

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import DisplayName, decode_body, no_content
from vedina.api.params import path_int, query_int
from vedina.errors import ValidationFailed
from vedina.http.auth import principal_of, requires
from vedina.http.operation import doc, limit
from vedina.http.responses import json_response
from vedina.security.rbac import Role
from vedina.services.accounts import STATUSES, UserList, UserPublic
from vedina.services.sessions import SessionList
from vedina.state import AppState

MAX_PAGE = 100
MAX_SEARCH = 100


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    display_name: DisplayName | None = None


class RoleChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Literal["viewer", "editor", "moderator", "admin"]


def _choice(request: Request, name: str, allowed: set[str]) -> str | None:
    value = request.query_params.get(name, None)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name} must be one of {sorted(allowed)}", details={"field": name})
    return value


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def me_id(request: Request) -> int:
        return int(principal_of(request).subject)

    @router.get("/me", openapi_name="My account")
    @doc(answers={200: UserPublic})
    @requires("account:self", csrf_tokens=csrf)
    async def get_me(request: Request):
        return json_response(await state.services.accounts.get(user_id=me_id(request)))

    @router.patch("/me", openapi_name="Change my display name")
    @doc(body=ProfileUpdate, answers={200: UserPublic})
    @requires("account:self", csrf_tokens=csrf)
    async def update_me(request: Request):
        body = decode_body(request, ProfileUpdate)
        return json_response(await state.services.accounts.update_profile(user_id=me_id(request), display_name=body.display_name))

    @router.delete("/me", openapi_name="Delete my account")
    @doc(query={"erase": Literal["true", "false"]}, answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def delete_me(request: Request):
        """Soft delete: every session ends. ``?erase=true`` also erases email, name and password."""
        erase = _choice(request, "erase", {"true", "false"}) == "true"
        await state.services.accounts.delete(user_id=me_id(request), erase=erase)
        return no_content()

    @router.get("/me/sessions", openapi_name="My active sessions (devices)")
    @doc(answers={200: SessionList})
    @requires("account:self", csrf_tokens=csrf)
    async def my_sessions(request: Request):
        me = principal_of(request)
        return json_response(await state.services.sessions.list_sessions(user_id=int(me.subject), current_family=me.session_id))

    @router.delete("/me/sessions/:session_id", openapi_name="Revoke one of my sessions")
    @doc(path={"session_id": str}, answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def revoke_my_session(request: Request):
        session_id = request.path_params.get("session_id", "")
        if not (len(session_id) == 32 and all(c in "0123456789abcdef" for c in session_id)):
            raise ValidationFailed("session_id must be a session id", details={"field": "session_id"})
        await state.services.sessions.revoke_session(user_id=me_id(request), family_id=session_id)
        return no_content()

    @router.get("/", openapi_name="List and search users")
    @doc(query={"q": str, "role": str, "status": str, "offset": int, "limit": limit(MAX_PAGE)}, answers={200: UserList})
    @requires("users:read", csrf_tokens=csrf)
    async def list_users(request: Request):
        """``q`` searches email and display name; ``role`` and ``status`` filter; ``offset``/``limit`` paginate."""
        search = request.query_params.get("q", None)
        if search is not None and len(search) > MAX_SEARCH:
            raise ValidationFailed(f"q must be at most {MAX_SEARCH} characters", details={"field": "q"})
        page = await state.services.accounts.list_users(
            offset=query_int(request, "offset", default=0, minimum=0, maximum=10**9),
            limit=query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE),
            search=search or None,
            role=_choice(request, "role", {r.value for r in Role}),
            status=_choice(request, "status", set(STATUSES)),
        )
        return json_response(page)

    @router.get("/:id", openapi_name="Get a user")
    @doc(answers={200: UserPublic})
    @requires("users:read", csrf_tokens=csrf)
    async def get_user(request: Request):
        return json_response(await state.services.accounts.get(user_id=path_int(request, "id")))

    @router.put("/:id/role", openapi_name="Change a user's role")
    @doc(body=RoleChange, answers={200: UserPublic}, errors=("409 conflict",))
    @requires("users:manage", csrf_tokens=csrf)
    async def change_role(request: Request):
        body = decode_body(request, RoleChange)
        user = await state.services.accounts.set_role(actor_id=me_id(request), user_id=path_int(request, "id"), role=body.role)
        return json_response(user)

    @router.post("/:id/suspend", openapi_name="Suspend a user (their tokens stop working at once)")
    @doc(answers={200: UserPublic}, errors=("409 conflict",))
    @requires("users:manage", csrf_tokens=csrf)
    async def suspend(request: Request):
        user = await state.services.accounts.set_suspended(actor_id=me_id(request), user_id=path_int(request, "id"), suspended=True)
        return json_response(user)

    @router.post("/:id/unsuspend", openapi_name="Lift a suspension")
    @doc(answers={200: UserPublic}, errors=("409 conflict",))
    @requires("users:manage", csrf_tokens=csrf)
    async def unsuspend(request: Request):
        user = await state.services.accounts.set_suspended(actor_id=me_id(request), user_id=path_int(request, "id"), suspended=False)
        return json_response(user)
