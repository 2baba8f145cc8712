"""Accounts: registration, profile, password change and reset, email verification, and their admin side.

Emails that carry a token (verification, reset) are queued through the
outbox in the same transaction as the change that calls for them; the mail
job creates the token when it sends (see vedina.jobs.mail).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from vedina.security.passwords import check_policy, hash_password_async, verify_password_async
from vedina.security.rbac import Role
from vedina.services import tokens
from vedina.services.auth_state import AuthState, user_key
from vedina.services.emails import normalise_email
from vedina.services.sessions import SessionService
from vedina.storage.clock import utcnow
from vedina.storage.near_cache import NearCache
from vedina.storage.outbox import enqueue
from vedina.storage.users import UserRepository

log = logging.getLogger(__name__)

MAIL_TOPIC = "mail"
STATUSES = ("active", "suspended", "deleted")


class UserPublic(msgspec.Struct, kw_only=True):
    id: int
    email: str
    display_name: str
    role: str
    status: str
    email_verified: bool
    created_at: datetime


class Registration(msgspec.Struct, kw_only=True):
    """The answer to a registration: the same whether the address was new or not (no enumeration)."""

    status: str = "pending_verification"
    email: str
    message: str = "Check your inbox: we sent a message to this address."


class UserList(msgspec.Struct, kw_only=True):
    items: list[UserPublic]
    total: int
    offset: int
    limit: int


def _public(row: dict) -> UserPublic:
    return UserPublic(
        id=row["id"], email=row["email"], display_name=row["display_name"], role=row["role"], status=row["status"],
        email_verified=row["email_verified_at"] is not None, created_at=row["created_at"],
    )


class AccountService:
    def __init__(
        self, *, engine: AsyncEngine, users: UserRepository, sessions: SessionService, auth_state: AuthState,
        profiles: NearCache[UserPublic], on_closed: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._on_closed = on_closed  # what else ends with an account (its subscription: no charge after)
        self._users = users
        self._sessions = sessions
        self._state = auth_state
        self._profiles = profiles  # per worker; invalidated through AuthState (auth:user:<id>)

    # -- self service ------------------------------------------------------------

    async def register(self, *, email: str, password: str, display_name: str) -> Registration:
        """A new address gets an account and a verification email; an address that already has an
        account gets nothing but an email to its owner. The caller's answer is the same either way,
        after the same work (the password is hashed in both cases), so registration does not tell
        who has an account."""
        email = normalise_email(email)
        check_policy(password, email=email)
        password_hash = await hash_password_async(password)
        try:
            async with self._engine.begin() as conn:
                user_id = await UserRepository.insert(
                    conn, email=email, display_name=display_name, password_hash=password_hash,
                    role=Role.VIEWER.value, status="active",
                )
                await enqueue(conn, topic=MAIL_TOPIC, payload={"template": tokens.VERIFY_EMAIL, "user_id": user_id})
        except IntegrityError:
            owner = await self._users.get_credentials(email=email)
            if owner is not None and owner["status"] == "active":
                async with self._engine.begin() as conn:
                    await enqueue(conn, topic=MAIL_TOPIC,
                                  payload={"template": tokens.ACCOUNT_EXISTS, "user_id": owner["id"]})
        return Registration(email=email)

    async def get(self, *, user_id: int) -> UserPublic:
        key, depends_on = str(user_id), (user_key(user_id),)
        cached = self._profiles.peek(key, depends_on)
        return cached if cached is not None else await self._profiles.get_or_load(key, depends_on, lambda: self._load(user_id))

    async def _load(self, user_id: int) -> UserPublic:
        row = await self._users.get(user_id)
        if row is None or row["status"] == "deleted":
            raise NotFound("No such user", details={"id": user_id})
        return _public(row)

    async def update_profile(self, *, user_id: int, display_name: str | None) -> UserPublic:
        if display_name is not None:
            async with self._engine.begin() as conn:
                await UserRepository.update(conn, user_id, display_name=display_name)
            await self._state.profile_changed(user_id)
        return await self.get(user_id=user_id)

    async def delete(self, *, user_id: int, erase: bool) -> None:
        """Soft delete: the row stays (audit, foreign keys); ``erase`` also removes personal data."""
        values: dict = {"status": "deleted"}
        if erase:
            values.update(email=f"erased-{user_id}@erased.invalid", display_name="", password_hash=None)
        if not await self._change_state(user_id, **values):
            raise NotFound("No such user", details={"id": user_id})
        await self._sessions.revoke_all(user_id=user_id)
        if self._on_closed is not None:
            await self._on_closed(user_id)

    async def change_password(self, *, user_id: int, current_password: str, new_password: str, keep_family: str) -> None:
        """Other sessions end; the one that made the change stays logged in."""
        user = await self._users.get_credentials(user_id=user_id)
        if user is None or not await verify_password_async(user["password_hash"], current_password):
            raise Unauthorized("Current password is wrong", details={"field": "current_password"})
        check_policy(new_password, email=user["email"])
        password_hash = await hash_password_async(new_password)
        async with self._engine.begin() as conn:
            await UserRepository.update(conn, user_id, password_hash=password_hash)
        await self._sessions.revoke_all(user_id=user_id, keep_family=keep_family)

    async def request_password_reset(self, *, email: str) -> None:
        """Queue a reset email if the account exists; the caller's answer is the same either way."""
        user = await self._users.get_credentials(email=normalise_email(email))
        if user is None or user["status"] != "active":
            return
        async with self._engine.begin() as conn:
            await enqueue(conn, topic=MAIL_TOPIC, payload={"template": tokens.RESET_PASSWORD, "user_id": user["id"]})

    async def confirm_password_reset(self, *, token: str, new_password: str) -> None:
        """Set the new password and end every session (whoever asked for the reset may not be alone)."""
        async with self._engine.begin() as conn:
            user_id = await tokens.consume(conn, token=token, purpose=tokens.RESET_PASSWORD)
            if user_id is None:
                raise ValidationFailed("Invalid or expired reset token", details={"field": "token"})
            user = await self._users.get_credentials(user_id=user_id)
            check_policy(new_password, email=user["email"])  # raising rolls the token use back
            await UserRepository.update(conn, user_id, password_hash=await hash_password_async(new_password))
        await self._sessions.revoke_all(user_id=user_id)

    async def verify_email(self, *, token: str) -> UserPublic:
        async with self._engine.begin() as conn:
            user_id = await tokens.consume(conn, token=token, purpose=tokens.VERIFY_EMAIL)
            if user_id is None:
                raise ValidationFailed("Invalid or expired verification token", details={"field": "token"})
            await UserRepository.update(conn, user_id, email_verified_at=utcnow())
        await self._state.profile_changed(user_id)
        return await self.get(user_id=user_id)

    async def request_verification(self, *, email: str) -> None:
        """Queue a verification email if the address has an unverified account; the caller's
        answer is the same either way (for someone who cannot log in before verifying)."""
        user = await self._users.get_credentials(email=normalise_email(email))
        if user is None or user["status"] != "active" or user["email_verified_at"] is not None:
            return
        async with self._engine.begin() as conn:
            await enqueue(conn, topic=MAIL_TOPIC, payload={"template": tokens.VERIFY_EMAIL, "user_id": user["id"]})

    async def resend_verification(self, *, user_id: int) -> None:
        user = await self.get(user_id=user_id)
        if user.email_verified:
            raise Conflict("Email already verified")
        async with self._engine.begin() as conn:
            await enqueue(conn, topic=MAIL_TOPIC, payload={"template": tokens.VERIFY_EMAIL, "user_id": user_id})

    # -- administration ----------------------------------------------------------

    async def list_users(
        self, *, offset: int, limit: int, search: str | None, role: str | None, status: str | None
    ) -> UserList:
        rows, total = await self._users.list(offset=offset, limit=limit, search=search, role=role, status=status)
        return UserList(items=[_public(r) for r in rows], total=total, offset=offset, limit=limit)

    async def set_role(self, *, actor_id: int, user_id: int, role: str) -> UserPublic:
        if actor_id == user_id:
            raise Conflict("Admins cannot change their own role")  # no accidental lock-out
        await self._admin_target(user_id)
        await self._change_state(user_id, role=role)
        log.info("role changed", extra={"user_id": user_id, "role": role, "by": actor_id})
        return await self.get(user_id=user_id)

    async def set_suspended(self, *, actor_id: int, user_id: int, suspended: bool) -> UserPublic:
        """Takes effect on the user's next request, on every worker (see AuthState)."""
        if actor_id == user_id:
            raise Conflict("Admins cannot suspend themselves")
        await self._admin_target(user_id)
        status = "suspended" if suspended else "active"
        await self._change_state(user_id, status=status)
        log.info("user status changed", extra={"user_id": user_id, "status": status, "by": actor_id})
        return await self.get(user_id=user_id)

    async def _change_state(self, user_id: int, **values) -> bool:
        """Update the row (status, role, ...) and publish what it holds *after* the update, read
        in the same transaction: two concurrent changes can never leave a stale state published.
        False when there is no such user."""
        async with self._engine.begin() as conn:
            await UserRepository.update(conn, user_id, **values)
            now = await UserRepository.status_and_role(conn, user_id)
        if now is not None:
            await self._state.publish_user_state(user_id, status=now[0], role=now[1])
        return now is not None

    async def _admin_target(self, user_id: int) -> UserPublic:
        row = await self._users.get(user_id)
        if row is None:
            raise NotFound("No such user", details={"id": user_id})
        if row["status"] == "deleted":
            raise Conflict("Deleted accounts cannot be changed")
        return _public(row)

    async def set_role_by_email(self, *, email: str, role: str) -> UserPublic:
        """Operator bootstrap (``vedina set-role``): no actor, no self-check."""
        user = await self._users.get_credentials(email=normalise_email(email))
        if user is None:
            raise NotFound("No such user", details={"email": email})
        await self._change_state(user["id"], role=Role(role).value)
        return await self.get(user_id=user["id"])
