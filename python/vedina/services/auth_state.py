"""Shared, short-lived authentication state: what every worker must agree on at once.

Kept in the shared key-value store (Redis, or the database table when
embedded), so a change made by one worker is seen by every other on its next
request:

- ``auth:user:<id>``: the user's status and role, cached for at most
  USER_STATE_TTL seconds and *overwritten* (not merely deleted) on every change;
- ``auth:session:<family>``: ``active:<user id>`` (the family's owner) or ``revoked``;
- ``auth:deny:<jti>``: an access token logged out before its expiry.

Readers fill a missing entry with ``add`` (set-if-absent) while writers use
``set``: a reader that looked at the database just before a change committed
can never overwrite the writer's newer value with its stale one.

Writers' ``set`` is *durable*: behind Redis Sentinel it returns once a replica
holds the value, so a failover right after a logout cannot bring back the
"active" state the promoted replica held before (vedina.storage.redis_clients).

Every write is then *published* on the invalidation channel under the same
key, so the per-worker caches built on top of this state (the principal cache
in :mod:`vedina.services.principals`) drop what they held, on every worker
and host, within :data:`vedina.storage.invalidation.PROPAGATION_BOUND`.
A token's whole state is read in one round trip (:meth:`AuthState.token_state`).
"""

from __future__ import annotations

import time

import msgspec

from vedina.storage.invalidation import Invalidations
from vedina.storage.keyvalue import KeyValueStore
from vedina.storage.sessions import SessionRepository
from vedina.storage.users import UserRepository

USER_STATE_TTL = 60
SESSION_STATE_TTL = 300
# A revoked family only needs remembering while its access tokens live.
REVOKED_TTL = 15 * 60 + 60

_ACTIVE, _REVOKED = b"active:", b"revoked"


class UserState(msgspec.Struct, frozen=True):
    status: str
    role: str


class TokenState(msgspec.Struct, frozen=True):
    """What an access token's validity depends on, besides its signature and expiry."""

    denied: bool
    session_owner: int | None  # the user whose live session family it is; None once revoked
    user: UserState | None


def user_key(user_id: int) -> str:
    return f"auth:user:{user_id}"


def session_key(family_id: str) -> str:
    return f"auth:session:{family_id}"


def deny_key(jti: str) -> str:
    return f"auth:deny:{jti}"


_encode = msgspec.json.Encoder().encode


def _active(user_id: int) -> bytes:
    return _ACTIVE + str(user_id).encode()
_decode = msgspec.json.Decoder(UserState).decode


class AuthState:
    def __init__(
        self, store: KeyValueStore, users: UserRepository, sessions: SessionRepository, invalidations: Invalidations
    ) -> None:
        self._store = store
        self._users = users
        self._sessions = sessions
        self._invalidations = invalidations

    async def token_state(self, *, jti: str, family_id: str, user_id: int) -> TokenState:
        """One round trip to the shared store; the database only for what it did not hold."""
        denied, session, user = await self._store.get_many([deny_key(jti), session_key(family_id), user_key(user_id)])
        if session == _REVOKED:
            owner = None
        elif session is not None and session.startswith(_ACTIVE) and session[len(_ACTIVE):].isdigit():
            owner = int(session[len(_ACTIVE):])
        else:  # absent, or written by an older release ("active"): ask the database
            owner = await self._load_session(family_id)
        return TokenState(
            denied=denied is not None,
            session_owner=owner,
            user=_decode(user) if user is not None else await self._load_user(user_id),
        )

    # -- users ----------------------------------------------------------------

    async def _load_user(self, user_id: int) -> UserState | None:
        row = await self._users.get(user_id)
        if row is None:
            return None
        state = UserState(status=row["status"], role=row["role"])
        await self._store.add(user_key(user_id), _encode(state), ttl=USER_STATE_TTL)
        return state

    async def publish_user_state(self, user_id: int, *, status: str, role: str) -> None:
        """Call after the change committed."""
        await self._store.set(user_key(user_id), _encode(UserState(status=status, role=role)), ttl=USER_STATE_TTL,
                              durable=True)
        await self._invalidations.publish(user_key(user_id))

    async def profile_changed(self, user_id: int) -> None:
        """The user's public record changed (not status or role); call after the commit."""
        await self._invalidations.publish(user_key(user_id))

    # -- sessions -------------------------------------------------------------

    async def _load_session(self, family_id: str) -> int | None:
        row = await self._sessions.active_family(family_id)
        if row is None:
            await self._store.add(session_key(family_id), _REVOKED, ttl=REVOKED_TTL)
            return None
        await self._store.add(session_key(family_id), _active(row["user_id"]), ttl=SESSION_STATE_TTL)
        return row["user_id"]

    async def mark_session_active(self, family_id: str, *, user_id: int) -> None:
        await self._store.add(session_key(family_id), _active(user_id), ttl=SESSION_STATE_TTL)

    async def mark_sessions_revoked(self, family_ids: list[str]) -> None:
        """Call after the revocation committed."""
        for family_id in family_ids:
            await self._store.set(session_key(family_id), _REVOKED, ttl=REVOKED_TTL, durable=True)
        if family_ids:
            await self._invalidations.publish(*map(session_key, family_ids))

    # -- access tokens ------------------------------------------------------

    async def deny_token(self, jti: str, *, expires_at: int) -> None:
        remaining = expires_at - time.time() + 60  # verifier leeway and clock skew
        if remaining > 0:
            await self._store.set(deny_key(jti), b"1", ttl=remaining, durable=True)
            await self._invalidations.publish(deny_key(jti))
