"""Shared, short-lived authentication state: what every worker must agree on at once.

Kept in the shared key-value store (Redis, or the database table when
embedded), so a change made by one worker is seen by every other on its next
request:

- ``auth:user:<id>``: the user's status and role, cached for at most
  USER_STATE_TTL seconds and *overwritten* (not merely deleted) on every change;
- ``auth:session:<family>``: ``active`` or ``revoked`` for a session family;
- ``auth:deny:<jti>``: an access token logged out before its expiry.

Readers fill a missing entry with ``add`` (set-if-absent) while writers use
``set``: a reader that looked at the database just before a change committed
can never overwrite the writer's newer value with its stale one.
"""

from __future__ import annotations

import time

import msgspec

from vedina.storage.keyvalue import KeyValueStore
from vedina.storage.sessions import SessionRepository
from vedina.storage.users import UserRepository

USER_STATE_TTL = 60
SESSION_STATE_TTL = 300
# A revoked family only needs remembering while its access tokens live.
REVOKED_TTL = 15 * 60 + 60

_ACTIVE, _REVOKED = b"active", b"revoked"


class UserState(msgspec.Struct, frozen=True):
    status: str
    role: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(UserState).decode


class AuthState:
    def __init__(self, store: KeyValueStore, users: UserRepository, sessions: SessionRepository) -> None:
        self._store = store
        self._users = users
        self._sessions = sessions

    # -- users ----------------------------------------------------------------

    async def user_state(self, user_id: int) -> UserState | None:
        cached = await self._store.get(f"auth:user:{user_id}")
        if cached is not None:
            return _decode(cached)
        row = await self._users.get(user_id)
        if row is None:
            return None
        state = UserState(status=row["status"], role=row["role"])
        await self._store.add(f"auth:user:{user_id}", _encode(state), ttl=USER_STATE_TTL)
        return state

    async def publish_user_state(self, user_id: int, *, status: str, role: str) -> None:
        """Call after the change committed."""
        await self._store.set(f"auth:user:{user_id}", _encode(UserState(status=status, role=role)), ttl=USER_STATE_TTL)

    # -- sessions -------------------------------------------------------------

    async def session_active(self, family_id: str) -> bool:
        key = f"auth:session:{family_id}"
        cached = await self._store.get(key)
        if cached is not None:
            return cached == _ACTIVE
        active = await self._sessions.active_family(family_id) is not None
        await self._store.add(key, _ACTIVE if active else _REVOKED, ttl=SESSION_STATE_TTL if active else REVOKED_TTL)
        return active

    async def mark_session_active(self, family_id: str) -> None:
        await self._store.add(f"auth:session:{family_id}", _ACTIVE, ttl=SESSION_STATE_TTL)

    async def mark_sessions_revoked(self, family_ids: list[str]) -> None:
        """Call after the revocation committed."""
        for family_id in family_ids:
            await self._store.set(f"auth:session:{family_id}", _REVOKED, ttl=REVOKED_TTL)

    # -- access tokens ------------------------------------------------------

    async def deny_token(self, jti: str, *, expires_at: int) -> None:
        remaining = expires_at - time.time() + 60  # verifier leeway and clock skew
        if remaining > 0:
            await self._store.set(f"auth:deny:{jti}", b"1", ttl=remaining)

    async def token_denied(self, jti: str) -> bool:
        return await self._store.get(f"auth:deny:{jti}") is not None
