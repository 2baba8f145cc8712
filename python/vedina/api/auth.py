"""/api/auth: register, login, refresh, logout, passwords, email verification.

Two ways to hold a session. ``"session": "bearer"`` (default) answers with
the tokens in the body, for apps. ``"session": "cookie"`` sets HttpOnly,
Secure, SameSite=Lax cookies (access token, refresh token scoped to
/api/auth) plus a readable ``vedina_csrf`` cookie whose value the browser
client must echo in ``X-CSRF-Token`` on every unsafe request.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from robyn import Request, Response, SubRouter

from vedina.api.answers import Accepted, RevokedSessions, WhoAmI
from vedina.api.bodies import DisplayName, Email, Password, Token, decode_body, no_content
from vedina.errors import Unauthorized
from vedina.http.auth import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    REFRESH_COOKIE_PATH,
    check_csrf,
    client_ip,
    principal_of,
    read_cookie,
    requires,
    user_agent,
)
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.security.csrf import COOKIE as CSRF_COOKIE
from vedina.security.devices import COOKIE as DEVICE_COOKIE
from vedina.security.devices import LIFETIME_SECONDS as DEVICE_LIFETIME
from vedina.services.accounts import Registration, UserPublic
from vedina.services.sessions import ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL, TokenPair
from vedina.state import AppState


class Register(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    display_name: DisplayName


class Login(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    session: Literal["bearer", "cookie"] = "bearer"
    # From an earlier login on this device (apps; browsers send the vedina_device cookie).
    device_token: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Refresh(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    refresh_token: Token | None = None


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    current_password: Password
    new_password: Password


class ResetRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email


class ResetConfirm(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Token
    new_password: Password


class VerifyEmail(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Token


class CookieSession(msgspec.Struct, kw_only=True):
    user_id: int
    session_id: str
    csrf_token: str
    expires_in: int = ACCESS_TOKEN_TTL


def _cookie_answer(state: AppState, pair: TokenPair) -> Response:
    csrf = state.services.csrf.token_for(pair.session_id)
    response = json_response(CookieSession(user_id=pair.user_id, session_id=pair.session_id, csrf_token=csrf))
    refresh_age = int(REFRESH_TOKEN_TTL.total_seconds())
    common = {"secure": True, "same_site": "Lax"}
    response.set_cookie(ACCESS_COOKIE, pair.access_token, path="/", max_age=ACCESS_TOKEN_TTL, http_only=True, **common)
    response.set_cookie(REFRESH_COOKIE, pair.refresh_token, path=REFRESH_COOKIE_PATH, max_age=refresh_age, http_only=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf, path="/", max_age=refresh_age, **common)
    return response


def _clear_cookies(response: Response) -> Response:
    for name, path in ((ACCESS_COOKIE, "/"), (REFRESH_COOKIE, REFRESH_COOKIE_PATH), (CSRF_COOKIE, "/")):
        response.set_cookie(name, "", path=path, max_age=0, secure=True, http_only=name != CSRF_COOKIE, same_site="Lax")
    return response


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.post("/register", openapi_name="Create an account")
    @doc(public=True, body=Register, answers={202: Registration})
    async def register_account(request: Request):
        """Email (normalised, unique), password (10+ characters, not a common one), display name.
        Always 202 with the same body: a new address gets its account and a verification email,
        an address that has an account gets an email to its owner (no account enumeration)."""
        body = decode_body(request, Register)
        registration = await state.services.accounts.register(
            email=body.email, password=body.password, display_name=body.display_name
        )
        return json_response(registration, status=202)

    @router.post("/login", openapi_name="Log in (bearer tokens or cookies)")
    @doc(public=True, body=Login, answers={200: [TokenPair, CookieSession]},
         errors=("401 unauthorized", "403 forbidden"))
    async def login(request: Request):
        """Access token (JWT, 15 minutes) and refresh token (30 days, single use).
        A failed login never says whether the email exists."""
        body = decode_body(request, Login)
        pair = await state.services.sessions.login(
            email=body.email, password=body.password, user_agent=user_agent(request), ip=client_ip(request, state.proxies),
            device_token=body.device_token or read_cookie(request, DEVICE_COOKIE),
        )
        response = _cookie_answer(state, pair) if body.session == "cookie" else json_response(pair)
        response.set_cookie(DEVICE_COOKIE, pair.device_token, path=REFRESH_COOKIE_PATH, max_age=DEVICE_LIFETIME,
                            http_only=True, secure=True, same_site="Lax")
        return response

    @router.post("/refresh", openapi_name="Exchange a refresh token for new tokens")
    @doc(public=True, body=Refresh, body_optional=True, answers={200: [TokenPair, CookieSession]},
         errors=("401 unauthorized", "403 forbidden"))
    async def refresh(request: Request):
        """Rotation: the refresh token is used up; presenting it again revokes the whole session.
        Cookie sessions send no body, and the X-CSRF-Token header."""
        body = decode_body(request, Refresh, optional=True)
        sessions = state.services.sessions
        if body is not None and body.refresh_token:
            return json_response(await sessions.refresh(
                refresh_token=body.refresh_token, user_agent=user_agent(request), ip=client_ip(request, state.proxies)
            ))
        token = read_cookie(request, REFRESH_COOKIE)
        if not token:
            raise Unauthorized("No refresh token")
        family = await sessions.family_of(token)
        if family is None:
            raise Unauthorized("Invalid or expired refresh token")
        check_csrf(csrf(), request, session_id=family)
        pair = await sessions.refresh(refresh_token=token, user_agent=user_agent(request), ip=client_ip(request, state.proxies))
        return _cookie_answer(state, pair)

    @router.post("/logout", openapi_name="Log out this session")
    @doc(answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def logout(request: Request):
        """Revokes the session and denies this access token until it expires."""
        me = principal_of(request)
        await state.services.sessions.logout(
            user_id=int(me.subject), family_id=me.session_id, jti=me.token_id, expires_at=me.expires_at
        )
        return _clear_cookies(no_content())

    @router.post("/logout-all", openapi_name="Log out everywhere")
    @doc(answers={200: RevokedSessions})
    @requires("account:self", csrf_tokens=csrf)
    async def logout_all(request: Request):
        me = principal_of(request)
        revoked = await state.services.sessions.revoke_all(user_id=int(me.subject))
        await state.services.auth_state.deny_token(me.token_id, expires_at=me.expires_at)
        return _clear_cookies(json_response({"revoked_sessions": revoked}))

    @router.post("/password", openapi_name="Change password")
    @doc(body=PasswordChange, answers={204: None})
    @requires("account:self", csrf_tokens=csrf)
    async def change_password(request: Request):
        """Needs the current password; every other session is logged out."""
        body = decode_body(request, PasswordChange)
        me = principal_of(request)
        await state.services.accounts.change_password(
            user_id=int(me.subject), current_password=body.current_password, new_password=body.new_password,
            keep_family=me.session_id,
        )
        return no_content()

    @router.post("/password-reset", openapi_name="Ask for a password reset email")
    @doc(public=True, body=ResetRequest, answers={202: Accepted})
    async def request_reset(request: Request):
        """Always 202, whether or not the email belongs to an account."""
        body = decode_body(request, ResetRequest)
        await state.services.accounts.request_password_reset(email=body.email)
        return json_response({"status": "accepted"}, status=202)

    @router.post("/password-reset/confirm", openapi_name="Set a new password with a reset token")
    @doc(public=True, body=ResetConfirm, answers={204: None})
    async def confirm_reset(request: Request):
        """The token (30 minutes, single use) comes from the email; every session is logged out."""
        body = decode_body(request, ResetConfirm)
        await state.services.accounts.confirm_password_reset(token=body.token, new_password=body.new_password)
        return no_content()

    @router.post("/verify-email", openapi_name="Confirm an email address")
    @doc(public=True, body=VerifyEmail, answers={200: UserPublic})
    async def verify_email(request: Request):
        body = decode_body(request, VerifyEmail)
        return json_response(await state.services.accounts.verify_email(token=body.token))

    @router.post("/verify-email/request", openapi_name="Ask for a verification email (before logging in)")
    @doc(public=True, body=ResetRequest, answers={202: Accepted})
    async def request_verification(request: Request):
        """Always 202, whether or not the email has an account waiting for verification."""
        body = decode_body(request, ResetRequest)
        await state.services.accounts.request_verification(email=body.email)
        return json_response({"status": "accepted"}, status=202)

    @router.post("/verify-email/resend", openapi_name="Send the verification email again")
    @doc(answers={202: Accepted}, errors=("409 conflict",))
    @requires("account:self", csrf_tokens=csrf)
    async def resend_verification(request: Request):
        await state.services.accounts.resend_verification(user_id=int(principal_of(request).subject))
        return json_response({"status": "accepted"}, status=202)

    @router.get("/whoami", openapi_name="The authenticated principal (user or API key)")
    @doc(answers={200: WhoAmI})
    @requires(None, csrf_tokens=csrf)
    async def whoami(request: Request):
        me = principal_of(request)
        return json_response({
            "kind": me.kind, "sub": me.subject, "role": me.role, "via": me.via,
            "permissions": sorted(me.permissions), "session_id": me.session_id or None,
        })
