"""Logins and sessions: access tokens, refresh-token rotation with reuse detection, logout.

A login starts a *family*: its id is the session id (``sid``) inside every
access token and the id users see in their session list. Each refresh token
is single-use: refreshing marks it rotated and issues the next one in the same
family. Presenting a rotated token again means two parties hold the family's
tokens (one of them a thief), so the whole family is revoked (RFC 9700 §4.14).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Forbidden, NotFound, Unauthorized
from vedina.security.devices import DeviceTokens
from vedina.security.jwt_keys import TokenKeys
from vedina.security.passwords import hash_password_async, needs_rehash, verify_password_async
from vedina.services.auth_state import AuthState
from vedina.services.emails import normalise_email
from vedina.services.login_guard import LoginGuard
from vedina.services.tokens import digest
from vedina.storage.clock import utcnow
from vedina.storage.sessions import SessionRepository
from vedina.storage.users import UserRepository

log = logging.getLogger(__name__)

ACCESS_TOKEN_TTL = 15 * 60
REFRESH_TOKEN_TTL = timedelta(days=30)
INVALID_LOGIN = "Invalid email or password"


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int = ACCESS_TOKEN_TTL
    refresh_expires_in: int = int(REFRESH_TOKEN_TTL.total_seconds())
    session_id: str
    user_id: int
    # After a login: proof of this device for the next logins (kept by the client; see LoginGuard).
    device_token: str | None = None


class SessionPublic(msgspec.Struct, kw_only=True):
    id: str
    user_agent: str
    ip: str
    started_at: datetime
    last_refreshed_at: datetime
    expires_at: datetime
    current: bool


class SessionList(msgspec.Struct, kw_only=True):
    items: list[SessionPublic]


class SessionService:
    def __init__(
        self, *, engine: AsyncEngine, users: UserRepository, sessions: SessionRepository, auth_state: AuthState,
        token_keys: TokenKeys, devices: DeviceTokens, login_guard: LoginGuard | None = None,
        require_verified_email: bool = True,
    ) -> None:
        self._require_verified = require_verified_email
        self._login_guard = login_guard
        self._devices = devices
        self._engine = engine
        self._users = users
        self._sessions = sessions
        self._state = auth_state
        self._keys = token_keys

    async def login(
        self, *, email: str, password: str, user_agent: str = "", ip: str = "", device_token: str | None = None
    ) -> TokenPair:
        """Same answer, after the same work, for an unknown email and a wrong password. A
        successful login carries a device token for the next ones (see LoginGuard)."""
        email = normalise_email(email)
        if self._login_guard is not None:
            await self._login_guard.attempt(email, device=self._devices.device_for(device_token, email))
        user = await self._users.get_credentials(email=email)
        usable = user is not None and user["status"] != "deleted"
        if not await verify_password_async(user["password_hash"] if usable else None, password) or not usable:
            raise Unauthorized(INVALID_LOGIN)
        if self._require_verified and user["email_verified_at"] is None:
            # The same answer as a wrong password: an address registered a moment ago by whoever
            # chose this password must not tell whether it already had an account.
            raise Unauthorized(INVALID_LOGIN)
        if user["status"] == "suspended":
            raise Forbidden("This account is suspended")
        # The one moment the plain password is at hand: upgrade a hash made with
        # older (weaker) Argon2 parameters to the current ones.
        new_hash = await hash_password_async(password) if needs_rehash(user["password_hash"]) else None
        family_id = uuid.uuid4().hex
        async with self._engine.begin() as conn:
            if new_hash is not None:
                await UserRepository.update(conn, user["id"], password_hash=new_hash)
            pair = await self._issue(conn, user_id=user["id"], role=user["role"], family_id=family_id,
                                     started_at=utcnow(), user_agent=user_agent, ip=ip)
        await self._state.mark_session_active(family_id, user_id=user["id"])
        known = device_token if self._devices.device_for(device_token, email) else self._devices.issue(email)
        return msgspec.structs.replace(pair, device_token=known)

    async def refresh(self, *, refresh_token: str, user_agent: str = "", ip: str = "") -> TokenPair:
        reused = None
        async with self._engine.begin() as conn:
            row = await SessionRepository.get_by_hash(conn, digest(refresh_token))
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= utcnow():
                raise Unauthorized("Invalid or expired refresh token")
            if row["rotated_at"] is not None or not await SessionRepository.mark_rotated(conn, row["id"]):
                reused = row
            else:
                # Read the user row itself, not the shared-store cache: filling the
                # cache is a write, and on SQLite a second writer would wait for
                # this transaction's lock (and time out).
                user = await self._users.get(row["user_id"])
                if user is None or user["status"] != "active":
                    raise Unauthorized("Invalid or expired refresh token")
                pair = await self._issue(
                    conn, user_id=row["user_id"], role=user["role"], family_id=row["family_id"],
                    started_at=row["started_at"], user_agent=user_agent[:200] or row["user_agent"], ip=ip or row["ip"],
                )
        if reused is not None:
            # A separate transaction: the revocation must commit although the request fails.
            async with self._engine.begin() as conn:
                await SessionRepository.revoke_family(conn, reused["family_id"])
            await self._state.mark_sessions_revoked([reused["family_id"]])
            log.warning("refresh token reused: session family revoked", extra={"user_id": reused["user_id"]})
            raise Unauthorized("Refresh token already used: the session has been revoked")
        return pair

    async def family_of(self, refresh_token: str) -> str | None:
        """The family a refresh token belongs to (to check a cookie session's CSRF token first)."""
        async with self._engine.connect() as conn:
            row = await SessionRepository.get_by_hash(conn, digest(refresh_token))
        return None if row is None else row["family_id"]

    async def logout(self, *, user_id: int, family_id: str, jti: str, expires_at: int) -> None:
        async with self._engine.begin() as conn:
            await SessionRepository.revoke_family(conn, family_id, user_id=user_id)
        await self._state.mark_sessions_revoked([family_id])
        await self._state.deny_token(jti, expires_at=expires_at)

    async def revoke_all(self, *, user_id: int, keep_family: str | None = None) -> int:
        """Log a user out everywhere (but ``keep_family``); returns how many sessions ended."""
        async with self._engine.begin() as conn:
            families = await SessionRepository.revoke_user(conn, user_id, keep_family=keep_family)
        await self._state.mark_sessions_revoked(families)
        return len(families)

    async def list_sessions(self, *, user_id: int, current_family: str) -> SessionList:
        rows = await self._sessions.list_active(user_id)
        return SessionList(items=[
            SessionPublic(
                id=r["family_id"], user_agent=r["user_agent"], ip=r["ip"], started_at=r["started_at"],
                last_refreshed_at=r["created_at"], expires_at=r["expires_at"], current=r["family_id"] == current_family,
            )
            for r in rows
        ])

    async def revoke_session(self, *, user_id: int, family_id: str) -> None:
        async with self._engine.begin() as conn:
            found = await SessionRepository.revoke_family(conn, family_id, user_id=user_id)
        if not found:
            raise NotFound("No such active session", details={"id": family_id[:64]})
        await self._state.mark_sessions_revoked([family_id])

    async def _issue(
        self, conn, *, user_id: int, role: str, family_id: str, started_at: datetime, user_agent: str, ip: str
    ) -> TokenPair:
        refresh_token = secrets.token_urlsafe(32)
        await SessionRepository.insert(
            conn, user_id=user_id, family_id=family_id, refresh_token_hash=digest(refresh_token),
            user_agent=user_agent[:200], ip=ip[:64], started_at=started_at, expires_at=utcnow() + REFRESH_TOKEN_TTL,
        )
        access_token = self._keys.sign(
            {"sub": str(user_id), "sid": family_id, "jti": uuid.uuid4().hex, "role": role, "typ": "access"},
            ttl=ACCESS_TOKEN_TTL,
        )
        return TokenPair(access_token=access_token, refresh_token=refresh_token, session_id=family_id, user_id=user_id)
